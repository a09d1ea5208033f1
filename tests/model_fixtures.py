"""Shared helpers for the nn/models/train tests: tiny models, clusters and a synthetic LMDB.

The synthetic dataset has the real gnnspec LMDB schema (metadata, structure and spectrum
records) but its spectra come from a cheap, smooth function of each site's neighbourhood
instead of FEFF, so tests need no FEFF runs and the model has something learnable.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from gnnspec.channels import CHANNELS, EDGE_ENERGIES_EV, RUN_NAMES, run_edge
from gnnspec.config import from_dict
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.graphs import radius_graph
from gnnspec.models.config import ModelConfig

TINY_MODEL = {
    "backbone": {
        "cutoff": 4.0,
        "n_basis": 6,
        "lmax": 2,
        "element_dim": 8,
        "hidden_irreps": "8x0e + 4x1o + 2x1e + 2x2e",
        "n_layers": 2,
        "radial_hidden": 8,
        "scalar_dim": 12,
    },
    "spectra": {"r_readout": 3.5, "hidden": 16, "channel_dim": 4, "n_distance_basis": 4},
    "embedding": {"dim": 16, "hidden": 16},
    "encoder": {"conv_channels": [4, 8], "kernel": 5, "token_dim": 16, "heads": 2, "layers": 1, "hidden": 16},
    "property_hidden": 16,
}


def tiny_model_config(**overrides) -> ModelConfig:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_MODEL.items()}
    data.update(overrides)
    return from_dict(ModelConfig, data)


def random_cluster(n_atoms: int = 5, seed: int = 0, cutoff: float = 4.0, dtype=torch.float64) -> Data:
    """A non-periodic cluster of Li/O/Mn/Co/Ni atoms (at least 1.2 A apart), all edges within ``cutoff``."""
    g = torch.Generator().manual_seed(seed)
    zs = torch.tensor([28, 8, 3, 25, 27, 8])
    pos = []
    while len(pos) < n_atoms:
        p = (torch.rand(3, generator=g, dtype=dtype) - 0.5) * 4.0
        if all(float((p - q).norm()) > 1.2 for q in pos):
            pos.append(p)
    pos = torch.stack(pos)
    edge_index = radius_graph(pos, cutoff)
    return Data(
        pos=pos,
        z=zs[:n_atoms].clone(),
        edge_index=edge_index,
        edge_shift=torch.zeros(edge_index.shape[1], 3, dtype=dtype),
        num_nodes=n_atoms,
    )


_WEIGHT = {"Li": 0.3, "O": 1.0, "Mn": 0.7, "Co": 0.8, "Ni": 0.9}


def synthetic_site_spectra(structure, sites=None, radius: float = 3.5) -> dict:
    """``{(site, run): (energy_eV, intensity)}`` of every FEFF run an atom's channels need (K, L3,
    L2), each on its own axis from 5 eV below its tabulated edge: peaks placed by each neighbour's
    distance and element."""
    out = {}
    sites = range(len(structure)) if sites is None else sites
    for i in sites:
        el = structure[i].specie.symbol
        nbs = structure.get_neighbors(structure[i], radius)
        runs = [r for r in RUN_NAMES if r.startswith(f"{el}-")]
        for k, run in enumerate(runs):
            _, edge, _ = run_edge(run)
            e = EDGE_ENERGIES_EV[(el, edge)] - 5.0 + 0.5 * np.arange(131)
            x = (e - e[0]) / (e[-1] - e[0])
            y = 0.5 + 2.0 * np.exp(-((x - 0.15 - 0.05 * k) ** 2) / 0.002)
            for nb in nbs:
                centre = 0.2 + 0.35 * (nb.nn_distance - 1.5)
                y = y + _WEIGHT.get(nb.specie.symbol, 0.5) * 0.4 * np.exp(-((x - centre) ** 2) / 0.004)
            out[(i, run)] = (e.copy(), y)
    return out


def write_synthetic_lmdb(
    path: str | Path, splits=("train",) * 6 + ("val",) * 2 + ("test",) * 2, supercell=(1, 1, 1), seed: int = 0, extra_tier: str | None = None
) -> Path:
    """A gnnspec LMDB with one NMC supercell per entry of ``splits`` and synthetic site spectra.

    ``extra_tier``: also a second tier of that name on every third site, its spectra the base
    tier's tilted by ``1 + x`` (x from 0 to 1 over each run's axis), like a higher-fidelity
    calculation that differs in a learnable way."""
    from gnnspec.data.recipe import CASES
    from gnnspec.structures.nmc import draw_params, generate_nmc

    path = Path(path)
    store = SpectraStore(path, readonly=False, map_size=256 * 1024**2)
    store.put_many(
        {
            schema.METADATA_KEY: {
                "schema": schema.SCHEMA_NAME,
                "schema_version": schema.SCHEMA_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_config": {"name": "synthetic", "preset": "synthetic"},
                "channels": {n: c.as_dict() for n, c in CHANNELS.items()},
                "presets": {},
                "feff_version": "synthetic",
                "sessions": [],
            }
        }
    )
    for sid, split in enumerate(splits):
        rng = np.random.default_rng([seed, sid])
        params = draw_params(rng, seed=int(rng.integers(2**31)), case=CASES[sid % len(CASES)], relax=False, thermal_sigma=0.05)
        params.supercell = tuple(supercell)
        sample = generate_nmc(params)
        items = {
            schema.structure_key(sid): {
                "sid": sid,
                "case": CASES[sid % len(CASES)],
                "split": split,
                "structure": sample.structure.as_dict(),
                "params": {},
                "vacancies": sample.vacancies,
                "relax_info": {},
                "sites": {},
            }
        }
        for (site, ch), (e, y) in synthetic_site_spectra(sample.structure).items():
            if extra_tier is not None and site % 3 == 0:
                tilted = y * (1.0 + (e - e[0]) / (e[-1] - e[0]))
                items[schema.spectrum_key(sid, site, ch, extra_tier)] = {
                    "energy": e, "intensity": tilted, "tier": extra_tier, "preset": extra_tier,
                    "preset_hash": "", "feff_version": "synthetic", "seconds": 0.0,
                }
            items[schema.spectrum_key(sid, site, ch, "synthetic")] = {
                "energy": e,
                "intensity": y,
                "tier": "synthetic",
                "preset": "synthetic",
                "preset_hash": "",
                "feff_version": "synthetic",
                "seconds": 0.0,
            }
        store.put_many(items)
    store.close()
    return path


SMOKE_CONFIG = Path(__file__).resolve().parent.parent / "train_configs" / "smoke.yaml"


def smoke_config(data: str | Path, run_dir: str | Path, **overrides):
    """``train_configs/smoke.yaml`` on ``data`` writing to ``run_dir``; ``overrides`` set attributes ("log.progress")."""
    from gnnspec.train.config import load_train_config

    cfg = load_train_config(SMOKE_CONFIG)
    cfg.data, cfg.run_dir = str(data), str(run_dir)
    cfg.log.progress = False
    for key, value in overrides.items():
        obj = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, value)
    return cfg


def scalar_series(tb_dir: str | Path, tag: str) -> list[float]:
    """Values of a TensorBoard scalar, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tb_dir))
    ea.Reload()
    return [e.value for e in ea.Scalars(tag)]


