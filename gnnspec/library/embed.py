"""What the library needs from a model, and the library entries of one structure.

The library never reaches into a model: it calls the methods of :class:`Embedder` (and, for
``vectors="predicted"`` and plots, :class:`ForwardModel`). A trained
:class:`gnnspec.models.JointModel` is one; a tiny random model or a fake in a test is another.

Two kinds of library vectors (recorded as ``vector_source`` in the manifest):

* ``structure``: the model's structure embedding of each site environment
  (``embed_environments``), the space the spectrum encoder was trained into;
* ``predicted``: the spectrum embedding (``embed_spectra``) of each environment's
  forward-predicted spectra (mean over its member atoms of each channel's element, as in
  :func:`gnnspec.structures.environments.environment_spectrum`). Queries then compare spectra
  with spectra, within the encoder's side of the space.

Model identity: :func:`model_hash` is the sha256 over the ``state_dict`` tensors in sorted key
order (name, dtype, shape, CPU bytes) and the model config as sorted JSON (without the runtime
``compile`` switch), so a model and the same model loaded from its checkpoint hash alike.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pymatgen.core import Structure

#: The model a spectra query loads when none is given.
from gnnspec.assets import DEFAULT_MODEL  # noqa: F401  (re-exported by gnnspec.library)
from gnnspec.channels import CHANNEL_NAMES, CHANNELS
from gnnspec.errors import InputError
from gnnspec.labels import CONTENT_ELEMENTS
from gnnspec.structures.environments import environments

VECTOR_SOURCES = ("structure", "predicted")


@runtime_checkable
class Embedder(Protocol):
    """Maps structures and spectra into one space of unit vectors."""

    def embed_environments(self, structure: Structure) -> np.ndarray:
        """Unit vectors ``[n_sites, dim]``; row i embeds the environment centred on site i."""
        ...

    def embed_spectra(self, spectra: dict[str, np.ndarray]) -> np.ndarray:
        """Unit vector ``[dim]`` of ``{channel: normalised intensity on the channel grid}``.

        A model that reads an elemental quantification also takes ``quantification=
        {element: amount}`` as a keyword (:mod:`gnnspec.quantification`); queries pass it only
        when they have one. Likewise ``coverage={channel: bool [K]}``, the grid energies a partial
        window measured (:func:`gnnspec.spectra.grid_coverage`), only for partial windows.
        """
        ...


@runtime_checkable
class ForwardModel(Embedder, Protocol):
    """An :class:`Embedder` that also predicts site spectra."""

    def predict_site_spectra(self, structure: Structure, sites: list[int]) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """``{site: {channel: (energy_eV, intensity)}}`` for every channel of each site's element."""
        ...


def model_hash(model: Any) -> str:
    """Identity of the model that makes library vectors (hex sha256; see module docstring).

    An object without a ``state_dict`` (a fake embedder) must carry a ``model_hash`` string.
    """
    if hasattr(model, "state_dict") and hasattr(model, "cfg"):
        import torch

        from gnnspec.config import config_to_dict

        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        cfg = config_to_dict(model.cfg)
        cfg.pop("compile", None)
        digest.update(json.dumps(cfg, sort_keys=True).encode())
        return digest.hexdigest()
    given = getattr(model, "model_hash", None)
    if isinstance(given, str) and given:
        return given
    raise InputError(f"cannot identify the model {type(model).__name__}: it has neither a state_dict and cfg nor a model_hash")


