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
    li_ordering: str = "random"  # how Li vacancies are placed: one of LI_ORDERINGS
    n_o_vacancies: int = 0
    n_antisites: int = 0
    thermal_sigma: float = 0.0  # Angstrom, Gaussian displacement per Cartesian component
    relax: bool = False
    relax_fmax: float = 0.1  # eV/A
    relax_steps: int = 60
    a: float = A_HEX  # hexagonal lattice parameters of the ideal cell, Angstrom
    c: float = C_HEX
    o_z: float = O_Z  # fractional z of O on 6c

    def __post_init__(self) -> None:
        if self.li_ordering not in LI_ORDERINGS:
            raise ValueError(f"unknown Li ordering {self.li_ordering!r}; known: {', '.join(LI_ORDERINGS)}")


#: How delithiation places the Li vacancies in the Li layers (:func:`li_vacancy_order`).
LI_ORDERINGS = ("random", "clustered", "layers", "rows")


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
    s = ideal_cell(params.a, params.c, params.o_z)
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
    if params.li_ordering == "random":  # the shipped recipe's draw, kept as it was
        remove_li = list(rng.choice(li_in_layer, size=n_remove, replace=False)) if n_remove else []
    else:
        remove_li = li_vacancy_order(s, li_in_layer, params.li_ordering, rng)[:n_remove] if n_remove else []
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


def li_vacancy_order(s: Structure, candidates: list[int], ordering: str, rng: np.random.Generator) -> list[int]:
    """The Li sites of ``candidates`` in the order delithiation empties them.

    ``random``: a uniform random order (the shipped recipe's draw). ``clustered``: by periodic
    distance from a random Li site, so the vacancies form one Li-poor domain. ``layers``: one
    whole Li layer after another (in a random layer order), as in staged delithiation.
    ``rows``: one in-plane row after another, the rows along a random one of the three in-plane
    lattice directions of the supercell, as in the ordered Li(0.5) phases of layered oxides.
    """
    if ordering == "random":
        return [int(i) for i in rng.choice(candidates, size=len(candidates), replace=False)]
    if not candidates:
        return []
    idx = np.asarray(candidates)
    frac = np.array([s[int(i)].frac_coords for i in idx]) % 1.0
    tie = rng.permutation(len(idx))  # random order inside each group
    if ordering == "clustered":
        seed = idx[rng.integers(len(idx))]
        key = np.array([s.get_distance(int(seed), int(i)) for i in idx])
    elif ordering == "layers":
        layer = np.round(frac[:, 2] * 3).astype(int) % 3  # Li layers at z = 0, 1/3, 2/3 of the hexagonal c
        rank = rng.permutation(3)
        key = rank[layer].astype(float)
    elif ordering == "rows":
        direction = int(rng.integers(3))  # rows along b, a or a - b
        in_plane = frac[:, 0] if direction == 0 else frac[:, 1] if direction == 1 else (frac[:, 0] + frac[:, 1]) % 1.0
        layer = np.round(frac[:, 2] * 3).astype(int) % 3
        row = np.floor(in_plane * 6 + 0.5).astype(int) % 6  # finer than any supercell's row spacing
        rank = rng.permutation(18)
        key = rank[layer * 6 + row].astype(float)
    else:
        raise ValueError(f"unknown Li ordering {ordering!r}; known: {', '.join(LI_ORDERINGS)}")
    order = np.lexsort((tie, key))
    return [int(i) for i in idx[order]]


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


#: Ranges of the wide generator (:func:`draw_wide_params`). Lattice parameters span layered
#: NMC from lithiated LiNiO2/LiCoO2 to half-delithiated NMC (a 2.81-2.90 A, c 14.1-14.6 A).
WIDE_RANGES = {
    "a": (2.81, 2.90),
    "c": (14.10, 14.60),
    "o_z": (0.237, 0.245),
    "li_content": (0.5, 1.0),
    "thermal_sigma": (0.0, 0.06),
}
#: Probability of each Li ordering in the wide generator.
WIDE_ORDERINGS = {"random": 0.4, "clustered": 0.2, "layers": 0.2, "rows": 0.2}


def draw_wide_params(rng: np.random.Generator, seed: int, case: str, relax: bool, n_tm: int = 27) -> NMCParams:
    """Generator parameters across the whole composition and ordering space (the widened data).

    TM ratio: uniform over the Ni-Mn-Co triangle (Dirichlet(1, 1, 1)) for 70 % of the draws, on
    one of its edges (one TM absent, the other two split uniformly) for 30 %; a case with
    antisites keeps at least one Ni site per antisite. Li content uniform in 0.5-1.0 with a Li
    vacancy ordering drawn from :data:`WIDE_ORDERINGS`; lattice parameters, O position and the
    thermal displacement uniform in :data:`WIDE_RANGES`. ``n_tm``: TM sites of the supercell.
    """
    n_o = int(rng.integers(1, 3)) if case in ("o_vacancy", "combined") else 0
    n_anti = int(rng.integers(1, 3)) if case in ("antisite", "combined") else 0
    while True:
        if rng.random() < 0.7:
            ratio, name = rng.dirichlet([1.0, 1.0, 1.0]), "triangle"
        else:
            absent = int(rng.integers(3))
            x = rng.random()
            ratio = np.insert(np.array([x, 1.0 - x]), absent, 0.0)
            name = f"edge without {TM_ELEMENTS[absent]}"
        if _ratio_counts(tuple(ratio), n_tm)[0] >= n_anti:
            break
    uniform = {k: float(np.round(rng.uniform(*v), 4)) for k, v in WIDE_RANGES.items()}
    orderings = list(WIDE_ORDERINGS)
    ordering = orderings[rng.choice(len(orderings), p=list(WIDE_ORDERINGS.values()))]
    return NMCParams(
        seed=seed,
        tm_ratio=tuple(float(x) for x in ratio),
        tm_ratio_name=name,
        li_content=float(np.round(uniform["li_content"], 3)),
        li_ordering=ordering,
        n_o_vacancies=n_o,
        n_antisites=n_anti,
        thermal_sigma=uniform["thermal_sigma"],
        relax=relax,
        a=uniform["a"],
        c=uniform["c"],
        o_z=uniform["o_z"],
    )
