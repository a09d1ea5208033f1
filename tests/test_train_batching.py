"""Atom-budget batching: as many supercells per step as fit in ``batch_atoms``, deterministic per
(seed, epoch), the same number of steps on every DDP rank, an exact step count for the schedule,
and a training run with loader workers that resumes exactly after Ctrl-C."""

import multiprocessing
import signal

import pytest
import torch
from model_fixtures import smoke_config, write_synthetic_lmdb

from gnnspec.train.batching import AtomBudgetBatchSampler, loader_total_steps, pack_by_budget, set_loader_epoch
from gnnspec.train.config import TrainConfig
from gnnspec.train.loop import run_training

torch.set_num_threads(1)

SIZES = [100, 96, 104, 250, 98, 101, 99, 97, 103, 100, 12, 180]


def test_packing_keeps_the_order_and_the_budget():
    batches = pack_by_budget(range(len(SIZES)), SIZES, 300)
    assert [i for b in batches for i in b] == list(range(len(SIZES)))
    for b in batches:
        assert len(b) == 1 or sum(SIZES[i] for i in b) <= 300
    # the 250-atom cell does not fit after 100+96+104=300 and opens its own batch
    assert batches[0] == [0, 1, 2] and batches[1] == [3]
    # a cell larger than the budget is a batch of its own
    assert pack_by_budget([0, 3, 1], SIZES, 200) == [[0], [3], [1]]


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = AtomBudgetBatchSampler(SIZES, 300, seed=7)
    b = AtomBudgetBatchSampler(SIZES, 300, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(AtomBudgetBatchSampler(SIZES, 300, seed=8)) != list(AtomBudgetBatchSampler(SIZES, 300, seed=7))
    # one rank covers every item exactly once per epoch
    for epoch in range(5):
        a.set_epoch(epoch)
        assert sorted(i for batch in a for i in batch) == list(range(len(SIZES)))
        assert len(a) == a.num_batches(epoch) == len(list(a))


@pytest.mark.parametrize("world", [2, 3, 5])
def test_every_rank_runs_the_same_number_of_steps_and_all_items_are_seen(world):
    for epoch in range(6):
        ranks = [AtomBudgetBatchSampler(SIZES, 250, seed=1, rank=r, world=world) for r in range(world)]
        for s in ranks:
            s.set_epoch(epoch)
        steps = {len(list(s)) for s in ranks}
        assert len(steps) == 1
        seen = {i for s in ranks for batch in s for i in batch}
        assert seen == set(range(len(SIZES)))


def test_without_shuffle_the_dataset_order_is_kept():
    s = AtomBudgetBatchSampler(SIZES, 300, shuffle=False)
    s.set_epoch(9)
    assert [i for b in s for i in b] == list(range(len(SIZES)))


def test_bad_budget_and_rank_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        AtomBudgetBatchSampler(SIZES, 0)
    with pytest.raises(ValueError, match="rank 2"):
        AtomBudgetBatchSampler(SIZES, 100, rank=2, world=2)
    with pytest.raises(ValueError, match="batch_atoms"):
        TrainConfig(batch_atoms=0)
    with pytest.raises(ValueError, match="loader_workers"):
        TrainConfig(loader_workers=-1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_lmdb(tmp_path_factory.mktemp("data") / "synthetic")


def _train_split(data):
    from gnnspec.train.data import load_split

    cfg = smoke_config(data, "unused")
    return load_split(str(data), "train", cfg.model.backbone.cutoff, cfg.model.channels)


def test_loader_total_steps_is_exact_for_an_atom_budget(data):
    from gnnspec.train.data import make_loader

    train = _train_split(data)
    sizes = [int(train[i].num_nodes) for i in range(len(train))]
    budget = 2 * max(sizes) + 1  # two or three cells per batch
    loader = make_loader(train, 1, True, seed=3, batch_atoms=budget)
    counted = 0
    for epoch in range(4):
        set_loader_epoch(loader, epoch)
        batches = list(loader)
        counted += len(batches)
        assert len(batches) == len(loader)
        assert sum(b.num_graphs for b in batches) == len(train)
        assert all(b.num_nodes <= budget or b.num_graphs == 1 for b in batches)
    assert loader_total_steps(loader, 4) == counted
    fixed = make_loader(train, 2, True, seed=3)
    assert loader_total_steps(fixed, 4) == 4 * len(fixed)


def test_training_by_atom_budget_with_workers_resumes_exactly(data, tmp_path):
    train = _train_split(data)
    budget = 2 * max(int(train[i].num_nodes) for i in range(len(train)))
    opts = dict(epochs=3, log__figures_every=0, batch_atoms=budget, loader_workers=1)
    straight = run_training(smoke_config(data, tmp_path / "straight", **opts))
    assert not straight["interrupted"]
    assert not multiprocessing.active_children()  # the workers ended with the run (else exit waits on them)
    total = straight["step"]
    assert 3 * 3 <= total <= 3 * 6  # 6 training cells, two (or one) per step

    def interrupt(trainer):
        if trainer.step == 4:
            signal.raise_signal(signal.SIGINT)

    first = run_training(smoke_config(data, tmp_path / "split", **opts), step_callback=interrupt)
    assert first["interrupted"] and first["step"] == 4
    second = run_training(smoke_config(data, tmp_path / "split", **opts), resume=True)
    assert not second["interrupted"] and second["step"] == total
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