def model_channels(model: Any) -> list[str]:
    """Channel names the model reads and predicts (its config's, else a ``channels`` attribute, else all)."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "channels", None):
        return list(cfg.channels)
    return list(getattr(model, "channels", CHANNEL_NAMES))


def resolve_model(model: Any) -> Embedder:
    """``model`` itself, or the checkpoint it names (a path), or the default model when ``None``."""
    if model is None or isinstance(model, (str, Path)):
        from gnnspec.models.factory import load_model

        return load_model(model)
    if not isinstance(model, Embedder):
        raise InputError(f"{type(model).__name__} is not a model: it needs embed_environments and embed_spectra")
    return model


def _unit_rows(v: np.ndarray, n: int, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    v = v.reshape(1, -1) if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[0] != n:
        raise InputError(f"{what}: the model returned shape {list(np.shape(v))}, expected {n} rows")
    return v


def predicted_environment_spectra(
    model: ForwardModel, structure: Structure, members: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Forward-predicted spectra of environments: ``[{channel: intensity on the grid}]``, one per ``members`` set.

    Each channel's spectrum is the mean of the predictions of the member atoms of the channel's
    element; a channel without such members is absent.
    """
    if not hasattr(model, "predict_site_spectra"):
        raise InputError(f"{type(model).__name__} cannot predict spectra (no predict_site_spectra)")
    channels = model_channels(model)
    elements = {CHANNELS[c].element for c in channels}
    absorbers = [i for i, site in enumerate(structure) if site.specie.symbol in elements]
    wanted = sorted({int(m) for ms in members for m in ms} & set(absorbers))
    site_spectra = model.predict_site_spectra(structure, wanted) if wanted else {}
    out = []
    for ms in members:
        env: dict[str, np.ndarray] = {}
        for ch in channels:
            rows = [
                np.asarray(site_spectra[int(m)][ch][1], dtype=np.float64)
                for m in ms
                if int(m) in site_spectra and ch in site_spectra[int(m)]
            ]
            if rows:
                env[ch] = np.mean(rows, axis=0)
        out.append(env)
    return out


def structure_entries(
    model: Embedder,
    structure: Structure,
    vacancies: list[dict] | None,
    include_bulk: bool = False,
    vector_source: str = "structure",
) -> tuple[np.ndarray, list[dict]]:
    """Vectors ``[n, dim]`` and label dicts of every site environment (and the bulk one) of ``structure``.

    ``vacancies`` (ideal positions of removed sites, as the NMC generator records them) or
    ``None`` when unknown: then ``defects["o_vacancy"]`` is ``None``. ``defects["antisite"]`` is
    ``None`` when the structure has no ``site_type`` site property. Each label dict holds
    ``site`` (``-1``: bulk), ``element`` (centre symbol, ``None`` for bulk), ``composition``
    (atom fractions of Li, Ni, Mn, Co, O and any other element present) and ``defects``.
    """
    if vector_source not in VECTOR_SOURCES:
        raise InputError(f"unknown vector source {vector_source!r}; valid: {', '.join(VECTOR_SOURCES)}")
    envs = environments(structure, vacancies or [], include_bulk=include_bulk)
    symbols = [site.specie.symbol for site in structure]
    vac_known = vacancies is not None
    types_known = "site_type" in structure.site_properties
    n_sites = len(structure)
    if vector_source == "structure":
        vectors = _unit_rows(model.embed_environments(structure), n_sites, "embed_environments")
        if include_bulk:  # the structure-side embedding is trained on site environments, each with its centre atom
            raise InputError(
                "bulk entries (site -1) have no centre atom for the structure-side embedding; "
                "build them with predicted vectors (--vectors predicted: the encoder on the whole structure's predicted spectra) "
                "or leave out --bulk"
            )
    else:
        spectra = predicted_environment_spectra(model, structure, [e.members for e in envs])
        empty = [e.centre for e, s in zip(envs, spectra) if not s]
        if empty:
            raise InputError(
                f"environment of site {empty[0]} has no atom that absorbs in the model's channels; cannot embed its spectra"
            )
        vectors = np.stack([np.asarray(model.embed_spectra(s), dtype=np.float64).reshape(-1) for s in spectra])
    labels = []
    for env in envs:
        member_symbols = [symbols[m] for m in env.members]
        others = sorted(set(member_symbols) - set(CONTENT_ELEMENTS))
        composition = {el: float(f) for el, f in zip(CONTENT_ELEMENTS, env.content)}
        composition.update({el: member_symbols.count(el) / len(member_symbols) for el in others})
        labels.append(
            {
                "site": int(env.centre),
                "element": None if env.centre < 0 else symbols[env.centre],
                "composition": composition,
                "defects": {
                    "o_vacancy": bool(env.defects[0]) if vac_known else None,
                    "antisite": bool(env.defects[1]) if types_known else None,
                },
            }
        )
    return vectors, labels
