"""Local environments, defined once for the whole project, and their labels.

An **environment** is a centre site plus every site within ``R_ENV`` = 3.2 Angstrom of it
(periodic images included); for a TM centre in pristine NMC that is 6 O, 6 TM and 6 Li.
The whole supercell is also an environment ("bulk").

Its labels (``content``, ``o_vacancy``, ``antisite``) are defined in :mod:`gnnspec.labels`,
whose :data:`CONTENT_ELEMENTS` and :data:`DEFECTS` this module re-exports; here they are computed.

Two environments **share labels** (the retrieval criterion, :func:`labels_match`) when their
defect labels are equal and their contents differ by at most ``CONTENT_TOL`` = 0.05 (mean
absolute difference over the five fractions).

An environment's spectrum in a channel is the mean of the site spectra of all its atoms of the
channel's absorbing element that have a spectrum; channels without such atoms are absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from gnnspec.labels import CONTENT_ELEMENTS, TM_ELEMENTS
from gnnspec.labels import DEFECTS as DEFECTS  # re-exported: the label orders live in gnnspec.labels

R_ENV = 3.2  # Angstrom
TM = frozenset(TM_ELEMENTS)
CONTENT_TOL = 0.05  # atom fraction, mean absolute difference (see labels_match)


@dataclass
class Environment:
    """A centre site (``-1`` for bulk), its member site indices and labels."""

    centre: int
    members: np.ndarray
    content: np.ndarray  # [5] fractions in CONTENT_ELEMENTS order
    defects: np.ndarray  # [2] 0/1 in DEFECTS order


def labels_match(content_a, defects_a, content_b, defects_b, content_tol: float = CONTENT_TOL):
    """Whether environments share labels (module docstring), broadcast over leading dimensions.

    ``content_*`` ``[..., 5]`` and ``defects_*`` ``[..., 2]``; numpy arrays or torch tensors alike.
    """
    return (abs(content_a - content_b).mean(-1) <= content_tol) & (defects_a == defects_b).all(-1)


def element_content(symbols: list[str]) -> np.ndarray:
    """Fractions of Li, Ni, Mn, Co, O among ``symbols`` (other elements count in the total)."""
    n = max(len(symbols), 1)
    return np.array([sum(s == el for s in symbols) / n for el in CONTENT_ELEMENTS], dtype=np.float64)


def is_antisite(symbol: str, site_type: str | None) -> bool:
    return (site_type == "li_layer" and symbol in TM) or (site_type == "tm_layer" and symbol == "Li")


def _min_image_distance(structure: Structure, frac_a: np.ndarray, frac_b: np.ndarray) -> np.ndarray:
    d = np.asarray(frac_b) - np.asarray(frac_a)
    d -= np.round(d)
    return np.linalg.norm(d @ structure.lattice.matrix, axis=-1)


def environment_members(structure: Structure, r_env: float = R_ENV) -> list[np.ndarray]:
    """For every site, the indices of the sites within ``r_env`` (itself first, unique)."""
    centre, neighbour, _, _ = structure.get_neighbor_list(r_env)
    members = [[i] for i in range(len(structure))]
    for c, n in zip(centre.tolist(), neighbour.tolist()):
        if n != c and n not in members[c]:
            members[c].append(n)
    return [np.array(sorted(set(m)), dtype=np.int64) for m in members]


def environments(structure: Structure, vacancies: list[dict], r_env: float = R_ENV, include_bulk: bool = True) -> list[Environment]:
    """Every site's environment (and the bulk one, centre ``-1``) with its labels."""
    symbols = [s.specie.symbol for s in structure]
    types = structure.site_properties.get("site_type", [None] * len(structure))
    anti = np.array([is_antisite(s, t) for s, t in zip(symbols, types)])
    o_vac = np.array([v["frac_coords"] for v in vacancies if v["site_type"] == "o"], dtype=np.float64).reshape(-1, 3)
    frac = structure.frac_coords
    out = []
    for i, members in enumerate(environment_members(structure, r_env)):
        has_vac = bool(len(o_vac)) and bool((_min_image_distance(structure, frac[i], o_vac) < r_env).any())
        defects = np.array([float(has_vac), float(anti[members].any())])
        out.append(Environment(i, members, element_content([symbols[m] for m in members]), defects))
    if include_bulk:
        defects = np.array([float(len(o_vac) > 0), float(anti.any())])
        out.append(Environment(-1, np.arange(len(structure)), element_content(symbols), defects))
    return out


def environment_spectrum(site_spectra: dict[int, np.ndarray], members: np.ndarray) -> np.ndarray | None:
    """Mean of the member sites' spectra (one channel); ``None`` when no member has one."""
    have = [site_spectra[int(m)] for m in members if int(m) in site_spectra]
    return np.mean(have, axis=0) if have else None
