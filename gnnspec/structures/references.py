"""Crystal structures of the measured reference compounds, built from published parameters.

These are the compounds whose measured K-edge spectra live in
``../shared/data/experimental_reference/`` (MnO, Mn2O3, Mn3O4, beta-MnO2, Li2MnO3, NiO); the
structures here are what simulated spectra of those compounds are computed from, so that
simulation can be compared with the measured reference spectra.

Every entry is the published space group, cell and asymmetric unit of one literature
refinement (named in ``source``), expanded with ``Structure.from_spacegroup`` into the ordered
conventional cell. Units: lengths in Angstrom, angles in degrees, coordinates fractional.

Setting notes. pymatgen's ``I4_1/amd`` is ORIGIN CHOICE 1 (inversion centre at (0, 1/4, 1/8)),
the setting of the hausmannite coordinates below; origin-choice-2 coordinates entered there give
a wrong structure with the right formula. ``Ia-3`` and ``C2/m`` are the standard settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.core import Lattice, Structure

Coords = tuple[float, float, float]


@dataclass(frozen=True)
class ReferenceCompound:
    """One measured reference compound and the literature refinement its structure comes from."""

    name: str
    formula: str  # reduced formula, as pymatgen writes it
    spacegroup: str  # Hermann-Mauguin symbol accepted by pymatgen
    lattice: tuple[float, float, float, float, float, float]  # a, b, c (Angstrom), alpha, beta, gamma (deg)
    sites: tuple[tuple[str, Coords], ...]  # asymmetric unit: (element, fractional coordinates)
    absorber: str  # element whose K edge was measured
    valences: tuple[int, ...]  # formal valence(s) of the absorber
    source: str  # literature source of cell and coordinates


REFERENCE_COMPOUNDS: dict[str, ReferenceCompound] = {
    c.name: c
    for c in (
        ReferenceCompound(
            "MnO", "MnO", "Fm-3m", (4.4457, 4.4457, 4.4457, 90.0, 90.0, 90.0),
            (("Mn", (0.0, 0.0, 0.0)), ("O", (0.5, 0.5, 0.5))), "Mn", (2,),
            "S. Sasaki, K. Fujino, Y. Takeuchi, Proc. Japan Acad. 55, 43-48 (1979): rock salt, a = 4.4457",
        ),
        ReferenceCompound(
            "NiO", "NiO", "Fm-3m", (4.1771, 4.1771, 4.1771, 90.0, 90.0, 90.0),
            (("Ni", (0.0, 0.0, 0.0)), ("O", (0.5, 0.5, 0.5))), "Ni", (2,),
            "S. Sasaki, K. Fujino, Y. Takeuchi, Proc. Japan Acad. 55, 43-48 (1979): rock salt, a = 4.1771",
        ),
        ReferenceCompound(
            "beta-MnO2", "MnO2", "P4_2/mnm", (4.3983, 4.3983, 2.8730, 90.0, 90.0, 90.0),
            (("Mn", (0.0, 0.0, 0.0)), ("O", (0.3050, 0.3050, 0.0))), "Mn", (4,),
            "A. A. Bolzan, C. Fong, B. J. Kennedy, C. J. Howard, Aust. J. Chem. 46, 939-944 (1993): "
            "pyrolusite, neutron powder diffraction, Mn 2a, O 4f (x, x, 0)",
        ),
        ReferenceCompound(
            "Mn2O3", "Mn2O3", "Ia-3", (9.4146, 9.4146, 9.4146, 90.0, 90.0, 90.0),
            (("Mn", (0.25, 0.25, 0.25)), ("Mn", (-0.0344, 0.0, 0.25)), ("O", (0.3851, 0.1455, 0.3808))),
            "Mn", (3,),
            "S. Geller, Acta Cryst. B27, 821-828 (1971): cubic bixbyite (Mn0.983Fe0.017)2O3, Mn 8b and 24d, "
            "O 48e (pure alpha-Mn2O3 is a slightly orthorhombic Pbca distortion of this cell)",
        ),
        ReferenceCompound(
            "Mn3O4", "Mn3O4", "I4_1/amd", (5.765, 5.765, 9.442, 90.0, 90.0, 90.0),
            (("Mn", (0.0, 0.0, 0.0)), ("Mn", (0.0, 0.25, 0.625)), ("O", (0.0, 0.2222, 0.3839))),
            "Mn", (2, 3),
            "D. Jarosch, Mineral. Petrol. 37, 15-23 (1987): hausmannite, origin choice 1, Mn2+ 4a, Mn3+ 8d, "
            "O 16h (as tabulated in the AFLOW prototype library, M. J. Mehl et al., Comp. Mat. Sci. 136, S1 (2017))",
        ),
        ReferenceCompound(
            "Li2MnO3", "Li2MnO3", "C2/m", (4.937, 8.532, 5.030, 90.0, 109.46, 90.0),
            (
                ("Li", (0.0, 0.5, 0.0)), ("Li", (0.0, 0.0, 0.5)), ("Li", (0.0, 0.6606, 0.5)),
                ("Mn", (0.0, 0.16708, 0.0)), ("O", (0.2189, 0.0, 0.2273)), ("O", (0.2540, 0.32119, 0.2233)),
            ),
            "Mn", (4,),
            "P. Strobel, B. Lambert-Andron, J. Solid State Chem. 75, 90-98 (1988): single crystal, "
            "Li 2b, 2c, 4h; Mn 4g; O 4i, 8j",
        ),
    )
}


def reference_structure(name: str) -> Structure:
    """The ordered conventional cell of the reference compound ``name`` (a key of REFERENCE_COMPOUNDS)."""
    if name not in REFERENCE_COMPOUNDS:
        raise KeyError(f"unknown reference compound {name!r}; valid names: {', '.join(REFERENCE_COMPOUNDS)}")
    c = REFERENCE_COMPOUNDS[name]
    lattice = Lattice.from_parameters(*c.lattice)
    species = [el for el, _ in c.sites]
    coords = [list(xyz) for _, xyz in c.sites]
    return Structure.from_spacegroup(c.spacegroup, lattice, species, coords)
