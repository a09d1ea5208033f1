"""XDI files (the XAS Data Interchange format, XDI/1.0) and energy calibration against a reference foil.

An XDI file is text: ``# Key.sub: value`` header lines (``Column.N`` names the data columns,
``Element.symbol`` and ``Element.edge`` the edge), a ``# ///`` line, free comments, then
whitespace-separated numbers. The format is small and fixed, so gnnspec reads it itself
(xraylarch's reader pulls in a large stack for the same few lines); the tests pin it on the
XAS Data Library files in ``shared/data/experimental_reference/xdi``.

The absorption, by what the columns hold:

* ``mutrans`` / ``mufluor`` / ``mu`` / ``xmu``: used as given;
* ``i0`` and ``itrans``: transmission, ``mu = ln(i0 / itrans)``;
* ``i0`` and ``ifluor``: fluorescence, ``mu = ifluor / i0``.

The reference channel, when ``irefer`` and ``itrans`` are present, is ``ln(itrans / irefer)``: a
foil of the absorbing element measured downstream of the sample at the same time.
:func:`calibrate_to_reference` finds its first inflection point (the lowest-energy maximum of
the derivative that reaches ``FIRST_PEAK_FRACTION`` of the largest one near the tabulated edge:
a metal foil's first inflection sits on a shoulder, a few eV below the steepest rise) and shifts the energy axis so that it sits at the tabulated edge
energy (:data:`gnnspec.channels.EDGE_ENERGIES_EV`; 6539.0 eV for the Mn K edge of Mn metal,
the convention the field uses). The shift applies to the sample's energies too: that is what a
reference foil is for, and it keeps the sample's chemical shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from gnnspec.channels import EDGE_ENERGIES_EV
from gnnspec.errors import InputError

#: Half-width (eV) of the window around the tabulated edge in which the reference's inflection is sought.
INFLECTION_SEARCH_EV = 20.0
#: Gaussian smoothing (eV) of the reference before differentiating.
INFLECTION_SMOOTH_EV = 0.5
#: A derivative maximum counts as the first inflection when it reaches this fraction of the
#: largest one in the window (Mn foil in the XAS Data Library files: 0.41-0.54).
FIRST_PEAK_FRACTION = 0.3


@dataclass
class XdiData:
    """The columns of an XDI file (by lower-case name), its header and the edge it names."""

    path: str
    columns: dict[str, np.ndarray]
    header: dict[str, str]
    element: str | None
    edge: str | None

    @property
    def energy(self) -> np.ndarray:
        return self.columns["energy"]

    def absorption(self) -> tuple[np.ndarray, str]:
        """``(mu, how)``: the sample's absorption and the formula it came from."""
        c = self.columns
        for name in ("mutrans", "mufluor", "mu", "xmu"):
            if name in c:
                return c[name], name
        if "i0" in c and "itrans" in c:
            return _log_ratio(c["i0"], c["itrans"], self.path, "i0/itrans"), "ln(i0/itrans)"
        if "i0" in c and "ifluor" in c:
            return c["ifluor"] / np.where(c["i0"] == 0, np.nan, c["i0"]), "ifluor/i0"
        raise InputError(f"{self.path}: no absorption column (mutrans, mufluor, mu) and no i0 with itrans or ifluor; columns: {', '.join(c)}")

    def reference(self) -> np.ndarray | None:
        """The reference foil's absorption ``ln(itrans / irefer)``, or None without those columns."""
        c = self.columns
        if "irefer" in c and "itrans" in c:
            return _log_ratio(c["itrans"], c["irefer"], self.path, "itrans/irefer")
        if "murefer" in c:
            return c["murefer"]
        return None


def _log_ratio(a: np.ndarray, b: np.ndarray, path: str, what: str) -> np.ndarray:
    if np.any(a <= 0) or np.any(b <= 0):
        raise InputError(f"{path}: {what} has non-positive values; the absorption ln({what}) is undefined")
    return np.log(a / b)


