"""k-factor files: the one reader and writer of both kinds gnnspec uses.

Both kinds are JSON with a ``schema`` field and mean "intensity per atom" for one method:

* ``gnnspec.k_factors/1`` (**FEFF intensities**, :mod:`gnnspec.quantification.intensities`): per
  channel, ``k`` = the mean integrated raw FEFF intensity per absorbing atom over
  ``window_eV`` = :data:`~gnnspec.quantification.intensities.INTEGRATION_WINDOW_EV` from the
  channel window's start, with its spread ``cv`` and ``sites``; ``source`` says which dataset
  and split. Written by ``gnnspec data k-factors``, read by ``gnnspec quantify`` and
  ``gnnspec library evaluate --intensity-quantification``. Shipped:
  ``gnnspec/assets/k_factors.json``.
* ``gnnspec.eels_k_factors/1`` (**measured EELS**, :mod:`gnnspec.measured.quantify`): per
  element, the dimensionless factor that corrects the hydrogenic cross-section ratio,
  ``(I / sigma) / N`` of a standard of known composition scaled to a geometric mean of 1, with
  the standard, its optics and the integration window. Written by ``gnnspec convert
  --standard ... --write-k-factors``, read by ``gnnspec convert --k-factors``.

The two are not interchangeable (raw FEFF units against measured counts over cross-sections):
each reader names the other kind and the command that takes it when handed the wrong file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError, read_json_file
from gnnspec.jsonio import write_json
from gnnspec.quantification.intensities import INTEGRATION_WINDOW_EV

K_FACTORS_SCHEMA = "gnnspec.k_factors/1"
EELS_K_FACTORS_SCHEMA = "gnnspec.eels_k_factors/1"
#: The FEFF k-factors fitted on the shipped dataset's train split.
SHIPPED_K_FACTORS = Path(__file__).resolve().parents[1] / "assets" / "k_factors.json"
#: Elements with an EELS channel: those an EELS k-factor file may name.
EELS_ELEMENTS = tuple(dict.fromkeys(c.element for c in CHANNELS.values() if c.modality == "eels"))

_USE = {
    K_FACTORS_SCHEMA: "FEFF-intensity k-factors per channel (gnnspec data k-factors; for gnnspec quantify)",
    EELS_K_FACTORS_SCHEMA: "measured-EELS k-factors per element (gnnspec convert --write-k-factors; for gnnspec convert --k-factors)",
}


def _document(path: Path, schema: str) -> dict:
    """The JSON of a k-factor file that must be of kind ``schema``; the other kind is named in the error."""
    doc = read_json_file(path, "k-factors file")
    found = doc.get("schema") if isinstance(doc, dict) else None
    if found != schema:
        if found in _USE:
            raise InputError(f"{path}: holds {_USE[found]}; this needs {_USE[schema]}")
        raise InputError(f"{path}: not a {schema} file")
    return doc


def write_k_factors(path: str | Path, k_factors: Mapping[str, Mapping], source: Mapping) -> Path:
    """Write FEFF k-factors (:func:`gnnspec.quantification.intensities.fit_k_factors`) with where they came from (``source``: free JSON)."""
    doc = {"schema": K_FACTORS_SCHEMA, "window_eV": INTEGRATION_WINDOW_EV, "source": dict(source), "channels": dict(k_factors)}
    return write_json(path, doc, indent=1)


def read_k_factors(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """FEFF k-factors ``{channel: {"k", ...}}`` (default: the shipped ones); InputError on a bad file."""
    path = Path(path) if path is not None else SHIPPED_K_FACTORS
    doc = _document(path, K_FACTORS_SCHEMA)
    if doc.get("window_eV") != INTEGRATION_WINDOW_EV:
        raise InputError(f"{path}: k-factors for a {doc.get('window_eV')} eV window; gnnspec integrates over {INTEGRATION_WINDOW_EV} eV")
    channels = doc.get("channels")
    if not isinstance(channels, dict):
        raise InputError(f"{path}: 'channels' must map channel names to k-factors")
    out = {}
    for name, entry in channels.items():
        k = entry.get("k") if isinstance(entry, dict) else None
        if name not in CHANNELS or isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise InputError(f"{path}: channel {name!r}: needs a known channel name and a k-factor > 0, got {entry!r}")
        out[name] = {**entry, "k": float(k)}
    return out


def write_eels_k_factors(path: str | Path, record: Mapping) -> Path:
    """Write the k-factors of a standard's quantification record (:func:`gnnspec.measured.quantify.quantify_spectrum`)
    with their optics and window."""
    doc = {
        "schema": EELS_K_FACTORS_SCHEMA,
        "elements": record["standard"]["k_factors"],
        "standard": {"file": record["file"], "composition": record["standard"]["composition"]},
        "optics": record["optics"],
        "window_eV": record["window_eV"],
    }
    return write_json(path, doc, indent=1)


def read_eels_k_factors(path: str | Path) -> dict[str, float]:
    """Measured-EELS k-factors ``{element: factor}``; InputError on a bad file."""
    doc = _document(Path(path), EELS_K_FACTORS_SCHEMA)
    if not isinstance(doc.get("elements"), dict):
        raise InputError(f"{path}: not a {EELS_K_FACTORS_SCHEMA} file ('elements' must map elements to factors)")
    out = {}
    for element, k in doc["elements"].items():
        if element not in EELS_ELEMENTS or isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise InputError(f"{path}: element {element!r}: needs an element with an EELS edge and a factor > 0, got {k!r}")
        out[element] = float(k)
    return out
