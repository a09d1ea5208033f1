"""Torch datasets of structure graphs built from a gnnspec LMDB (or generated on the fly).

One item is a whole supercell (:class:`StructureGraph`): the model runs once over the periodic
graph and reads out every absorbing site's spectra from that pass. Fields: :mod:`gnnspec.data.keys`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from gnnspec.channels import CHANNELS, DEFAULT_CHANNELS, normalised_channels
from gnnspec.data import keys as K
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.graphs import periodic_edges
from gnnspec.structures.environments import R_ENV, environments


class StructureGraph(Data):
    """A torch-geometric ``Data`` whose environment fields batch correctly."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == K.ENV_MEMBER_ENV:
            return int(self[K.ENV_CENTRE_INDEX].numel())
        if key in (K.ENV_MEMBER_INDEX, K.ENV_CENTRE_INDEX):
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)


def structure_graph(
    structure: Structure,
    cutoff: float,
    vacancies: list[dict] | None = None,
    site_spectra: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] | None = None,
    sid: int = -1,
    r_env: float = R_ENV,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
    tier_spectra: list[dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]] | None = None,
) -> StructureGraph:
    """Build the graph of a periodic structure with site and environment targets.

    ``site_spectra`` maps ``(site, run)`` to the raw ``(energy, intensity)`` (absolute eV) of a
    FEFF run (such as ``Ni-L2-eels``); each channel is assembled from its runs
    (:func:`gnnspec.channels.assemble`; a site lacking one of them has no spectrum in that
    channel), put on its grid and normalised here. ``tier_spectra``: the same for each further
    FEFF tier (usually a few sampled sites), stored as ``site_y_tiers``; environment spectra come
    from ``site_spectra`` (the base tier) alone.
    """
    n = len(structure)
    n_ch = len(channels)
    n_e = CHANNELS[channels[0]].n_energy
    edge_index, shifts = periodic_edges(structure, cutoff)
    site_y, site_mask = _site_targets(n, channels, site_spectra or {})
    envs = environments(structure, vacancies or [], r_env=r_env, include_bulk=False)
    env_y = np.zeros((len(envs), n_ch, n_e), dtype=np.float32)
    env_mask = np.zeros((len(envs), n_ch), dtype=bool)
    member_index, member_env = [], []
    for e, env in enumerate(envs):
        member_index.append(env.members)
        member_env.append(np.full(len(env.members), e))
        sel = site_mask[env.members]  # [m, C]
        counts = sel.sum(0)
        sums = (site_y[env.members] * sel[..., None]).sum(0)
        have = counts > 0
        env_y[e, have] = sums[have] / counts[have, None]
        env_mask[e] = have
    dtype = torch.get_default_dtype()
    graph = StructureGraph(
        pos=torch.tensor(structure.cart_coords, dtype=dtype),
        z=torch.tensor([s.specie.Z for s in structure], dtype=torch.long),
        edge_index=torch.from_numpy(edge_index),
        edge_shift=torch.tensor(shifts, dtype=dtype),
        site_y=torch.from_numpy(site_y),
        site_y_mask=torch.from_numpy(site_mask),
        env_member_index=torch.from_numpy(np.concatenate(member_index)),
        env_member_env=torch.from_numpy(np.concatenate(member_env)),
        env_centre_index=torch.tensor([e.centre for e in envs], dtype=torch.long),
        env_y=torch.from_numpy(env_y),
        env_y_mask=torch.from_numpy(env_mask),
        env_content=torch.tensor(np.array([e.content for e in envs]), dtype=torch.float32),
        env_defects=torch.tensor(np.array([e.defects for e in envs]), dtype=torch.float32),
        sid=torch.tensor([sid], dtype=torch.long),
        num_nodes=n,
    )
    if tier_spectra:
        targets = [_site_targets(n, channels, spectra) for spectra in tier_spectra]
        graph[K.SITE_Y_TIERS] = torch.from_numpy(np.stack([y for y, _ in targets], axis=1))
        graph[K.SITE_Y_TIERS_MASK] = torch.from_numpy(np.stack([m for _, m in targets], axis=1))
    return graph


