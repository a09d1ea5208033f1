"""Reading measured spectra: EELS from EMSA/MAS (``.msa``) and Gatan (``.dm3``/``.dm4``), XAS from text.

Every reader returns a :class:`MeasuredSpectrum`: energies in eV (as the file states them, not
yet calibrated or aligned), intensities in the file's units, and the file's metadata. Malformed
files raise :class:`~gnnspec.errors.InputError` naming the file and the problem.

* ``.msa``/``.emsa``/``.ems``: a small own parser of the EMSA/MAS 1.0 text format (``XY`` and
  ``Y`` data types). It keeps the file's own X column; rosettasciio's ``rsciio.msa`` rebuilds the
  axis from ``OFFSET`` and ``XPERCHAN`` and drops it. The two agree on regular files (tested), and
  the own parser needs no optional dependency.
* ``.dm3``/``.dm4``: rosettasciio's Digital Micrograph reader (``pip install gnnspec[measured]``).
  A spectrum image is averaged over its navigation (pixel) axes into one spectrum.
* ``.xdi``: XAS Data Interchange files (:mod:`gnnspec.measured.xdi`): the absorption from the
  columns the file has, with its reference channel and edge kept for foil calibration.
* ``.prj``: Athena project files, read with xraylarch (``larch.io.read_athena``;
  ``pip install gnnspec[xas]``). A project holds many records: name one as ``FILE.prj@RECORD``.
  Each record's Athena energy shift (``bkg_eshift``, the user's calibration in Athena) is
  applied, and recorded in the metadata.
* ``.csv``/``.txt``/``.dat``/``.xy``/``.tsv``: two numeric columns, energy (eV) then intensity;
  ``#`` starts a comment; commas, semicolons, tabs or spaces separate values; non-numeric header
  lines before the data are tolerated. A scan recorded from high to low energy is reversed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.errors import InputError
from gnnspec.spectra import check_arrays

#: Real measured STEM-EELS of an NMC cathode, kept next to a source checkout (absent elsewhere).
EXAMPLE_DATA_DIR = Path(__file__).parents[2] / ".." / "shared" / "data" / "experimental_eels_nmc"

MSA_SUFFIXES = (".msa", ".emsa", ".ems")
DM_SUFFIXES = (".dm3", ".dm4")
TEXT_SUFFIXES = (".csv", ".txt", ".dat", ".xy", ".tsv")
XDI_SUFFIXES = (".xdi",)
ATHENA_SUFFIXES = (".prj",)
_SPLIT = re.compile(r"[,;\s]+")
_ENERGY_UNITS = {"ev": 1.0, "kev": 1000.0, "mev": 1e-3}


@dataclass
class MeasuredSpectrum:
    """A spectrum as read from a file: energy (eV, uncalibrated), intensity, metadata and modality."""

    path: str
    energy: np.ndarray
    intensity: np.ndarray
    modality: str  # "eels" or "xas"
    meta: dict[str, Any] = field(default_factory=dict)


def read_measured(path: str | Path) -> MeasuredSpectrum:
    """Read a measured spectrum, choosing the reader by file suffix (``.msa``, ``.dm3``/``.dm4``, text)."""
    path = Path(path)
    base, at, record = str(path).rpartition("@")
    if at and base.lower().endswith(ATHENA_SUFFIXES):
        return read_athena_spectrum(base, record)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in MSA_SUFFIXES:
        return read_msa(path)
    if suffix in DM_SUFFIXES:
        return read_dm(path)
    if suffix in TEXT_SUFFIXES:
        return read_xas_text(path)
    if suffix in XDI_SUFFIXES:
        return read_xdi_spectrum(path)
    if suffix in ATHENA_SUFFIXES:
        return read_athena_spectrum(path, None)
    known = ", ".join(MSA_SUFFIXES + DM_SUFFIXES + TEXT_SUFFIXES + XDI_SUFFIXES + ATHENA_SUFFIXES)
    raise InputError(f"{path}: unknown spectrum file type {suffix or '(none)'!r}; known: {known}")


def athena_records(path: str | Path) -> dict:
    """The records of an Athena project file by name (xraylarch groups); InputError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        from larch.io import read_athena
    except ImportError:
        raise InputError(f"{path}: reading Athena projects needs xraylarch (pip install gnnspec[xas])") from None
    try:
        project = read_athena(str(path))
    except Exception as exc:  # larch raises several types for files it cannot parse
        raise InputError(f"{path}: not a readable Athena project ({type(exc).__name__}: {str(exc)[:120]})") from None
    return dict(project.groups)


