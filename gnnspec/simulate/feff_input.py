"""Writing feff.inp for one absorbing site from the shared cluster function."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Element, Structure

from gnnspec.channels import get_channel, run_edge
from gnnspec.errors import InputError
from gnnspec.graphs import Cluster, extract_cluster
from gnnspec.simulate.presets import CLUSTER_RADIUS, MIN_FEFF_DISTANCE, Preset

#: Which FEFF run computes an edge: K-edge XAS of Li and the TMs by XANES; O K and the TM L3
#: and L2 edges (both modalities) by ELNES.
ELNES_EDGES = {("O", "K"), *((tm, e) for tm in ("Mn", "Co", "Ni") for e in ("L3", "L2"))}


def run_kind(element: str, edge: str) -> str:
    """``elnes`` for edges computed with one ELNES run (EELS + XAS), else ``xanes``."""
    return "elnes" if (element, edge) in ELNES_EDGES else "xanes"


def site_runs(element: str, channels: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """The FEFF runs ``channels`` need at a site of ``element``, with the raw spectra each gives.

    ``{"Ni-L2-elnes": ["Ni-L2-xas", "Ni-L2-eels"], "Ni-K-xanes": ["Ni-K-xas"], ...}``: an L2,3
    channel needs an L3 and an L2 run; one ELNES run serves both modalities of its edge.
    """
    runs: dict[str, list[str]] = {}
    for name in channels:
        ch = get_channel(name)
        if ch.element != element:
            continue
        for raw in ch.runs:
            el, edge, _ = run_edge(raw)
            spectra = runs.setdefault(f"{el}-{edge}-{run_kind(el, edge)}", [])
            if raw not in spectra:
                spectra.append(raw)
    return runs


def check_cluster_distances(cluster: Cluster, label: str) -> None:
    """Refuse clusters with two atoms closer than ``MIN_FEFF_DISTANCE``."""
    pos = cluster.positions
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    if d[i, j] < MIN_FEFF_DISTANCE:
        raise InputError(
            f"{label}: atoms {cluster.symbols[i]} and {cluster.symbols[j]} of the FEFF cluster are "
            f"{d[i, j]:.3f} A apart (< {MIN_FEFF_DISTANCE} A); FEFF would return garbage"
        )


def build_feff_input(structure: Structure, site: int, edge: str, kind: str, preset: Preset, title: str = "gnnspec") -> str:
    """feff.inp text for absorbing ``site``: ipot 0 the absorber, one potential per element present."""
    cluster = extract_cluster(structure, site, CLUSTER_RADIUS)
    check_cluster_distances(cluster, f"site {site}")
    absorber = cluster.symbols[0]
    others = sorted(set(cluster.symbols[1:]), key=lambda s: Element(s).Z)
    ipot_of = {sym: i + 1 for i, sym in enumerate(others)}
    lines = [f"TITLE {title}", *preset.cards(edge, kind), "", "POTENTIALS", "*   ipot   Z  tag"]
    lines.append(f"    0  {Element(absorber).Z:3d}  {absorber}")
    for sym in others:
        lines.append(f"    {ipot_of[sym]}  {Element(sym).Z:3d}  {sym}")
    lines += ["", "ATOMS", "*   x          y          z      ipot  tag   distance"]
    for k, (p, sym, dist) in enumerate(zip(cluster.positions, cluster.symbols, cluster.distances)):
        ipot = 0 if k == 0 else ipot_of[sym]
        lines.append(f"  {p[0]:10.5f} {p[1]:10.5f} {p[2]:10.5f}  {ipot:d}  {sym:<3s} {dist:8.5f}")
    lines += ["END", ""]
    return "\n".join(lines)