def _site_targets(
    n: int, channels: tuple[str, ...], site_spectra: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """``[n, C, K]`` normalised channel spectra assembled from raw runs, and the ``[n, C]`` mask."""
    site_y = np.zeros((n, len(channels), CHANNELS[channels[0]].n_energy), dtype=np.float32)
    site_mask = np.zeros((n, len(channels)), dtype=bool)
    by_site: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (site, run), spectrum in site_spectra.items():
        by_site.setdefault(site, {})[run] = spectrum
    for site, runs in by_site.items():
        for name, spectrum in normalised_channels(runs, channels).items():
            c = channels.index(name)
            site_y[site, c] = spectrum
            site_mask[site, c] = True
    return site_y, site_mask


def base_tier(store: SpectraStore) -> str:
    """The tier a dataset computes at every chosen site: its recipe's preset (``imported`` for imports)."""
    return (store.metadata() or {}).get("build_config", {}).get("preset", "imported")


class LMDBStructureDataset(torch.utils.data.Dataset):
    """Structure graphs of one split of a gnnspec LMDB, built once and cached in memory."""

    def __init__(
        self,
        path: str | Path,
        split: str | None = "train",
        cutoff: float = 5.0,
        r_env: float = R_ENV,
        channels: tuple[str, ...] | list[str] = DEFAULT_CHANNELS,
        tier: str | None = None,
        extra_tiers: tuple[str, ...] | list[str] = (),
    ):
        """``tier``: which FEFF tier's spectra to read as ``site_y`` and environment spectra
        (default: the dataset's base tier, which covers every computed site); ``extra_tiers``:
        further tiers read as ``site_y_tiers`` (a multi-fidelity model's targets);
        ``channels``: the channel rows of the graphs."""
        self.store = SpectraStore(path)
        self.split = split
        self.cutoff = cutoff
        self.r_env = r_env
        self.channels = tuple(channels)
        self.tier = tier or base_tier(self.store)
        self.extra_tiers = tuple(extra_tiers)
        self.sids = [sid for sid in self.store.structure_ids() if split is None or self.store.structure(sid)["split"] == split]
        self._cache: dict[int, StructureGraph] = {}

    def __len__(self) -> int:
        return len(self.sids)

    def record(self, idx: int) -> dict:
        return self.store.structure(self.sids[idx])

    def raw_runs(self, idx: int) -> dict[tuple[int, str], dict]:
        """The raw FEFF run spectra of item ``idx`` in the dataset's tier: ``{(site, run): record}``."""
        return self.store.spectra_of(self.sids[idx], self.tier)

    def __getitem__(self, idx: int) -> StructureGraph:
        if idx not in self._cache:
            sid = self.sids[idx]
            rec = self.store.structure(sid)
            spectra = _targets(self.raw_runs(idx))
            extra = [_targets(self.store.spectra_of(sid, tier)) for tier in self.extra_tiers]
            self._cache[idx] = structure_graph(
                Structure.from_dict(rec["structure"]),
                self.cutoff,
                rec["vacancies"],
                spectra,
                sid=sid,
                r_env=self.r_env,
                channels=self.channels,
                tier_spectra=extra or None,
            )
        return self._cache[idx]


def _targets(records: dict[tuple[int, str], dict]) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """``{(site, run): (energy, intensity)}`` of the run records a model learns and is scored on:
    every one but those with an over-screened core hole (:func:`gnnspec.data.schema.over_screened`)."""
    return {key: (r["energy"], r["intensity"]) for key, r in records.items() if not schema.over_screened(key[1], r)}


def tier_batches(path: str | Path, split: str, cutoff: float, channels, tiers, dtype: torch.dtype, keep=None, batch_size: int = 2):
    """Batches of ``split``'s supercells as a model of FEFF tiers ``tiers`` reads them: ``site_y`` in
    the first tier, ``site_y_tiers`` in the others, positions and shifts in ``dtype``; ``keep``: an
    optional predicate on each graph (say, holding a higher tier's spectra)."""
    from torch_geometric.loader import DataLoader

    tiers = list(tiers)
    ds = LMDBStructureDataset(path, split, cutoff=cutoff, channels=tuple(channels), tier=tiers[0], extra_tiers=tuple(tiers[1:]))
    graphs = [g for g in (ds[i] for i in range(len(ds))) if keep is None or keep(g)]
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        batch.pos, batch.edge_shift = batch.pos.to(dtype), batch.edge_shift.to(dtype)
        yield batch
