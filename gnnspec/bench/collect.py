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
