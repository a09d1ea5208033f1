"""Arrays for benchmarks from a gnnspec LMDB: site spectra with descriptors, environment spectra with labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from gnnspec.bench.descriptors import site_descriptors
from gnnspec.channels import DEFAULT_CHANNELS
from gnnspec.data.dataset import LMDBStructureDataset


@dataclass
class SiteSet:
    """Site spectra of one split: per channel, descriptors ``X`` and normalised spectra ``Y``."""

    X: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]
    keys: dict[str, list[tuple[int, int]]]  # (structure id, site)


@dataclass
class EnvSet:
    """Environment spectra ``[n, C, K]`` (rows: ``channels``), their mask and labels of one split;
    ``coverage [n, C, K]`` (bool): the measured energies of partial windows, None for full grids."""

    y: np.ndarray
    mask: np.ndarray
    content: np.ndarray
    defects: np.ndarray
    sid: np.ndarray
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    coverage: np.ndarray | None = None


def collect_sites(ds: LMDBStructureDataset) -> SiteSet:
    X: dict[str, list] = {c: [] for c in ds.channels}
    Y: dict[str, list] = {c: [] for c in ds.channels}
    keys: dict[str, list] = {c: [] for c in ds.channels}
    for i in range(len(ds)):
        g = ds[i]
        structure = Structure.from_dict(ds.record(i)["structure"])
        mask = g.site_y_mask.numpy()
        sites = np.nonzero(mask.any(1))[0].tolist()
        if not sites:
            continue
        desc = site_descriptors(structure, sites)
        for row, site in enumerate(sites):
            for c, name in enumerate(ds.channels):
                if mask[site, c]:
                    X[name].append(desc[row])
                    Y[name].append(g.site_y[site, c].numpy())
                    keys[name].append((int(g.sid), site))
    return SiteSet(
        X={c: np.array(v) for c, v in X.items() if v},
        Y={c: np.array(v, dtype=np.float64) for c, v in Y.items() if v},
        keys={c: v for c, v in keys.items() if v},
    )


def collect_envs(ds: LMDBStructureDataset) -> EnvSet:
    parts = [ds[i] for i in range(len(ds))]
    return EnvSet(
        y=np.concatenate([g.env_y.numpy() for g in parts]).astype(np.float64),
        mask=np.concatenate([g.env_y_mask.numpy() for g in parts]),
        content=np.concatenate([g.env_content.numpy() for g in parts]).astype(np.float64),
        defects=np.concatenate([g.env_defects.numpy() for g in parts]).astype(np.float64),
        sid=np.concatenate([np.full(g.env_y.shape[0], int(g.sid)) for g in parts]),
        channels=tuple(ds.channels),
    )


def intensity_amounts(ds: LMDBStructureDataset, k_factors: dict) -> np.ndarray:
    """Element amounts ``[n_env, 5]`` (Li, Ni, Mn, Co, O) that each environment's raw FEFF intensities
    hold (:mod:`gnnspec.quantification.intensities`), in :func:`collect_envs` order; NaN rows for environments
    without spectra. Zero for elements without a present channel."""
    from gnnspec.labels import CONTENT_ELEMENTS
    from gnnspec.quantification.intensities import environment_amounts, site_integrals

    rows = []
    for i in range(len(ds)):
        g = ds[i]
        integrals = site_integrals(ds.raw_runs(i))
        mask, member_index, member_env = g.env_y_mask.numpy(), g.env_member_index.numpy(), g.env_member_env.numpy()
        for e in range(mask.shape[0]):
            present = [name for c, name in enumerate(ds.channels) if mask[e, c]]
            row = np.full(len(CONTENT_ELEMENTS), np.nan if not present else 0.0)
            for element, amount in (environment_amounts(integrals, member_index[member_env == e], present, k_factors) if present else {}).items():
                row[CONTENT_ELEMENTS.index(element)] = amount
            rows.append(row)
    return np.array(rows)
