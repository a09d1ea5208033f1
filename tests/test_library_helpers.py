"""Shared pieces of the library tests (no tests here): a fake embedder, a tiny random model and a tiny LMDB.

Imported by the other ``test_library_*`` modules; fixtures are module-scoped there.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch
from pymatgen.core import Structure

from gnnspec.channels import CHANNEL_NAMES, CHANNELS
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.spectra import Spectrum, write_spectra
from gnnspec.structures.environments import CONTENT_ELEMENTS, environment_members
from gnnspec.structures.nmc import NMCParams, generate_nmc

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


class FakeEmbedder:
    """Deterministic unit vectors from simple environment features (no torch): for unit tests."""

    channels = list(CHANNEL_NAMES)

    def __init__(self, dim: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.model_hash = f"fake-embedder-dim{dim}-seed{seed}"
        self.w_env = rng.normal(size=(dim, 16))
        self.w_spec = rng.normal(size=(dim, len(CHANNEL_NAMES) + 1))
        self.calls = 0

    def embed_environments(self, structure: Structure) -> np.ndarray:
        self.calls += 1
        symbols = [s.specie.symbol for s in structure]
        rows = []
        for i, members in enumerate(environment_members(structure)):
            onehot = [float(symbols[i] == el) for el in CONTENT_ELEMENTS]
            counts = [sum(symbols[m] == el for m in members) / len(members) for el in CONTENT_ELEMENTS]
            f = structure[i].frac_coords
            rows.append(np.concatenate([onehot, counts, np.sin(2 * np.pi * f), np.cos(2 * np.pi * f)]))
        v = np.array(rows) @ self.w_env.T
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_spectra(self, spectra: dict[str, np.ndarray]) -> np.ndarray:
        x = np.zeros(len(CHANNEL_NAMES) + 1)
        x[-1] = 1.0
        for name, y in spectra.items():
            x[CHANNEL_NAMES.index(name)] = float(np.mean(np.asarray(y)[:20]))
        v = self.w_spec @ x
        return v / np.linalg.norm(v)


def tiny_model(seed: int = 0, quantification: bool = False):
    """A randomly initialised joint model of about 8k parameters (float32, as checkpoints load);
    ``quantification``: its encoder reads an elemental quantification."""
    from gnnspec.models import ModelConfig, build_model
    from gnnspec.models.config import BackboneConfig, EmbeddingConfig, EncoderConfig, SpectraHeadConfig

    cfg = ModelConfig(
        backbone=BackboneConfig(hidden_irreps="8x0e + 2x1o", n_layers=1, lmax=1, scalar_dim=8, element_dim=8, radial_hidden=8),
        spectra=SpectraHeadConfig(hidden=8, channel_dim=4),
        embedding=EmbeddingConfig(dim=16, hidden=16),
        encoder=EncoderConfig(conv_channels=[4, 4], token_dim=8, heads=2, hidden=16, quantification=quantification),
        property_hidden=8,
    )
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    if quantification:  # a trained model's "unknown" vector is not zero
        with torch.no_grad():
            model.encoder.unknown_quantity.normal_()
    return model


def save_model(model, path: Path) -> Path:
    from gnnspec.models.factory import model_payload

    torch.save(model_payload(model), path)
    return path


def make_lmdb(path: Path, n: int = 3) -> Path:
    """A gnnspec LMDB with ``n`` small NMC supercells (48 sites less vacancies), splits train/val/test; no spectra."""
    store = SpectraStore(path, readonly=False, map_size=64 * 1024**2)
    records = {schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION}}
    for sid in range(n):
        sample = generate_nmc(
            NMCParams(seed=sid, supercell=(2, 2, 1), n_o_vacancies=1, n_antisites=1, li_content=0.9, thermal_sigma=0.05)
        )
        rec = {"sid": sid, "case": "test", "split": schema.SPLITS[sid % 3], **sample.as_dict(), "sites": {}}
        records[schema.structure_key(sid)] = rec
    store.put_many(records)
    return path


def write_grid_spectra(path: Path, spectra: dict[str, np.ndarray]) -> Path:
    """Write ``{channel: intensity on the channel grid}`` as a gnnspec.spectra/1 file."""
    return write_spectra(path, [Spectrum(c, CHANNELS[c].grid, y) for c, y in spectra.items()], {"source": "test"})
