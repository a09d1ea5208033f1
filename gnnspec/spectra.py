"""The spectra interchange format ``gnnspec.spectra/1`` and the mapping of spectra onto channel grids.

A spectra file is one JSON object::

    {"schema": "gnnspec.spectra/1",
     "channels": {"Ni-K-xas": {"energy": [8330.1, 8330.6, ...], "intensity": [0.01, 0.02, ...]},
                  "O-K-eels": {"energy": [...], "intensity": [...]}},
     "quantification": {"Ni": 0.2, "O": 0.6},
     "meta": {"source": "free text"}}

Energies are absolute, in eV, strictly increasing; intensities are in arbitrary units (any
scale: the channel normalisation is applied when a spectrum is mapped onto its grid). Any subset
of the channels in :data:`gnnspec.channels.CHANNEL_NAMES` may appear. ``meta`` is free-form
JSON. ``quantification`` is optional: the elemental quantification of the same sample, atom
amounts (fractions, percentages or counts; only ratios matter) of elements that have channels
(:mod:`gnnspec.quantification` says what the encoder makes of it). A batch is a folder of such
``.json`` files or a ``.jsonl`` file with one object per line (an optional top-level ``"id"``
string names each record).

:func:`spectra_on_grids` is the one place where a spectrum meets its channel grid: every model,
library query and analysis maps spectra through it (:func:`on_grid_by_channel` gives its result
as the ``{channel: row}`` dict the model's spectrum inputs take).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, to_channel_grid
from gnnspec.errors import InputError, read_json_file
from gnnspec.jsonio import to_jsonable, write_json

SCHEMA = "gnnspec.spectra/1"
#: Grid points per channel (every channel grid has the same length).
N_ENERGY: int = CHANNELS[CHANNEL_NAMES[0]].n_energy
#: A spectrum must cover at least this fraction of its channel grid's energy range.
MIN_GRID_OVERLAP = 0.5
_TOP_KEYS = {"schema", "channels", "meta", "id", "quantification"}
#: Elements a quantification may name: those with a channel.
QUANTIFIABLE = tuple(dict.fromkeys(c.element for c in CHANNELS.values()))


class SpectraSet(dict):
    """The spectra of one sample by channel (``{channel: Spectrum}``, a plain dict) and, as the
    attribute ``quantification``, its optional elemental quantification ``{element: amount}``."""

    def __init__(self, spectra: Any = (), quantification: Mapping[str, float] | None = None):
        super().__init__(spectra)
        self.quantification = dict(quantification) if quantification else None


Spectra = SpectraSet


def check_quantification(obj: Any, source: str) -> dict[str, float]:
    """A quantification ``{element: amount >= 0}`` of quantifiable elements, as floats; else InputError."""
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(f"{source}: 'quantification' must be a non-empty object mapping elements to amounts")
    out = {}
    for element, value in obj.items():
        if element not in QUANTIFIABLE:
            raise InputError(f"{source}: quantification names {element!r}; elements with channels: {', '.join(QUANTIFIABLE)}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise InputError(f"{source}: quantification of {element} is {value!r}; it must be a finite number >= 0")
        out[element] = float(value)
    if not any(v > 0 for v in out.values()):
        raise InputError(f"{source}: quantification amounts are all zero")
    return out


@dataclass
class Spectrum:
    """One spectrum of one channel: absolute energies (eV) and intensities (arbitrary units).

    The arrays are converted to 1-D float64; :func:`check_spectrum` validates them.
    """

    channel: str
    energy: np.ndarray
    intensity: np.ndarray

    def __post_init__(self) -> None:
        self.energy = np.asarray(self.energy, dtype=np.float64).reshape(-1)
        self.intensity = np.asarray(self.intensity, dtype=np.float64).reshape(-1)


def check_spectrum(spectrum: Spectrum, source: str = "<spectra>") -> None:
    """Refuse an unknown channel, unequal lengths, fewer than 2 points, non-increasing or non-finite values.

    ``source`` names the file or record in the :class:`InputError` message.
    """
    name = spectrum.channel
    if name not in CHANNELS:
        raise InputError(f"{source}: unknown channel {name!r}; valid channels: {', '.join(CHANNEL_NAMES)}")
    check_arrays(spectrum.energy, spectrum.intensity, f"{source}: channel {name}")


def check_arrays(e: np.ndarray, y: np.ndarray, where: str) -> None:
    """Refuse unequal lengths, fewer than 2 points, non-finite values or non-increasing energies (eV)."""
    if e.shape != y.shape:
        raise InputError(f"{where}: energy has {e.size} values but intensity has {y.size}; they must have equal lengths")
    if e.size < 2:
        raise InputError(f"{where}: a spectrum needs at least 2 points, got {e.size}")
    for label, arr in (("energy", e), ("intensity", y)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(f"{where}: {label} has {bad.size} non-finite value(s) (NaN or inf), first at index {bad[0]}")
    steps = np.diff(e)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InputError(
            f"{where}: energies are not strictly increasing: energy[{i}] = {e[i]:g} eV, energy[{i + 1}] = {e[i + 1]:g} eV"
        )


def parse_quantification(text: str) -> dict[str, float]:
    """``"Ni=0.2,Mn=0.1,O=0.6"`` (a command-line argument) -> a checked quantification."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        element, sep, value = part.partition("=")
        try:
            out[element.strip()] = float(value)
        except ValueError:
            raise InputError(f"--quantification: {part.strip()!r} is not ELEMENT=AMOUNT (for example Ni=0.2,O=0.6)") from None
        if not sep:
            raise InputError(f"--quantification: {part.strip()!r} is not ELEMENT=AMOUNT (for example Ni=0.2,O=0.6)")
    return check_quantification(out, "--quantification")


