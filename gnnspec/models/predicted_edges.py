"""Edge positions of predicted spectra, with how much the forward models agree on them.

For every step-edge channel (:data:`gnnspec.edge_position.STEP_EDGE_CHANNELS`, the transition
metals' K edges) a prediction states, per site:

* ``edge_eV``: the half-step energy (:func:`gnnspec.edge_position.half_step_energy`) of the
  predicted spectrum, on FEFF's energy scale of the predicted tier, as the spectrum's energies are
  (None, with ``why``, where the predicted spectrum has no rising step);
* with a forward ensemble, ``forward_models_edge_eV`` (each forward model's own spectrum's
  half-step energy, the model's own first; None for one without a rising step), ``edge_std_eV``
  (the standard deviation of those that have one, ``ddof=1``) and, where the checkpoint holds an edge calibration, ``edge_spread_eV``: ``k``
  times that standard deviation, ``k`` per tier and channel fitted on the validation sites
  where FEFF computed the tier so that FEFF's edge lies within the spread for 68 % of them
  (:func:`calibrate_edge_spread`, stored in the forward-ensemble record as ``edge_spread``).
  Where the forward models disagree by eV, the edge of their mean spectrum is a smeared step
  between theirs and is not to be trusted: the valence an edge position would tell is not
  known to the model there. ``edge_known`` says whether the spread is within
  :data:`KNOWN_SPREAD_EV` (``gnnspec predict`` warns on stderr where it is not);
* with an edge offset fitted for the channel and tier (:mod:`gnnspec.edge_offsets`),
  ``edge_measured_scale_eV`` (``edge_eV`` plus the offset: where a foil-calibrated measurement
  would put it) and ``offset_loco_rms_eV``, the offset's leave-one-compound-out error.
"""

from __future__ import annotations

import numpy as np
import torch

from gnnspec.channels import CHANNELS
from gnnspec.edge_position import DEFINITION, STEP_EDGE_CHANNELS, STEP_TOP_WINDOW_EV, half_step_energy
from gnnspec.errors import InputError

#: An edge whose calibrated spread exceeds this (eV) is flagged ``edge_known: false``: one valence
#: step moves a TM K edge by about 1.5-3 eV (Mn K: 5-9 eV from Mn2+ to Mn4+), so a wider spread
#: cannot tell the valence. NMC validation sites: 0.2-0.3 eV.
KNOWN_SPREAD_EV = 1.0
MEANING = (
    f"edge_eV: {DEFINITION}, on FEFF's energy scale of the tier; forward_models_edge_eV: each forward model's; "
    "edge_std_eV: their standard deviation; edge_spread_eV: k times it, FEFF's edge inside it for 68 % of validation "
    f"sites; edge_known: edge_spread_eV <= {KNOWN_SPREAD_EV} eV; edge_measured_scale_eV: edge_eV plus the fitted "
    "measured-minus-FEFF offset of the channel and tier (gnnspec.edge_offsets), offset_loco_rms_eV its "
    "leave-one-compound-out error"
)


KEY = "edge_spread"
COVERAGE = 0.68


def edges_by_site(
    out: dict, sites: list[int], row: dict[int, int], channels: list[str], tier: str, calibration: dict | None = None
) -> dict[int, dict[str, dict]]:
    """``{site: {channel: edge record}}`` for the step-edge channels of a forward pass ``out``
    (:func:`gnnspec.models.forward_ensemble.ensemble_pass`); ``row[site]``: the site's row in it;
    ``calibration``: the ensemble record's :data:`KEY` entry (its ``k`` scales the spread)."""
    from gnnspec.edge_offsets import read_edge_offsets

    offsets = read_edge_offsets()
    ks = ((calibration or {}).get("k") or {}).get(tier) or {}
    mask = out["spectra_mask"].cpu().numpy()
    result: dict[int, dict[str, dict]] = {}
    for site in sites:
        r, found = row[site], {}
        for c, name in enumerate(channels):
            if name not in STEP_EDGE_CHANNELS or not mask[r, c]:
                continue
            mean, edges = forward_model_edges(out, r, c, name)
            if not np.isfinite(mean):
                found[name] = {"edge_eV": None, "why": "the predicted spectrum has no rising step to place an edge on"}
                continue
            record = {"edge_eV": mean}
            if len(edges) > 1:
                record["forward_models_edge_eV"] = [e if np.isfinite(e) else None for e in edges]
                std = member_edge_std(edges)
                if np.isfinite(std):
                    record["edge_std_eV"] = std
                    if name in ks:
                        record["edge_spread_eV"] = ks[name] * record["edge_std_eV"]
                        record["edge_known"] = record["edge_spread_eV"] <= KNOWN_SPREAD_EV
            offset = offsets.get((name, tier))
            if offset is not None:
                record["edge_measured_scale_eV"] = record["edge_eV"] + offset.offset_eV
                record["offset_loco_rms_eV"] = offset.loco_rms_eV
            found[name] = record
        result[site] = found
    return result