def read_athena_spectrum(path: str | Path, record: str | None) -> MeasuredSpectrum:
    """One record of an Athena project (``record`` None: the only one) as a measured XAS spectrum,
    its energies shifted by the record's Athena energy shift."""
    records = athena_records(path)
    if record is None:
        if len(records) != 1:
            raise InputError(f"{path}: the project holds {len(records)} records; name one as {Path(path).name}@RECORD ({', '.join(records)})")
        record = next(iter(records))
    if record not in records:
        raise InputError(f"{path}: no record {record!r}; records: {', '.join(records)}")
    group = records[record]
    shift = float(getattr(group, "energy_shift", 0.0) or 0.0)
    meta = {
        "format": "Athena",
        "record": record,
        "label": getattr(group, "label", record),
        "element": getattr(group, "atsym", None),
        "edge": getattr(group, "edge", None),
        "athena_energy_shift_eV": shift,
        "athena_e0_eV": float(getattr(group, "e0", float("nan"))),
    }
    energy = np.asarray(group.energy, dtype=np.float64) + shift
    return _finish(Path(f"{path}@{record}"), energy, np.asarray(group.mu, dtype=np.float64), "xas", meta)


def read_xdi_spectrum(path: str | Path) -> MeasuredSpectrum:
    """An XDI file as a measured XAS spectrum: the absorption, and in ``meta`` the edge, how the
    absorption was formed and whether a reference channel is there (:mod:`gnnspec.measured.xdi`)."""
    from gnnspec.measured.xdi import read_xdi

    xdi = read_xdi(path)
    mu, how = xdi.absorption()
    meta = {
        "format": "XDI",
        "element": xdi.element,
        "edge": xdi.edge,
        "absorption": how,
        "reference_channel": xdi.reference() is not None,
        "sample": xdi.header.get("sample.name") or xdi.header.get("sample.formula"),
        "beamline": xdi.header.get("beamline.name"),
    }
    keep = np.isfinite(mu)
    return _finish(Path(path), xdi.energy[keep], mu[keep], "xas", meta)


def read_msa(path: str | Path) -> MeasuredSpectrum:
    """Read an EMSA/MAS 1.0 spectrum (``#KEYWORD : value`` header, then ``XY`` or ``Y`` data)."""
    path = Path(path)
    header: dict[str, str] = {}
    values: list[list[float]] = []
    in_data = False
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            key = key.split("-")[0].strip().upper()  # "#BEAMKV -kV: 300" -> BEAMKV
            if key == "SPECTRUM":
                in_data = True
            elif key == "ENDOFDATA":
                break
            else:
                header[key] = value.strip()
            continue
        if not in_data:
            raise InputError(f"{path} line {number}: data before the '#SPECTRUM' line: {line[:40]!r}")
        try:
            values.append([float(v) for v in _SPLIT.split(line.strip(" ,;")) if v])
        except ValueError:
            raise InputError(f"{path} line {number}: non-numeric data {line[:40]!r}") from None
    if "FORMAT" not in header or "EMSA" not in header["FORMAT"].upper():
        raise InputError(f"{path}: not an EMSA/MAS file (no '#FORMAT : EMSA/MAS Spectral Data File' line)")
    if not values:
        raise InputError(f"{path}: no data after the '#SPECTRUM' line")
    datatype = header.get("DATATYPE", "XY").strip().upper()
    if datatype == "XY":
        if any(len(row) != 2 for row in values):
            raise InputError(f"{path}: DATATYPE XY needs two values (energy, counts) on every data line")
        arr = np.array(values, dtype=np.float64)
        energy, intensity = arr[:, 0], arr[:, 1]
    elif datatype == "Y":
        intensity = np.array([v for row in values for v in row], dtype=np.float64)
        offset, step = _header_float(header, "OFFSET", path), _header_float(header, "XPERCHAN", path)
        energy = offset + step * np.arange(intensity.size)
    else:
        raise InputError(f"{path}: DATATYPE {datatype!r} is not supported (XY or Y)")
    if "NPOINTS" in header:
        npoints = int(round(_header_float(header, "NPOINTS", path)))
        if npoints != intensity.size:
            raise InputError(f"{path}: header says NPOINTS {npoints} but the file holds {intensity.size} points (truncated?)")
    energy = energy * _energy_scale(header.get("XUNITS", "eV"), path)
    signal = header.get("SIGNALTYPE", "").upper()
    meta = {"format": "EMSA/MAS", "header": header, "optics": _msa_optics(header)}
    return _finish(path, energy, intensity, "eels" if signal in ("ELS", "EELS", "") else "xas", meta)