def read_xdi(path: str | Path) -> XdiData:
    """Read an XDI/1.0 file; an :class:`InputError` names the file and what is wrong."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not lines or not lines[0].lstrip("#").strip().upper().startswith("XDI/"):
        raise InputError(f"{path}: not an XDI file (the first line must start with '# XDI/')")
    header: dict[str, str] = {}
    names: dict[int, str] = {}
    rows: list[list[float]] = []
    for number, line in enumerate(lines[1:], start=2):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            body = text.lstrip("#").strip()
            key, sep, value = body.partition(":")
            if sep and "." in key and " " not in key.strip():
                header[key.strip().lower()] = value.strip()
                if key.strip().lower().startswith("column."):
                    try:
                        names[int(key.strip().split(".")[1])] = value.strip().split()[0].lower()
                    except (ValueError, IndexError):
                        raise InputError(f"{path} line {number}: bad column header {body!r}") from None
            continue
        try:
            rows.append([float(x) for x in text.split()])
        except ValueError:
            raise InputError(f"{path} line {number}: not a row of numbers: {text[:60]!r}") from None
    if not rows:
        raise InputError(f"{path}: no data rows")
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise InputError(f"{path}: data rows have different numbers of values ({sorted(width)})")
    data = np.array(rows)
    if not names or min(names) != 1 or max(names) > data.shape[1]:
        raise InputError(f"{path}: Column.N headers ({sorted(names)}) do not match {data.shape[1]} data columns")
    columns = {name: data[:, n - 1] for n, name in names.items()}
    if "energy" not in columns:
        raise InputError(f"{path}: no 'energy' column; columns: {', '.join(columns)}")
    order = np.argsort(columns["energy"], kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    if np.any(np.diff(columns["energy"]) <= 0):
        raise InputError(f"{path}: repeated energies in the 'energy' column")
    element = header.get("element.symbol")
    edge = header.get("element.edge")
    return XdiData(str(path), columns, header, element, edge.upper() if edge else None)


def first_inflection(energy: np.ndarray, mu: np.ndarray, near: float, search: float = INFLECTION_SEARCH_EV, where: str = "") -> float:
    """Energy (eV) of the first inflection of ``mu`` within ``search`` eV of ``near``: the
    lowest-energy maximum of the derivative reaching ``FIRST_PEAK_FRACTION`` of the largest,
    refined by a parabola through the three points around it (0.05 eV grid, light smoothing)."""
    from scipy.signal import find_peaks

    lo, hi = max(near - search, energy[0]), min(near + search, energy[-1])
    if hi - lo < 5.0:
        raise InputError(f"{where}: data span {energy[0]:.1f}..{energy[-1]:.1f} eV, missing the edge near {near:.1f} eV")
    fine = np.arange(lo, hi, 0.05)
    y = gaussian_filter1d(np.interp(fine, energy, mu), INFLECTION_SMOOTH_EV / 0.05)
    d = np.gradient(y, fine)
    peaks, _ = find_peaks(d, height=FIRST_PEAK_FRACTION * d.max())
    i = int(np.clip(peaks[0] if peaks.size else np.argmax(d), 1, len(d) - 2))
    a, b, c = d[i - 1], d[i], d[i + 1]
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return float(fine[i] + offset * 0.05)


@dataclass(frozen=True)
class FoilCalibration:
    """The shift (eV) that puts the reference foil's first inflection at the tabulated edge."""

    shift: float
    measured_inflection: float
    tabulated_edge: float
    element: str
    edge: str
    source: str

    def as_dict(self) -> dict:
        return {
            "method": "reference foil (first inflection of ln(itrans/irefer))",
            "shift_eV": self.shift,
            "measured_inflection_eV": self.measured_inflection,
            "tabulated_edge_eV": self.tabulated_edge,
            "element": self.element,
            "edge": self.edge,
            "source": self.source,
        }


def calibrate_to_reference(xdi: XdiData, element: str | None = None, edge: str | None = None) -> FoilCalibration:
    """The energy shift from the file's reference channel (see the module docstring)."""
    element = element or xdi.element
    edge = edge or xdi.edge
    if not element or not edge:
        raise InputError(f"{xdi.path}: the file names no Element.symbol/Element.edge; say which edge the reference foil shows")
    if (element, edge) not in EDGE_ENERGIES_EV:
        raise InputError(f"{xdi.path}: no tabulated energy for the {element} {edge} edge")
    ref = xdi.reference()
    if ref is None:
        raise InputError(f"{xdi.path}: no reference channel (irefer with itrans, or murefer) to calibrate against")
    tabulated = EDGE_ENERGIES_EV[(element, edge)]
    inflection = first_inflection(xdi.energy, ref, tabulated, where=f"{xdi.path} (reference channel)")
    return FoilCalibration(tabulated - inflection, inflection, tabulated, element, edge, xdi.path)


def half_step_energy(energy: np.ndarray, mu: np.ndarray, e0: float, where: str = "") -> float:
    """Energy (eV) where the edge step of ``mu`` reaches half its height: the usual measure of a
    K-edge position (it rises with the oxidation state). The pre-edge line is fitted from 30 to
    10 eV below ``e0`` (the tabulated edge), the step height is the mean over 30-60 eV above it."""
    pre = (energy >= e0 - 30.0) & (energy <= e0 - 10.0)
    post = (energy >= e0 + 30.0) & (energy <= e0 + 60.0)
    if pre.sum() < 3 or post.sum() < 3:
        raise InputError(f"{where}: data span {energy[0]:.1f}..{energy[-1]:.1f} eV; the half step needs {e0 - 30:.0f}..{e0 + 60:.0f} eV")
    line = np.polyfit(energy[pre], mu[pre], 1)
    y = mu - np.polyval(line, energy)
    y = y / y[post].mean()
    above = np.flatnonzero((y > 0.5) & (energy > e0 - 10.0))
    if above.size == 0 or above[0] == 0:
        raise InputError(f"{where}: the normalised absorption never crosses half the edge step")
    i = above[0]
    return float(energy[i - 1] + (0.5 - y[i - 1]) * (energy[i] - energy[i - 1]) / (y[i] - y[i - 1]))