def quantification_argument(text: str) -> dict[str, float]:
    """argparse ``type=`` of a ``--quantification`` option (:func:`parse_quantification`)."""
    import argparse

    try:
        return parse_quantification(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def spectra_from_dict(obj: Any, source: str = "<dict>") -> tuple[Spectra, dict]:
    """Parse and validate one ``gnnspec.spectra/1`` object; returns (spectra by channel, meta)."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{source}: expected a JSON object with schema {SCHEMA!r}, got {type(obj).__name__}")
    schema = obj.get("schema")
    if schema != SCHEMA:
        raise InputError(f"{source}: schema is {schema!r}; expected {SCHEMA!r}")
    unknown = sorted(set(obj) - _TOP_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    channels = obj.get("channels")
    if not isinstance(channels, Mapping) or not channels:
        raise InputError(f"{source}: 'channels' must be a non-empty object mapping channel names to spectra")
    meta = obj.get("meta", {})
    if not isinstance(meta, Mapping):
        raise InputError(f"{source}: 'meta' must be an object, got {type(meta).__name__}")
    quantification = check_quantification(obj["quantification"], source) if "quantification" in obj else None
    spectra = SpectraSet(quantification=quantification)
    for name, entry in channels.items():
        if name not in CHANNELS:
            raise InputError(f"{source}: unknown channel {name!r}; valid channels: {', '.join(CHANNEL_NAMES)}")
        if not isinstance(entry, Mapping) or set(entry) != {"energy", "intensity"}:
            raise InputError(f"{source}: channel {name}: expected an object with exactly 'energy' and 'intensity' lists")
        arrays = []
        for key in ("energy", "intensity"):
            values = entry[key]
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise InputError(f"{source}: channel {name}: '{key}' must be a list of numbers")
            arrays.append(np.array(values, dtype=np.float64))
        spectrum = Spectrum(name, arrays[0], arrays[1])
        check_spectrum(spectrum, source)
        spectra[name] = spectrum
    return spectra, dict(meta)


def spectra_to_dict(
    spectra: Mapping[str, Spectrum] | Iterable[Spectrum], meta: Mapping | None = None, quantification: Mapping[str, float] | None = None
) -> dict:
    """The ``gnnspec.spectra/1`` object for ``spectra`` (validated), channels in canonical order.

    ``quantification``: written when given, else taken from a :class:`SpectraSet`'s own.
    """
    if quantification is None:
        quantification = getattr(spectra, "quantification", None)
    items = list(spectra.values()) if isinstance(spectra, Mapping) else list(spectra)
    if not items:
        raise InputError("no spectra to write: at least one channel is needed")
    by_name: dict[str, Spectrum] = {}
    for spectrum in items:
        check_spectrum(spectrum, "<spectra to write>")
        if spectrum.channel in by_name:
            raise InputError(f"<spectra to write>: channel {spectrum.channel} appears twice")
        by_name[spectrum.channel] = spectrum
    channels = {
        name: {"energy": by_name[name].energy.tolist(), "intensity": by_name[name].intensity.tolist()}
        for name in CHANNEL_NAMES
        if name in by_name
    }
    obj = {"schema": SCHEMA, "channels": channels}
    if quantification:
        obj["quantification"] = check_quantification(quantification, "<spectra to write>")
    obj["meta"] = _jsonable_meta(meta or {})
    return obj


def read_spectra(source: str | Path | Mapping) -> tuple[Spectra, dict]:
    """Read a ``gnnspec.spectra/1`` file (or an already-parsed dict); returns (spectra by channel, meta).

    Raises :class:`InputError` naming the file and channel for every malformed input.
    """
    if isinstance(source, Mapping):
        return spectra_from_dict(source, "<dict>")
    path = Path(source)
    return spectra_from_dict(read_json_file(path, "spectra file"), str(path))


def write_spectra(
    path: str | Path,
    spectra: Mapping[str, Spectrum] | Iterable[Spectrum],
    meta: Mapping | None = None,
    quantification: Mapping[str, float] | None = None,
) -> Path:
    """Write ``spectra`` (free-form ``meta``, optional ``quantification``) as a ``gnnspec.spectra/1`` JSON file; returns the path."""
    return write_json(path, spectra_to_dict(spectra, meta, quantification), indent=None, nonfinite="raise")


def read_spectra_records(path: str | Path) -> list[tuple[str, Spectra, dict]]:
    """Read many spectra sets with their meta: a folder of ``.json`` files or a ``.jsonl`` file
    (one object per line).

    Returns ``(id, spectra, meta)`` triples in file order (folder: sorted by name). The id is the record's
    top-level ``"id"`` string when present, else the file stem (folder) or ``"{stem}:{line}"``
    (JSON lines). Blank lines are skipped; duplicate ids are refused.
    """
    path = Path(path)
    records: list[tuple[str, Spectra, dict]] = []
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError(f"{path}: folder holds no .json spectra files")
        for file in files:
            obj = read_json_file(file, "spectra file")
            spectra, meta = spectra_from_dict(obj, str(file))
            records.append((_record_id(obj, file.stem, str(file)), spectra, meta))
    elif path.is_file():
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            source = f"{path} line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{source}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            spectra, meta = spectra_from_dict(obj, source)
            records.append((_record_id(obj, f"{path.stem}:{number}", source), spectra, meta))
        if not records:
            raise InputError(f"{path}: file holds no spectra records")
    else:
        raise InputError(f"{path}: no such file or folder")
    seen: set[str] = set()
    for obj_id, *_ in records:
        if obj_id in seen:
            raise InputError(f"{path}: record id {obj_id!r} appears more than once")
        seen.add(obj_id)
    return records


def read_spectra_batch(path: str | Path) -> list[tuple[str, Spectra]]:
    """``(id, spectra)`` of every record of :func:`read_spectra_records` (the meta left out)."""
    return [(obj_id, spectra) for obj_id, spectra, _ in read_spectra_records(path)]


def write_spectra_batch(path: str | Path, records: Iterable[tuple], meta: Mapping | None = None) -> Path:
    """Write ``(id, spectra)`` or ``(id, spectra, record_meta)`` records as JSON lines (one
    ``gnnspec.spectra/1`` object per line; :func:`read_spectra_records` reads them back).

    A record's meta is ``meta`` updated by its own ``record_meta``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for obj_id, spectra, *own in records:
            record_meta = {**(meta or {}), **(own[0] if own else {})}
            obj = {"id": str(obj_id), **spectra_to_dict(spectra, record_meta or None)}
            out.write(json.dumps(obj, allow_nan=False) + "\n")
    return path


def spectra_on_grids(
    spectra: Mapping[str, Spectrum], shift: float | Mapping[str, float] | None = None, source: str = "<spectra>"
) -> tuple[np.ndarray, np.ndarray]:
    """Map spectra onto their channel grids: ``(array [12, 121] float32, mask [12] bool)``.

    Rows follow :data:`CHANNEL_NAMES`; a missing channel gives a zero row and ``mask`` False.
    Each present spectrum is interpolated onto its grid (after adding ``shift`` eV to its energies:
    one number for all channels or a mapping channel -> shift) and normalised by the channel rule
    (:func:`gnnspec.channels.to_channel_grid`). A spectrum whose energy range covers less than half
    of its grid's range, or whose normalisation fails, is refused with an :class:`InputError` that
    names ``source`` (the file or record the spectra came from) and the channel.
    """
    out = np.zeros((len(CHANNEL_NAMES), N_ENERGY), dtype=np.float32)
    mask = np.zeros(len(CHANNEL_NAMES), dtype=bool)
    for name, spectrum in spectra.items():
        if name not in CHANNELS:
            raise InputError(f"{source}: unknown channel {name!r}; valid channels: {', '.join(CHANNEL_NAMES)}")
        check_spectrum(Spectrum(name, spectrum.energy, spectrum.intensity), source)
        channel = CHANNELS[name]
        delta = _shift_for(shift, name)
        grid = channel.grid
        lo, hi = spectrum.energy[0] + delta, spectrum.energy[-1] + delta
        covered = max(0.0, min(hi, grid[-1]) - max(lo, grid[0])) / (grid[-1] - grid[0])
        if covered < MIN_GRID_OVERLAP:
            raise InputError(
                f"{source}: channel {name}: spectrum spans {lo:.1f}..{hi:.1f} eV (after a shift of {delta:+.2f} eV), "
                f"covering {100 * covered:.0f}% of the channel grid {grid[0]:.1f}..{grid[-1]:.1f} eV; "
                f"at least {100 * MIN_GRID_OVERLAP:.0f}% is needed (is the energy absolute, in eV, and aligned?)"
            )
        try:
            row = to_channel_grid(channel, spectrum.energy, spectrum.intensity, shift=delta)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}") from None
        out[CHANNEL_NAMES.index(name)] = row
        mask[CHANNEL_NAMES.index(name)] = True
    return out, mask