def read_dm_spectrum_image(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """A Gatan ``.dm3``/``.dm4`` spectrum (image) via rosettasciio: ``(energy [E] eV, counts [..., E], meta)``;
    the leading axes are the navigation (pixel) axes in the file's order (none for a single spectrum)."""
    path = Path(path)
    try:
        from rsciio.digitalmicrograph import file_reader
    except ImportError:
        raise InputError(f"{path}: reading .dm3/.dm4 needs rosettasciio (pip install 'gnnspec[measured]')") from None
    try:
        datasets = file_reader(str(path), lazy=False)
    except Exception as exc:  # rosettasciio raises many types on malformed files
        raise InputError(f"{path}: not a readable Digital Micrograph file ({type(exc).__name__}: {exc})") from None
    for dataset in datasets:
        axes = dataset["axes"]
        energy_axes = [ax for ax in axes if str(ax.get("units", "")).strip().lower() in _ENERGY_UNITS]
        if len(energy_axes) != 1:
            continue  # an image, or ambiguous
        axis = energy_axes[0]
        data = np.moveaxis(np.asarray(dataset["data"], dtype=np.float64), axis["index_in_array"], -1)
        energy = (axis["offset"] + axis["scale"] * np.arange(axis["size"])) * _energy_scale(str(axis["units"]), path)
        if axis["scale"] < 0:
            energy, data = energy[::-1], data[..., ::-1]
        nav = [ax for ax in axes if ax is not axis]
        meta = {
            "format": "Digital Micrograph",
            "title": dataset.get("metadata", {}).get("General", {}).get("title", ""),
            "navigation": [{"name": ax.get("name"), "size": ax.get("size"), "scale": ax.get("scale"), "units": ax.get("units")} for ax in nav],
            "optics": _dm_optics(dataset.get("metadata", {})),
        }
        return energy, data, meta
    raise InputError(f"{path}: holds no spectrum with one energy axis (units eV, keV or meV)")


def read_dm(path: str | Path) -> MeasuredSpectrum:
    """Read a Gatan ``.dm3``/``.dm4`` EELS spectrum (or spectrum image, averaged) via rosettasciio."""
    energy, data, meta = read_dm_spectrum_image(path)
    n_spectra = int(np.prod(data.shape[:-1]))
    intensity = data.reshape(-1, data.shape[-1]).mean(axis=0)
    meta = {"format": meta["format"], "title": meta["title"], "n_spectra_averaged": n_spectra, "optics": meta["optics"]}
    return _finish(Path(path), energy, intensity, "eels", meta)


def read_xas_text(path: str | Path, columns: tuple[int, int] = (0, 1)) -> MeasuredSpectrum:
    """Read a two-column text/CSV spectrum: energy (eV) and intensity, ``#`` comments, header tolerated."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows: list[tuple[float, float]] = []
    header: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip().strip(",;")
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        try:
            numbers = [float(f) for f in fields]
        except ValueError:
            if rows:
                raise InputError(f"{path} line {number}: non-numeric values {line[:40]!r} inside the data") from None
            header.append(line)
            continue
        if len(numbers) <= max(columns):
            raise InputError(f"{path} line {number}: expected at least {max(columns) + 1} columns, found {len(numbers)}")
        rows.append((numbers[columns[0]], numbers[columns[1]]))
    if not rows:
        raise InputError(f"{path}: no numeric data rows (expected two columns: energy in eV, intensity)")
    arr = np.array(rows, dtype=np.float64)
    energy, intensity = arr[:, 0], arr[:, 1]
    if energy.size > 1 and np.all(np.diff(energy) < 0):
        energy, intensity = energy[::-1], intensity[::-1]
    return _finish(path, energy, intensity, "xas", {"format": "text", "header_lines": header})


def _finish(path: Path, energy: np.ndarray, intensity: np.ndarray, modality: str, meta: dict) -> MeasuredSpectrum:
    """Check the arrays (>= 2 points, finite, strictly increasing energy) and build the result."""
    check_arrays(energy, intensity, str(path))
    return MeasuredSpectrum(str(path), energy, intensity, modality, meta)


def _msa_optics(header: dict[str, str]) -> dict[str, float]:
    """Beam energy (keV) and semi-angles (mrad) an EMSA header records (``#BEAMKV``, ``#COLLANGLE``, ``#CONVANGLE``).

    A ``#BEAMKV`` above 2000 is read as volts (some exports write 300000 for 300 kV); a value
    that is not a number is left out (these keywords are optional).
    """
    optics = {}
    for key, name in (("BEAMKV", "beam_energy_kev"), ("COLLANGLE", "collection_mrad"), ("CONVANGLE", "convergence_mrad")):
        if key in header:
            try:
                value = float(header[key])
            except ValueError:
                continue
            if key == "BEAMKV" and value > 2000:
                value /= 1000.0
            if value > 0:
                optics[name] = value
    return optics


def _dm_optics(metadata: dict) -> dict[str, float]:
    """Beam energy (keV) and semi-angles (mrad) from rosettasciio's Digital Micrograph metadata."""
    tem = metadata.get("Acquisition_instrument", {}).get("TEM", {})
    found = {
        "beam_energy_kev": tem.get("beam_energy"),
        "convergence_mrad": tem.get("convergence_angle"),
        "collection_mrad": tem.get("Detector", {}).get("EELS", {}).get("collection_angle"),
    }
    return {k: float(v) for k, v in found.items() if isinstance(v, (int, float)) and v > 0}


def _header_float(header: dict[str, str], key: str, path: Path) -> float:
    try:
        return float(header[key])
    except KeyError:
        raise InputError(f"{path}: header keyword #{key} is missing") from None
    except ValueError:
        raise InputError(f"{path}: header keyword #{key} is not a number: {header[key]!r}") from None


def _energy_scale(units: str, path: Path) -> float:
    """Factor from the file's energy units to eV; blank units are taken as eV."""
    key = units.strip().lower() or "ev"
    if key not in _ENERGY_UNITS:
        raise InputError(f"{path}: energy units {units!r} are not supported (eV, keV or meV)")
    return _ENERGY_UNITS[key]
