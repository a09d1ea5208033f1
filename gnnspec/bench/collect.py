"""Site spectra with descriptors from a gnnspec LMDB, for the site-level baselines (environments:
:class:`gnnspec.data.environment_set.EnvironmentSet`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from gnnspec.bench.descriptors import site_descriptors
from gnnspec.data.dataset import LMDBStructureDataset


@dataclass
class SiteSet:
    """Site spectra of one split: per channel, descriptors ``X`` and normalised spectra ``Y``."""

    X: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]
    keys: dict[str, list[tuple[int, int]]]  # (structure id, site)


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


@dataclass
class TierSiteSet:
    """Sites of one split where FEFF computed a higher tier: per channel, descriptors ``X``, the
    base-tier FEFF spectrum ``F`` and the higher-tier spectrum ``Y`` of each site (normalised)."""

    X: dict[str, np.ndarray]
    F: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]
    keys: dict[str, list[tuple[int, int]]]  # (structure id, site)
    P: dict[str, np.ndarray] | None = None  # a model's predictions of Y, where asked for


def collect_tier_sites(ds: LMDBStructureDataset, row: int = 0, predict=None) -> TierSiteSet:
    """The sites of ``ds`` with both the base tier and its extra tier ``row`` (``ds.extra_tiers[row]``).
    ``predict(graph, sites) -> [len(sites), C, K]``: a model's spectra of those sites, kept as ``P``
    (scored on the very sites collected, even while a build adds more)."""
    X: dict[str, list] = {c: [] for c in ds.channels}
    F: dict[str, list] = {c: [] for c in ds.channels}
    Y: dict[str, list] = {c: [] for c in ds.channels}
    P: dict[str, list] = {c: [] for c in ds.channels}
    keys: dict[str, list] = {c: [] for c in ds.channels}
    for i in range(len(ds)):
        g = ds[i]
        if "site_y_tiers_mask" not in g:
            continue
        mask = g.site_y_mask.numpy() & g.site_y_tiers_mask[:, row].numpy()
        sites = np.nonzero(mask.any(1))[0].tolist()
        if not sites:
            continue
        desc = site_descriptors(Structure.from_dict(ds.record(i)["structure"]), sites)
        pred = None if predict is None else np.asarray(predict(g, sites), dtype=np.float64)
        for r, site in enumerate(sites):
            for c, name in enumerate(ds.channels):
                if mask[site, c]:
                    X[name].append(desc[r])
                    F[name].append(g.site_y[site, c].numpy())
                    Y[name].append(g.site_y_tiers[site, row, c].numpy())
                    keys[name].append((int(g.sid), site))
                    if pred is not None:
                        P[name].append(pred[r, c])
    have = [c for c in ds.channels if Y[c]]
    return TierSiteSet(
        X={c: np.array(X[c]) for c in have},
        F={c: np.array(F[c], dtype=np.float64) for c in have},
        Y={c: np.array(Y[c], dtype=np.float64) for c in have},
        keys={c: keys[c] for c in have},
        P=None if predict is None else {c: np.array(P[c]) for c in have},
    )