def two_tier_runs(tmp: Path, n: int):
    """A synthetic two-tier LMDB (tiers ``synthetic`` and ``hi``) and ``n`` untrained 'training runs'
    of one two-tier smoke config with seeds 0..n-1, saved as checkpoints. Returns (cfg, data, paths)."""
    from gnnspec.models.factory import build_model
    from gnnspec.train.data import graph_statistics, load_splits

    data = write_synthetic_lmdb(tmp / "synthetic", extra_tier="hi")
    cfg = smoke_config(data, tmp / "runs")
    cfg.model.tiers = ["synthetic", "hi"]
    splits = load_splits(cfg.data, cfg.model.backbone.cutoff, cfg.model.channels)
    cfg.model.backbone.avg_num_neighbors = graph_statistics(splits["train"], cfg.model.spectra.r_readout)["avg_num_neighbors"]
    paths = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = build_model(cfg.model).eval()
        paths.append(save_run(model, cfg, tmp / f"run{seed}.pt", seed))
    return cfg, data, paths


def save_run(model, cfg, path: Path, seed: int) -> Path:
    """``model`` saved as a training run of ``cfg`` with ``seed`` would be (model and training config)."""
    from gnnspec.config import config_to_dict
    from gnnspec.models.factory import model_payload

    torch.save({**model_payload(model), "trained": {"train_config": {**config_to_dict(cfg), "seed": seed}}}, path)
    return path


def model_with_members(tmp: Path, data: Path, paths: list[Path], **attach_kwargs):
    """A copy of run ``paths[0]`` in ``tmp`` with the other runs attached as its forward members
    (:func:`gnnspec.models.forward_ensemble.attach_members`); returns (model file, summary)."""
    from gnnspec.models.forward_ensemble import attach_members

    model_file = tmp / "model.pt"
    model_file.write_bytes(paths[0].read_bytes())
    return model_file, attach_members(model_file, paths[1:], str(data), **attach_kwargs)
