"""EnvironmentSet: one split's environments as arrays, from graphs or from an LMDB split."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from model_fixtures import write_synthetic_lmdb

from gnnspec.data import keys as K
from gnnspec.data.dataset import LMDBStructureDataset
from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.quantification.intensities import fit_k_factors, site_integrals


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data = write_synthetic_lmdb(tmp_path_factory.mktemp("envset") / "synthetic", splits=("train",) * 3)
    return LMDBStructureDataset(data, "train")


def test_rows_follow_the_graphs_in_order(dataset):
    envs = EnvironmentSet.from_dataset(dataset)
    graphs = [dataset[i] for i in range(len(dataset))]
    assert len(envs) == sum(int(g[K.ENV_CENTRE_INDEX].numel()) for g in graphs) == len(envs.members)
    first = graphs[0]
    n0 = int(first[K.ENV_CENTRE_INDEX].numel())
    assert np.array_equal(envs.y[:n0], first[K.ENV_Y].double().numpy()) and envs.y.dtype == np.float64
    assert np.array_equal(envs.centre_z[:n0], first[K.Z][first[K.ENV_CENTRE_INDEX]].numpy())
    assert np.all(envs.sid[:n0] == int(first[K.SID])) and envs.channels == tuple(dataset.channels)
    for e in range(n0):  # each environment's members, its centre among them
        want = first[K.ENV_MEMBER_INDEX][first[K.ENV_MEMBER_ENV] == e].numpy()
        assert np.array_equal(envs.members[e], want) and int(first[K.ENV_CENTRE_INDEX][e]) in want
    same = EnvironmentSet.from_graphs(graphs, dataset.channels)
    assert all(np.array_equal(getattr(same, f), getattr(envs, f)) for f in ("y", "mask", "content", "defects", "sid", "centre_z"))


def test_limit_stops_after_the_graph_that_reaches_it(dataset):
    graphs = [dataset[i] for i in range(len(dataset))]
    n0 = int(graphs[0][K.ENV_Y_MASK].any(1).sum())
    one = EnvironmentSet.from_graphs(graphs, dataset.channels, limit=1)
    assert len(one) == int(graphs[0][K.ENV_CENTRE_INDEX].numel()) and len(one.with_spectra) == n0 and one.structures == 1
    with pytest.raises(ValueError, match="no structures"):
        EnvironmentSet.from_graphs([], dataset.channels)


def test_amounts_of_each_quantification_mode(dataset):
    k = fit_k_factors(site_integrals(dataset.raw_runs(i)) for i in range(len(dataset)))
    envs = EnvironmentSet.from_dataset(dataset, k)
    assert np.array_equal(envs.amounts("exact"), envs.content)
    rows = envs.mask.any(1)
    held = envs.amounts("intensities")
    assert held.shape == envs.content.shape and np.isnan(held[~rows]).all() and not np.isnan(held[rows]).any()
    fractions = held[rows] / held[rows].sum(1, keepdims=True)
    assert np.abs(fractions - envs.content[rows]).max() < 0.05  # every element of these environments has a channel
    a = envs.amounts("perturbed", 0.1, torch.Generator().manual_seed(3))
    b = envs.amounts("perturbed", 0.1, torch.Generator().manual_seed(3))
    ratio = a[envs.content > 0] / envs.content[envs.content > 0]
    assert np.array_equal(a, b) and 0.5 < ratio.min() and ratio.max() < 2.0 and not np.allclose(ratio, 1.0)
    with pytest.raises(ValueError, match="k_factors"):
        EnvironmentSet.from_dataset(dataset).amounts("intensities")
    with pytest.raises(ValueError, match="unknown quantification mode"):
        envs.amounts("guess")


def test_concat_and_rows_keep_every_column(dataset):
    envs = EnvironmentSet.from_dataset(dataset)
    both = EnvironmentSet.concat([envs, envs])
    assert len(both) == 2 * len(envs) and len(both.members) == 2 * len(envs.members) and both.intensity is None
    pick = both.rows(np.array([len(envs) + 1, 0]))
    assert np.array_equal(pick.y, envs.y[[1, 0]]) and np.array_equal(pick.members[0], envs.members[1])
    with pytest.raises(ValueError, match="same channels"):
        EnvironmentSet.concat([envs, replace(envs, channels=("O-K-xas",))])
