"""Batches by an atom budget: as many supercells per optimizer step as fit in ``batch_atoms`` atoms.

:class:`AtomBudgetBatchSampler` is a torch batch sampler (``DataLoader(batch_sampler=...)``).
Each epoch it orders the items by a permutation drawn from ``seed + epoch`` (the seeding of
torch's ``DistributedSampler``, so a resumed run sees the same batches), packs them greedily in
that order into batches of at most ``budget`` atoms (a supercell larger than the budget is a
batch of its own) and deals the batches round-robin to the DDP ranks. When the number of batches
does not divide by the number of ranks, the first batches are repeated, so every rank runs the
same number of steps (a rank with fewer steps would leave the others waiting in the gradient
all-reduce for ever). The number of batches depends on the epoch's order; it is exact for every
epoch (:meth:`AtomBudgetBatchSampler.num_batches`), and so is the total number of optimizer
steps of a run (:func:`loader_total_steps`), which the learning-rate schedule needs.

:func:`set_loader_epoch` and :func:`loader_total_steps` work for either kind of training loader
(:func:`gnnspec.train.data.make_loader`): this one, or a fixed number of supercells per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler


def pack_by_budget(order: Sequence[int], sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Items of ``order`` in that order, cut into consecutive batches of at most ``budget`` atoms.

    ``sizes[i]`` is the number of atoms of item ``i``. A batch is closed when the next item would
    take it over the budget; an item larger than the budget on its own is a batch of one.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for i in order:
        n = int(sizes[i])
        if current and atoms + n > budget:
            batches.append(current)
            current, atoms = [], 0
        current.append(int(i))
        atoms += n
    if current:
        batches.append(current)
    return batches


class AtomBudgetBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices holding at most ``budget`` atoms each, sharded over DDP ranks.

    ``sizes``: atoms per item (len = dataset size). ``shuffle``: a new order every epoch, drawn
    from ``seed + epoch``; otherwise the dataset order. ``rank``/``world``: this process and the
    number of processes; every rank gets :meth:`num_batches` batches per epoch, and together the
    ranks cover every item at least once (exactly once with one rank). Call :meth:`set_epoch`
    before iterating, like a ``DistributedSampler``.
    """

    def __init__(
        self, sizes: Sequence[int], budget: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world: int = 1
    ):
        if budget < 1:
            raise ValueError(f"the atom budget must be at least 1, got {budget}")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        if len(sizes) == 0:
            raise ValueError("no items to batch")
        self.sizes = [int(n) for n in sizes]
        self.budget, self.shuffle, self.seed = int(budget), shuffle, int(seed)
        self.rank, self.world = rank, world
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches :meth:`__iter__` yields (it sets the order)."""
        self.epoch = int(epoch)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` over every rank, before sharding and padding."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.sizes), generator=g).tolist()
        else:
            order = list(range(len(self.sizes)))
        return pack_by_budget(order, self.sizes, self.budget)

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """The batches this rank runs in ``epoch``: every ``world``-th one, padded by repetition."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = self.global_batches(epoch)
        per_rank = -(-len(batches) // self.world)
        padded = [batches[i % len(batches)] for i in range(per_rank * self.world)]
        mine = padded[self.rank :: self.world]
        self._cache = (epoch, mine)
        return mine

    def num_batches(self, epoch: int) -> int:
        """Batches (optimizer steps) per rank in ``epoch``; the same on every rank."""
        return len(self.rank_batches(epoch))

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self.rank_batches(self.epoch)])

    def __len__(self) -> int:
        return self.num_batches(self.epoch)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Select ``epoch``'s order in a training loader (either sampler); its ``len`` is then that epoch's steps."""
    for s in (loader.batch_sampler, loader.sampler):
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
            return


def loader_total_steps(loader: DataLoader, epochs: int) -> int:
    """Optimizer steps of ``epochs`` epochs (0 to ``epochs - 1``) over ``loader``, exactly."""
    if isinstance(loader.batch_sampler, AtomBudgetBatchSampler):
        return sum(loader.batch_sampler.num_batches(e) for e in range(epochs))
    return epochs * len(loader)
