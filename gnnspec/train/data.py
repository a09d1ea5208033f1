"""Training data: LMDB splits, a pool of generated structures, loaders and graph statistics.

Every item is a whole supercell (:class:`gnnspec.data.dataset.StructureGraph`); graphs are
built once and kept in memory (the shipped dataset is small). A loader takes either a fixed
number of supercells per step, through a ``DistributedSampler`` (one replica when not
distributed), or as many as fit in an atom budget
(:class:`gnnspec.train.batching.AtomBudgetBatchSampler`); either way the order of an epoch depends
only on the seed and the epoch number, so a resumed run sees the same batches.
"""

from __future__ import annotations

import signal
import sys

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from torch_geometric.loader import DataLoader

from gnnspec.data import keys as K
from gnnspec.errors import InputError


class GraphList(Dataset):
    """A list of graphs as a Dataset."""

    def __init__(self, graphs: list):
        self.graphs = list(graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, idx: int):
        return self.graphs[idx]


def load_split(
    path: str,
    split: str,
    cutoff: float,
    channels: list[str] | tuple[str, ...],
    progress: bool = False,
    extra_tiers: tuple[str, ...] = (),
    tier: str | None = None,
) -> GraphList:
    """All graphs of ``split`` of the LMDB at ``path`` (built now, with edges up to ``cutoff`` A,
    one row per channel of ``channels`` and the targets of ``extra_tiers``, the model's).

    ``tier``: the model's base tier (its first), read as the site and environment spectra; None
    reads the dataset's base tier, and so does ``fast`` on a dataset without it (imported
    spectra, which a default single-tier model trains on). Another tier the dataset lacks is an
    InputError."""
    from tqdm import tqdm

    from gnnspec.data.dataset import LMDBStructureDataset

    ds = LMDBStructureDataset(path, split=split, cutoff=cutoff, channels=channels, extra_tiers=extra_tiers)
    if tier is not None and tier != ds.tier:
        if tier in ds.store.tiers():
            ds = LMDBStructureDataset(path, split=split, cutoff=cutoff, channels=channels, tier=tier, extra_tiers=extra_tiers)
        elif tier != "fast":
            raise InputError(f"{path}: no {tier}-tier spectra (it holds {', '.join(ds.store.tiers()) or 'none'}); the model's first tier must be one of them")
    graphs = [ds[i] for i in tqdm(range(len(ds)), desc=f"graphs ({split})", disable=not progress, file=sys.stderr, leave=False)]
    return GraphList(graphs)


def load_splits(
    path: str,
    cutoff: float,
    channels: list[str] | tuple[str, ...],
    progress: bool = False,
    extra_tiers: tuple[str, ...] = (),
    tier: str | None = None,
) -> dict[str, GraphList]:
    """``{"train", "val", "test"}`` graph lists (:func:`load_split`); a missing or empty train split is an InputError."""
    splits = {s: load_split(path, s, cutoff, channels, progress, extra_tiers, tier) for s in ("train", "val", "test")}
    if len(splits["train"]) == 0:
        raise InputError(f"{path}: the dataset has no training structures")
    return splits


def generated_pool(gcfg, cutoff: float, channels: list[str] | tuple[str, ...], progress: bool = False) -> GraphList:
    """``gcfg.n_structures`` NMC supercells (no relaxation, no spectra), cycling the defect cases,
    drawn as the shipped recipe draws them or, with ``gcfg.wide``, across the whole composition
    triangle and Li orderings (:func:`gnnspec.structures.nmc.draw_wide_params`)."""
    from tqdm import tqdm

    from gnnspec.data.dataset import structure_graph
    from gnnspec.data.recipe import CASES
    from gnnspec.structures.nmc import draw_params, draw_wide_params, generate_nmc, ideal_cell

    graphs = []
    n_tm = (len(ideal_cell()) // 4) * int(np.prod(gcfg.supercell))
    for i in tqdm(range(gcfg.n_structures), desc="generated", disable=not progress, file=sys.stderr, leave=False):
        rng = np.random.default_rng([gcfg.seed, i])
        seed, case = int(rng.integers(2**31)), CASES[i % len(CASES)]
        if gcfg.wide:
            params = draw_wide_params(rng, seed=seed, case=case, relax=False, n_tm=n_tm)
        else:
            params = draw_params(rng, seed=seed, case=case, relax=False, thermal_sigma=gcfg.thermal_sigma)
        params.supercell = tuple(gcfg.supercell)
        sample = generate_nmc(params)
        graphs.append(structure_graph(sample.structure, cutoff, sample.vacancies, sid=-1 - i, channels=tuple(channels)))
    return GraphList(graphs)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world: int = 1,
    batch_atoms: int | None = None,
    workers: int = 0,
) -> DataLoader:
    """A PyG loader over ``dataset``, its order a function of (``seed``, epoch) only.

    ``batch_atoms`` None: ``batch_size`` supercells per batch through a (possibly one-replica)
    ``DistributedSampler``; otherwise batches of at most ``batch_atoms`` atoms (at least one
    supercell each) through :class:`gnnspec.train.batching.AtomBudgetBatchSampler`, the same
    number on every rank. ``workers`` > 0: that many persistent worker processes collate the
    batches (they ignore Ctrl-C and SIGTERM: the training loop decides when to stop). Select an
    epoch with :func:`gnnspec.train.batching.set_loader_epoch`.
    """
    from gnnspec.train.batching import AtomBudgetBatchSampler

    # its own generator: starting an epoch (or the workers) must not draw from torch's global RNG (exact resume)
    opts = dict(
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    if batch_atoms is not None:
        sizes = [int(dataset[i].num_nodes) for i in range(len(dataset))]
        batches = AtomBudgetBatchSampler(sizes, batch_atoms, shuffle=shuffle, seed=seed, rank=rank, world=world)
        return DataLoader(dataset, batch_sampler=batches, **opts)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **opts)