def forward_model_edges(out: dict, r: int, c: int, channel: str) -> tuple[float, list[float]]:
    """The half-step energy of row ``r``, channel index ``c`` of a forward pass: of the predicted
    spectrum, and of each forward model's (empty without an ensemble)."""
    ch = CHANNELS[channel]
    mean = half_step_energy(ch.grid, out["spectra"][r, c].double().cpu().numpy(), ch.edge_energy)
    each = out.get("forward_model_spectra")
    if each is None:
        return mean, []
    return mean, [half_step_energy(ch.grid, y, ch.edge_energy) for y in each[:, r, c].double().cpu().numpy()]


def member_edge_std(edges: list[float]) -> float:
    """The forward models' edge standard deviation: over those with an edge (a model whose
    spectrum has no rising step gives none); NaN with fewer than two. Calibration and prediction
    both use it, so that ``k`` scales the quantity it was fitted on."""
    finite = [e for e in edges if np.isfinite(e)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


@torch.no_grad()
def calibrate_edge_spread(model, data: str, split: str = "val") -> dict:
    """Fit ``k`` of every (tier, step-edge channel) on ``split``'s sites where FEFF computed that
    tier: the 68th percentile of ``|edge of the mean spectrum - FEFF's edge| / edge_std`` over the
    sites. The :data:`KEY` entry of the forward-ensemble record: ``{"k": {tier: {channel: k}},
    "coverage_unscaled": {tier: {channel: fraction within one std}}, "rms_error_eV",
    "median_std_eV", "n_sites", "split", "coverage", "training_edges", "data_sha256"}``;
    ``training_edges``: FEFF's edge range per tier and channel over the training split
    (:func:`gnnspec.data.stored_edges.edge_ranges`), against which ``gnnspec infer`` places a
    measured edge."""
    from gnnspec.data.store import SpectraStore
    from gnnspec.data.stored_edges import edge_ranges
    from gnnspec.models.forward_ensemble import feff_site_passes, member_count

    if member_count(model) < 2:
        raise InputError("the model has no forward members whose edges could disagree (attach some with gnnspec ensemble --forward-from)")
    tiers, channels = list(model.cfg.tiers), list(model.cfg.channels)
    wanted = [(c, name) for c, name in enumerate(channels) if name in STEP_EDGE_CHANNELS]
    if not wanted:
        raise InputError(f"the model predicts no step-edge channel ({', '.join(STEP_EDGE_CHANNELS)})")
    rows: dict[str, dict[str, list]] = {t: {name: [] for _, name in wanted} for t in tiers}
    for t, out, target, ok in feff_site_passes(model, data, split):
        for c, name in wanted:
            ch = CHANNELS[name]
            for r in np.nonzero(ok[:, c])[0]:
                mean, each = forward_model_edges(out, int(r), c, name)
                feff = half_step_energy(ch.grid, target[r, c].double().cpu().numpy(), ch.edge_energy)
                rows[tiers[t]][name].append((mean - feff, member_edge_std(each)))
    store = SpectraStore(data)
    return fit_edge_spread(rows) | {
        "split": split,
        "coverage": COVERAGE,
        "training_edges": edge_ranges(store, tiers, [name for _, name in wanted]),
        "data_sha256": store.fingerprint(),
    }


def fit_edge_spread(rows: dict[str, dict[str, list[tuple[float, float]]]]) -> dict:
    """``k`` and its companions from ``{tier: {channel: [(edge error eV, forward models' std eV)]}}``:
    ``k`` the 68th percentile of ``|error| / std`` over the sites with a finite error and a
    non-zero std (a channel without any is left out)."""
    result: dict = {"k": {}, "coverage_unscaled": {}, "rms_error_eV": {}, "median_std_eV": {}, "n_sites": {}}
    for tier, by_channel in rows.items():
        for name, pairs in by_channel.items():
            err, std = np.abs(np.array(pairs, dtype=float).reshape(-1, 2)).T
            keep = np.isfinite(err) & np.isfinite(std) & (std > 0)
            if not keep.any():
                continue
            err, std = err[keep], std[keep]
            result["k"].setdefault(tier, {})[name] = float(np.quantile(err / std, COVERAGE))
            result["coverage_unscaled"].setdefault(tier, {})[name] = float(np.mean(err <= std))
            result["rms_error_eV"].setdefault(tier, {})[name] = float(np.sqrt(np.mean(err**2)))
            result["median_std_eV"].setdefault(tier, {})[name] = float(np.median(std))
            result["n_sites"].setdefault(tier, {})[name] = int(keep.sum())
    return result


def edge_warning_lines(edges: dict[str, dict], label: str) -> list[str]:
    """One stderr line per channel of one site's edge records whose edge the model does not know."""
    return [
        f"warning: {label}: {name} edge at {r['edge_eV']:.1f} eV with a spread of {r['edge_spread_eV']:.1f} eV "
        f"(over {KNOWN_SPREAD_EV:.0f} eV): the forward models disagree on it, so the valence it would tell is unknown"
        for name, r in edges.items()
        if r.get("edge_known") is False
    ]


def measured_edges(
    on_grid: dict[str, np.ndarray], shifts: dict[str, float], calibration: dict | None, tier: str, coverage: dict[str, np.ndarray] | None = None
) -> dict[str, dict]:
    """Where a measured spectrum's edge lies against the edges the model learned: per step-edge
    channel of ``on_grid`` (the query on the channel grids, on FEFF's scale of ``tier`` after
    ``shifts``), ``edge_eV`` (that scale), ``edge_as_given_eV`` (the file's own scale),
    ``training_p01_eV`` / ``training_p99_eV`` (FEFF's edges over the training split, from the
    edge calibration's ``training_edges``) and ``inside_training_range``: within that range, give
    or take ``energy_scale_tolerance_eV`` (for energies moved onto FEFF's scale by an edge offset,
    the offset's leave-one-compound-out RMS, :mod:`gnnspec.edge_offsets`, None where the offset
    rests on one compound; 0 for energies given on FEFF's scale); where it lies outside, ``why``
    says by how much. A channel whose measurement (``coverage``:
    :func:`gnnspec.spectra.grid_coverage`) misses what the half-step rule reads (a point at or below
    the tabulated edge, the step's foot, and 30-55 eV above it), or without a rising step, gets
    ``edge_eV`` None and ``why``."""
    from gnnspec.edge_offsets import read_edge_offsets

    ranges = ((calibration or {}).get("training_edges") or {}).get(tier) or {}
    offsets = read_edge_offsets()
    out: dict[str, dict] = {}
    for name, y in on_grid.items():
        if name not in STEP_EDGE_CHANNELS:
            continue
        ch = CHANNELS[name]
        if coverage is not None and name in coverage:
            lo, hi = STEP_TOP_WINDOW_EV
            covered = np.asarray(coverage[name], dtype=bool)
            top = (ch.grid >= ch.edge_energy + lo) & (ch.grid <= ch.edge_energy + hi)
            pre_edge = covered & (ch.grid <= ch.edge_energy)  # the step's foot (grid points before the data repeat its first value)
            if not (covered[top].all() and pre_edge.any()):
                out[name] = {"edge_eV": None, "why": f"the measurement does not reach below the edge and over {lo:.0f}-{hi:.0f} eV above it: no edge placed"}
                continue
        edge = half_step_energy(ch.grid, np.asarray(y, dtype=float), ch.edge_energy)
        if not np.isfinite(edge):
            out[name] = {"edge_eV": None, "why": "the spectrum has no rising step to place an edge on"}
            continue
        record = {"edge_eV": edge, "edge_as_given_eV": edge - shifts.get(name, 0.0)}
        r = ranges.get(name)
        if r is not None:
            # calibrated energies moved by an offset carry its error (leave-one-compound-out RMS)
            # calibrated energies moved by an offset carry its error (leave-one-compound-out RMS;
            # None where the offset rests on one compound and its error is unknown)
            offset = offsets.get((name, tier)) if name in shifts else None
            tolerance = 0.0 if offset is None else offset.loco_rms_eV
            record.update(training_p01_eV=r["p01_eV"], training_p99_eV=r["p99_eV"], energy_scale_tolerance_eV=tolerance)
            below, above = r["p01_eV"] - edge, edge - r["p99_eV"]
            record["inside_training_range"] = max(below, above) <= (tolerance or 0.0)
            if not record["inside_training_range"]:
                side, valence = ("below", "lower") if below > 0 else ("above", "higher")
                known = "an unknown error (its offset rests on one compound)" if tolerance is None else f"the {tolerance:.1f} eV it is known to"
                record["why"] = (
                    f"{max(below, above):.1f} eV {side} 99 % of the training edges, on an energy scale with {known}: "
                    f"a {valence} valence than any the model learned, or a calibration off by that much"
                )
        out[name] = record
    return out
