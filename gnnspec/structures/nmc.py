"""Layered NMC (Li(Ni,Mn,Co)O2, R-3m) supercells with delithiation, O vacancies and antisites.

Ideal cell (hexagonal setting of R-3m, origin choice with Li on 3a):
Li 3a (0, 0, 0); TM 3b (0, 0, 1/2); O 6c (0, 0, z) with z about 0.241, which gives TM-O about
1.97 A and Li-O about 2.11 A for a = 2.87 A, c = 14.2 A.

Every site keeps its ideal lattice-site type as the site property ``site_type``
(``tm_layer``, ``li_layer`` or ``o``) and its ideal fractional position (``ideal_frac``);
removed sites are recorded in ``NMCSample.vacancies`` with their ideal positions, so labels
never depend on guessing. All random draws come from one ``numpy`` generator seeded once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from pymatgen.core import Lattice, Structure

from gnnspec.labels import TM_ELEMENTS

A_HEX = 2.87  # Angstrom
C_HEX = 14.2  # Angstrom
O_Z = 0.241

#: Named TM ratios, in :data:`gnnspec.labels.TM_ELEMENTS` order (Ni, Mn, Co).
TM_RATIOS: dict[str, tuple[float, float, float]] = {
    "NMC111": (1 / 3, 1 / 3, 1 / 3),
    "NMC532": (0.5, 0.3, 0.2),
    "NMC622": (0.6, 0.2, 0.2),
    "NMC811": (0.8, 0.1, 0.1),
}


def ideal_cell(a: float = A_HEX, c: float = C_HEX, o_z: float = O_Z, tm: str = "Co") -> Structure:
    """The 12-site hexagonal cell of layered LiTMO2 with ``site_type`` properties."""
    s = Structure.from_spacegroup("R-3m", Lattice.hexagonal(a, c), ["Li", tm, "O"], [[0, 0, 0], [0, 0, 0.5], [0, 0, o_z]])
    types = {"Li": "li_layer", tm: "tm_layer", "O": "o"}
    s.add_site_property("site_type", [types[site.specie.symbol] for site in s])
    return s


@dataclass
class NMCParams:
    """What the generator draws for one supercell (recorded with the structure)."""

    seed: int
    supercell: tuple[int, int, int] = (3, 3, 1)
    tm_ratio: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    tm_ratio_name: str = "NMC111"
    li_content: float = 1.0
    n_o_vacancies: int = 0
    n_antisites: int = 0
    thermal_sigma: float = 0.0  # Angstrom, Gaussian displacement per Cartesian component
    relax: bool = False
    relax_fmax: float = 0.1  # eV/A
    relax_steps: int = 60


@dataclass
class NMCSample:
    """A generated supercell, its parameters and its vacancies (ideal positions, Cartesian A)."""

    structure: Structure
    params: NMCParams
    vacancies: list[dict] = field(default_factory=list)
    relax_info: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "structure": self.structure.as_dict(),
            "params": asdict(self.params),
            "vacancies": self.vacancies,
            "relax_info": self.relax_info,
        }


def generate_nmc(params: NMCParams) -> NMCSample:
    """Build one NMC supercell as ``params`` says (relaxation with CHGNet if ``params.relax``)."""
    rng = np.random.default_rng(params.seed)
    s = ideal_cell()
    s.make_supercell(list(params.supercell))
    s.add_site_property("ideal_frac", [list(map(float, site.frac_coords)) for site in s])
    tm_idx = [i for i, site in enumerate(s) if site.properties["site_type"] == "tm_layer"]
    li_idx = [i for i, site in enumerate(s) if site.properties["site_type"] == "li_layer"]
    o_idx = [i for i, site in enumerate(s) if site.properties["site_type"] == "o"]

    # transition metals: exact counts from the ratio, random arrangement
    counts = _ratio_counts(params.tm_ratio, len(tm_idx))
    species = [el for el, n in zip(TM_ELEMENTS, counts) for _ in range(n)]
    rng.shuffle(species)
    for i, el in zip(tm_idx, species):
        s.replace(i, el, properties=s[i].properties)

    # antisites: a Li and a Ni exchange sites
    ni_sites = [i for i in tm_idx if s[i].specie.symbol == "Ni"]
    n_anti = min(params.n_antisites, len(ni_sites), len(li_idx))
    anti_li = rng.choice(li_idx, size=n_anti, replace=False) if n_anti else []
    anti_ni = rng.choice(ni_sites, size=n_anti, replace=False) if n_anti else []
    for i_li, i_ni in zip(anti_li, anti_ni):
        s.replace(int(i_li), "Ni", properties=s[int(i_li)].properties)
        s.replace(int(i_ni), "Li", properties=s[int(i_ni)].properties)

    # delithiation: remove Li from the Li layer (never the antisite Ni, never Li on TM sites)
    li_in_layer = [i for i in li_idx if s[i].specie.symbol == "Li"]
    n_li_keep = int(round(params.li_content * len(li_idx)))
    n_remove = max(0, len(li_in_layer) - n_li_keep + n_anti)
    n_remove = min(n_remove, len(li_in_layer))
    remove_li = list(rng.choice(li_in_layer, size=n_remove, replace=False)) if n_remove else []
    remove_o = list(rng.choice(o_idx, size=params.n_o_vacancies, replace=False)) if params.n_o_vacancies else []
    vacancies = []
    for i in sorted(map(int, remove_li + remove_o)):
        vacancies.append(
            {
                "site_type": s[i].properties["site_type"],
                "element": s[i].specie.symbol,
                "frac_coords": [float(x) for x in s[i].frac_coords],
                "coords": [float(x) for x in s[i].coords],
            }
        )
    s.remove_sites(sorted(map(int, remove_li + remove_o)))

    relax_info: dict = {}
    if params.relax:
        s, relax_info = relax_structure(s, fmax=params.relax_fmax, steps=params.relax_steps)
    if params.thermal_sigma > 0:
        disp = rng.normal(0.0, params.thermal_sigma, size=(len(s), 3))
        for i, d in enumerate(disp):
            s.translate_sites([i], d, frac_coords=False, to_unit_cell=True)
    return NMCSample(structure=s, params=params, vacancies=vacancies, relax_info=relax_info)


def _ratio_counts(ratio: tuple[float, ...], n: int) -> list[int]:
    """Integer counts summing to ``n`` closest to ``ratio`` (largest remainder)."""
    r = np.asarray(ratio, dtype=float)
    r = r / r.sum()
    raw = r * n
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def relax_structure(structure: Structure, fmax: float = 0.1, steps: int = 60) -> tuple[Structure, dict]:
    """Relax atomic positions (cell fixed) with the pretrained CHGNet and FIRE.

    Site properties are kept. Returns the relaxed structure and ``{"steps", "fmax", "energy_eV"}``.
    """
    import contextlib
    import io

    from chgnet.model import StructOptimizer

    props = {k: list(v) for k, v in structure.site_properties.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        opt = StructOptimizer(optimizer_class="FIRE", use_device="cpu")
        result = opt.relax(structure, fmax=fmax, steps=steps, relax_cell=False, verbose=False)
    relaxed: Structure = result["final_structure"]
    for k, v in props.items():
        relaxed.add_site_property(k, v)
    traj = result["trajectory"]
    forces = np.asarray(traj.forces[-1])
    info = {
        "steps": len(traj.energies),
        "fmax": float(np.linalg.norm(forces, axis=1).max()),
        "energy_eV": float(traj.energies[-1]),
        "model": "CHGNet pretrained",
    }
    return relaxed, info


def draw_params(rng: np.random.Generator, seed: int, case: str, relax: bool, thermal_sigma: float) -> NMCParams:
    """Random generator parameters for a defect ``case``: pristine, o_vacancy, antisite, combined."""
    names = list(TM_RATIOS) + ["dirichlet"]
    name = names[rng.integers(len(names))]
    ratio = tuple(float(x) for x in rng.dirichlet([2.0, 2.0, 2.0])) if name == "dirichlet" else TM_RATIOS[name]
    n_o = int(rng.integers(1, 3)) if case in ("o_vacancy", "combined") else 0
    n_anti = int(rng.integers(1, 3)) if case in ("antisite", "combined") else 0
    return NMCParams(
        seed=seed,
        tm_ratio=ratio,
        tm_ratio_name=name,
        li_content=float(np.round(rng.uniform(0.5, 1.0), 3)),
        n_o_vacancies=n_o,
        n_antisites=n_anti,
        thermal_sigma=thermal_sigma,
        relax=relax,
    )