def close_loader(loader: DataLoader) -> None:
    """Stop ``loader``'s persistent worker processes now; a no-op without workers.

    They are told to exit through their queues and joined. Without this a finished run's workers
    live until interpreter exit, where multiprocessing's exit handler sends them SIGTERM (which
    they ignore, :func:`_ignore_stop_signals`) and waits for them without end.
    """
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()  # torch's own shutdown: sentinel on every index queue, join, then terminate
    loader._iterator = None


def _ignore_stop_signals(worker_id: int) -> None:
    """In a loader worker: ignore SIGINT/SIGTERM, so a stop signal reaches only the training loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def generated_batch(pool: GraphList, step: int, batch_size: int, seed: int):
    """The generated batch of optimizer step ``step``: a deterministic function of (seed, step)."""
    from torch_geometric.data import Batch

    n = len(pool)
    per_cycle = max(n // batch_size, 1)
    cycle, pos = divmod(step, per_cycle)
    g = torch.Generator().manual_seed(seed * 100003 + cycle)
    order = torch.randperm(n, generator=g).tolist()
    idx = [order[(pos * batch_size + j) % n] for j in range(batch_size)]
    return Batch.from_data_list([pool[i] for i in idx])


def masked_moments(
    dataset: Dataset, y_key: str, mask_key: str, tier_row: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Per channel and energy, over every row of ``y_key`` ``[n, C, K]`` where ``mask_key`` ``[n, C]`` holds:
    counts ``[C]``, mean ``[C, K]`` and variance ``[C, K]`` (float64); None for an empty dataset.
    ``tier_row``: read row ``tier_row`` of tier-stacked fields (``[n, T, C, K]``, ``[n, T, C]``)."""
    s1 = s2 = n = None
    for g in dataset:
        if tier_row is not None and y_key not in g:
            continue
        y, m = g[y_key].double(), g[mask_key].to(torch.float64)
        if tier_row is not None:
            y, m = y[:, tier_row], m[:, tier_row]
        a, b, c = (y * m[..., None]).sum(0), (y.pow(2) * m[..., None]).sum(0), m.sum(0)
        s1, s2, n = (a, b, c) if s1 is None else (s1 + a, s2 + b, n + c)
    if s1 is None:
        return None
    mean = s1 / n.clamp(min=1.0)[:, None]
    return n, mean, s2 / n.clamp(min=1.0)[:, None] - mean.pow(2)


def channel_scales(dataset: Dataset, n_channels: int, tier_row: int | None = None) -> torch.Tensor:
    """``[C]``: 1 / the mean squared deviation of each channel's site spectra from their mean spectrum.

    Channels without spectra (or with constant spectra) get 1. ``tier_row``: the same for the
    site spectra of a further FEFF tier (row ``tier_row`` of ``site_y_tiers``), so each tier's
    loss is weighed by its own spread: the scf tier's TM L2,3 spectra, with their white lines,
    vary 50-65 times as much as the fast tier's and would otherwise drown its other channels.
    """
    if tier_row is None:
        moments = masked_moments(dataset, K.SITE_Y, K.SITE_Y_MASK)
    else:
        moments = masked_moments(dataset, K.SITE_Y_TIERS, K.SITE_Y_TIERS_MASK, tier_row)
    if moments is None:
        return torch.ones(n_channels)
    counts, _, var = moments
    var = var.mean(-1)  # [C]
    ok = (counts > 1) & (var > 1e-12)
    return torch.where(ok, 1.0 / var.clamp(min=1e-12), torch.ones_like(var)).float()


def spectra_statistics(dataset: Dataset, n_channels: int, n_energy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``[C, K]`` of the environment spectra (the encoder's inputs).

    Channels without spectra get mean 0 and std 1 (no standardisation).
    """
    moments = masked_moments(dataset, K.ENV_Y, K.ENV_Y_MASK)
    if moments is None:
        return torch.zeros(n_channels, n_energy), torch.ones(n_channels, n_energy)
    counts, mean, var = moments
    have = (counts > 1)[:, None]
    mean = torch.where(have, mean, torch.zeros_like(mean))
    var = torch.where(have, var, torch.ones_like(var))
    return mean.float(), var.clamp(min=1e-8).sqrt().float()


def graph_statistics(dataset: Dataset, r_readout: float) -> dict[str, float]:
    """Mean neighbours per atom (graph edges) and mean readout pairs per absorber (edges < r_readout, + 1)."""
    n_nodes = n_edges = n_pairs = 0
    for g in dataset:
        vec = g[K.POS][g[K.EDGE_INDEX][1]] - g[K.POS][g[K.EDGE_INDEX][0]] + g[K.EDGE_SHIFT]
        n_nodes += int(g.num_nodes)
        n_edges += int(g[K.EDGE_INDEX].shape[1])
        n_pairs += int((vec.norm(dim=-1) < r_readout).sum())
    if n_nodes == 0:
        raise InputError("no atoms in the training data")
    return {"avg_num_neighbors": n_edges / n_nodes, "readout_norm": 1.0 + n_pairs / n_nodes}
