"""The edge positions of a dataset's stored FEFF spectra, and their range per tier and channel.

For each step-edge channel (:data:`gnnspec.edge_position.STEP_EDGE_CHANNELS`, a K channel is its
one FEFF run) the half-step energy (:func:`gnnspec.edge_position.half_step_energy`) of the stored
spectrum, put on the channel grid, on FEFF's energy scale of its tier. The range over the
training split is what a model learned: a measured edge (moved onto that scale) far outside it
belongs to a chemistry, such as a lower valence, that no training spectrum showed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gnnspec.channels import CHANNELS
from gnnspec.edge_position import STEP_EDGE_CHANNELS, half_step_energy

#: The percentiles stored as a channel's training edge range.
RANGE_PERCENTILES = (1.0, 50.0, 99.0)


def stored_edges(store, tier: str, channels=STEP_EDGE_CHANNELS, split: str | None = None) -> Iterator[tuple[int, dict, int, str, float]]:
    """``(sid, structure record, site, channel, edge_eV)`` of every stored ``tier`` spectrum of
    ``channels`` (of ``split`` only, when given) whose spectrum has a rising step."""
    for sid in store.structure_ids():
        record = store.structure(sid)
        if split is not None and record["split"] != split:
            continue
        spectra = store.spectra_of(sid, tier)
        for site, run in sorted(k for k in spectra if k[1] in channels):
            ch = CHANNELS[run]
            spectrum = spectra[(site, run)]
            edge = half_step_energy(ch.grid, np.interp(ch.grid, spectrum["energy"], spectrum["intensity"]), ch.edge_energy)
            if np.isfinite(edge):
                yield sid, record, site, run, edge


def edge_ranges(store, tiers: list[str], channels=STEP_EDGE_CHANNELS, split: str = "train") -> dict[str, dict[str, dict]]:
    """``{tier: {channel: {"p01_eV", "p50_eV", "p99_eV", "min_eV", "max_eV", "n"}}}`` over ``split``."""
    out: dict[str, dict[str, dict]] = {}
    for tier in tiers:
        edges: dict[str, list[float]] = {}
        for _, _, _, run, edge in stored_edges(store, tier, channels, split):
            edges.setdefault(run, []).append(edge)
        for run, values in edges.items():
            p01, p50, p99 = np.percentile(values, RANGE_PERCENTILES)
            out.setdefault(tier, {})[run] = {
                "p01_eV": float(p01),
                "p50_eV": float(p50),
                "p99_eV": float(p99),
                "min_eV": float(np.min(values)),
                "max_eV": float(np.max(values)),
                "n": len(values),
            }
    return out
