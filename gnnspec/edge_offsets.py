"""FEFF's absolute edge energies against measurement: one offset per channel and FEFF tier.

FEFF10 places an edge a few eV away from where a calibrated measurement has it, and by a
different amount per edge and per set of cards (core hole, SCF). The offset of a channel in a
tier is fitted on reference compounds measured with a foil calibration
(:mod:`gnnspec.bench.measured`):

    offset_eV = mean over compounds of (measured edge - FEFF edge)

with the edge position defined once, in :func:`gnnspec.edge_position.half_step_energy` (half
step). Adding the offset to FEFF's energies puts a simulated spectrum on the measured energy
scale; equivalently, subtracting it from calibrated measured energies puts a measurement on the
energy scale a model trained on that tier has seen (:func:`to_feff_scale`). The chemical shift
(an edge moving with the oxidation state) is kept: one constant per channel and tier moves
every compound alike.

What one constant cannot remove is stated next to it: ``spread_eV`` (standard deviation of
``measured - FEFF`` over the compounds) and ``loco_rms_eV`` (leave-one-compound-out: the RMS
error of each compound's edge after the offset fitted on the others), beside ``raw_rms_eV``
(no offset). A tier whose spread is comparable to the chemical shifts it should resolve (the
``fast`` tier's Mn K edges barely move with the Mn valence) is not calibrated by an offset; the
table says so through its spread.

The table ships as ``gnnspec/assets/edge_offsets.json`` (format ``gnnspec.edge_offsets/1``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gnnspec.errors import InputError
from gnnspec.jsonio import write_json

FORMAT = "gnnspec.edge_offsets/1"
DEFINITION = "offset_eV = mean over reference compounds of (measured edge - FEFF edge); half-step edge positions (gnnspec.edge_position.half_step_energy)"


def default_path() -> Path:
    return Path(__file__).resolve().parent / "assets" / "edge_offsets.json"


@dataclass(frozen=True)
class EdgeOffset:
    """The offset of one channel in one FEFF tier (eV) and what it leaves."""

    channel: str
    tier: str
    offset_eV: float
    spread_eV: float
    raw_rms_eV: float
    loco_rms_eV: float | None  # None with fewer than two compounds
    n_compounds: int
    n_spectra: int
    compounds: tuple[str, ...]


def fit_edge_offsets(rows: Iterable[Mapping]) -> dict[tuple[str, str], EdgeOffset]:
    """Fit offsets from comparison rows ``{"compound", "channel", "tier", "edge_error_eV"}``
    (``edge_error_eV`` = FEFF edge - measured edge, one row per measured spectrum; a compound
    measured at several beamlines gives several rows). Compounds weigh equally: each compound's
    rows are averaged first, so a compound measured twice does not count double."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        groups.setdefault((r["channel"], r["tier"]), {}).setdefault(r["compound"], []).append(-float(r["edge_error_eV"]))
    out = {}
    for (channel, tier), by_compound in sorted(groups.items()):
        names = sorted(by_compound)
        per = np.array([np.mean(by_compound[c]) for c in names])
        offset = float(per.mean())
        loco = None
        if len(per) > 1:
            others = (per.sum() - per) / (len(per) - 1)
            loco = float(np.sqrt(np.mean((per - others) ** 2)))
        out[(channel, tier)] = EdgeOffset(
            channel=channel,
            tier=tier,
            offset_eV=offset,
            spread_eV=float(per.std(ddof=1)) if len(per) > 1 else float("nan"),
            raw_rms_eV=float(np.sqrt(np.mean(per**2))),
            loco_rms_eV=loco,
            n_compounds=len(per),
            n_spectra=sum(len(v) for v in by_compound.values()),
            compounds=tuple(names),
        )
    return out


def write_edge_offsets(path: str | Path, offsets: Mapping[tuple[str, str], EdgeOffset], source: str) -> Path:
    """Write the table (``source``: how and where it was fitted); a NaN spread is written as null."""
    table: dict[str, dict] = {}
    for (channel, tier), o in sorted(offsets.items()):
        entry = asdict(o)
        entry.pop("channel"), entry.pop("tier")
        table.setdefault(channel, {})[tier] = entry
    return write_json(path, {"format": FORMAT, "definition": DEFINITION, "source": source, "offsets": table}, indent=1)


def read_edge_offsets(path: str | Path | None = None) -> dict[tuple[str, str], EdgeOffset]:
    """Read a table written by :func:`write_edge_offsets` (default: the shipped one)."""
    path = Path(path) if path is not None else default_path()
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read an edge-offset table ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} file (format {obj.get('format') if isinstance(obj, dict) else None!r})")
    out = {}
    for channel, tiers in obj["offsets"].items():
        for tier, e in tiers.items():
            spread = float("nan") if e["spread_eV"] is None else float(e["spread_eV"])
            out[(channel, tier)] = EdgeOffset(channel, tier, float(e["offset_eV"]), spread, float(e["raw_rms_eV"]), e["loco_rms_eV"], int(e["n_compounds"]), int(e["n_spectra"]), tuple(e["compounds"]))
    return out


def to_feff_scale(energy: np.ndarray, offset: EdgeOffset | None) -> np.ndarray:
    """Calibrated measured energies (eV) moved onto the tier's FEFF energy scale: ``E - offset``."""
    return np.asarray(energy, dtype=float) - (offset.offset_eV if offset is not None else 0.0)