def _shift_for(shift: float | Mapping[str, float] | None, name: str) -> float:
    """The shift (eV) that ``shift`` (one number, a mapping channel -> shift, or None) gives ``name``."""
    if isinstance(shift, Mapping):
        return float(shift.get(name, 0.0))
    return float(shift or 0.0)


def grid_coverage(
    spectra: Mapping[str, Spectrum | np.ndarray], shift: float | Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Which grid energies each spectrum measured: ``{channel: bool [121]}`` for the known channels of ``spectra``.

    A :class:`Spectrum` covers the grid points inside its energy range (after ``shift``, as in
    :func:`spectra_on_grids`); outside it :func:`spectra_on_grids` extrapolates flat, and a model
    whose encoder reads coverage (``encoder.coverage``) is told those energies are missing. A value
    already on the channel grid (an array) covers it all.
    """
    out = {}
    for name, spectrum in spectra.items():
        if name not in CHANNELS:
            continue
        grid = CHANNELS[name].grid
        if isinstance(spectrum, Spectrum):
            delta = _shift_for(shift, name)
            lo, hi = spectrum.energy[0] + delta - 1e-6, spectrum.energy[-1] + delta + 1e-6
            out[name] = (grid >= lo) & (grid <= hi)
        else:
            out[name] = np.ones(grid.size, dtype=bool)
    return out


def on_grid_by_channel(
    spectra: Mapping[str, Spectrum], shift: float | Mapping[str, float] | None = None, source: str = "<spectra>"
) -> dict[str, np.ndarray]:
    """``{channel: normalised intensity on its grid}`` (float64 ``[121]``), the present channels of
    :func:`spectra_on_grids` in canonical order: what the model's spectrum inputs take."""
    rows, mask = spectra_on_grids(spectra, shift, source)
    return {name: rows[c].astype(np.float64) for c, name in enumerate(CHANNEL_NAMES) if mask[c]}


def _record_id(obj: Mapping, default: str, source: str) -> str:
    obj_id = obj.get("id", default)
    if not isinstance(obj_id, str) or not obj_id:
        raise InputError(f"{source}: 'id' must be a non-empty string, got {obj_id!r}")
    return obj_id


def _jsonable_meta(meta: Mapping) -> dict:
    """Meta as plain JSON (:func:`gnnspec.jsonio.to_jsonable`), a non-finite number refused."""
    try:
        return to_jsonable(dict(meta), nonfinite="raise")
    except ValueError as exc:
        raise InputError(f"meta holds {exc}") from None
