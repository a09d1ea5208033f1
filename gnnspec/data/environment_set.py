"""Every environment of a split as one set of arrays: spectra, masks, labels, members (data only).

Wherever a whole split is scored at once (training metrics, the alignment stage, calibration,
``library evaluate``, ``make bench``) its environments are gathered here, in graph order, once.
For ``n`` environments, ``C`` channels and ``K`` grid points:

* ``y [n, C, K]`` (float64) and ``mask [n, C]`` (bool): the FEFF environment spectra (means of
  member site spectra, normalised per channel; :mod:`gnnspec.structures.environments`) and which
  channels are present;
* ``content [n, 5]`` (atom fractions of :data:`gnnspec.labels.CONTENT_ELEMENTS`) and
  ``defects [n, 2]`` (0/1 of :data:`gnnspec.labels.DEFECTS`): the labels;
* ``sid [n]`` (structure id), ``centre_z [n]`` (atomic number of the centre atom);
* ``members``: per environment, the site indices of its member atoms in its structure;
* ``structures``: how many structures (graphs) the rows come from, in order;
* ``coverage [n, C, K]`` (bool) or None: the measured energies of partial windows (None: whole
  grids, as FEFF gives them);
* ``intensity [n, 5]`` or None: the element amounts the environments' raw FEFF intensities hold
  (:mod:`gnnspec.quantification.intensities`, with the k-factors given to :meth:`from_dataset`;
  NaN rows for environments without spectra, 0 for elements without a present channel).

:meth:`amounts` gives the element amounts of each quantification mode an evaluation uses. Nothing
here runs a model: embeddings of a set are :mod:`gnnspec.models.environment_table`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from gnnspec.channels import DEFAULT_CHANNELS
from gnnspec.data import keys as K
from gnnspec.labels import CONTENT_ELEMENTS

#: quantification modes of :meth:`EnvironmentSet.amounts`
AMOUNT_MODES = ("exact", "perturbed", "intensities")


@dataclass
class EnvironmentSet:
    """Environments of one split (see the module docstring)."""

    y: np.ndarray
    mask: np.ndarray
    content: np.ndarray
    defects: np.ndarray
    sid: np.ndarray
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    centre_z: np.ndarray | None = None
    members: list[np.ndarray] = field(default_factory=list)
    coverage: np.ndarray | None = None
    intensity: np.ndarray | None = None
    structures: int = 0

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def with_spectra(self) -> np.ndarray:
        """Rows with at least one present channel."""
        return np.nonzero(self.mask.any(1))[0]

    @classmethod
    def from_graphs(cls, graphs, channels, limit: int | None = None) -> EnvironmentSet:
        """The environments of structure graphs (a list, or a dataset indexed by position).

        ``limit``: stop after the graph that brings the environments with spectra to ``limit``.
        """
        cols: dict[str, list] = {k: [] for k in ("y", "mask", "content", "defects", "sid", "centre_z")}
        members: list[np.ndarray] = []
        n_with_spectra = 0
        for i in range(len(graphs)):
            if limit is not None and n_with_spectra >= limit:
                break
            g = graphs[i]
            _append(cols, members, g)
            n_with_spectra += int(cols["mask"][-1].any(1).sum())
        if not cols["y"]:
            raise ValueError("no structures to gather environments from")
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
        return cls(**arrays, channels=tuple(channels), members=members, structures=len(cols["y"]))

    @classmethod
    def from_dataset(cls, ds, k_factors: dict | None = None) -> EnvironmentSet:
        """The environments of an LMDB split (:class:`gnnspec.data.dataset.LMDBStructureDataset`);
        with ``k_factors``, also the amounts their raw FEFF intensities hold (``intensity``)."""
        from gnnspec.quantification.intensities import environment_amounts, site_integrals

        cols: dict[str, list] = {k: [] for k in ("y", "mask", "content", "defects", "sid", "centre_z")}
        members: list[np.ndarray] = []
        intensity: list[np.ndarray] = []
        for i in range(len(ds)):
            g = ds[i]
            first = len(members)
            _append(cols, members, g)
            if k_factors is None:
                continue
            integrals = site_integrals(ds.raw_runs(i))
            for e, mask in enumerate(cols["mask"][-1]):
                present = [name for c, name in enumerate(ds.channels) if mask[c]]
                row = np.full(len(CONTENT_ELEMENTS), np.nan if not present else 0.0)
                held = environment_amounts(integrals, members[first + e], present, k_factors) if present else {}
                for element, amount in held.items():
                    row[CONTENT_ELEMENTS.index(element)] = amount
                intensity.append(row)
        if not cols["y"]:
            raise ValueError("no structures to gather environments from")
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
        held = np.array(intensity) if k_factors is not None else None
        return cls(**arrays, channels=tuple(ds.channels), members=members, intensity=held, structures=len(cols["y"]))

    @classmethod
    def concat(cls, parts: list[EnvironmentSet]) -> EnvironmentSet:
        """One set of several (same channels), in order; ``coverage`` and ``intensity`` kept when every part has them."""
        if not parts or len({p.channels for p in parts}) != 1:
            raise ValueError("concat needs at least one set, all on the same channels")

        def joined(name):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in ("y", "mask", "content", "defects", "sid")},
            channels=parts[0].channels,
            centre_z=joined("centre_z"),
            members=[m for p in parts for m in p.members],
            coverage=joined("coverage"),
            intensity=joined("intensity"),
            structures=sum(p.structures for p in parts),
        )

    def amounts(self, mode: str, relative_error: float = 0.0, generator: torch.Generator | None = None) -> np.ndarray:
        """Element amounts ``[n, 5]`` an evaluation gives the encoder as the elemental quantification.

        ``exact``: the labels' content; ``perturbed``: the content times ``exp(N(0, relative_error))``
        per element (:func:`gnnspec.quantification.perturb_amounts`, draws from ``generator``);
        ``intensities``: what the raw FEFF intensities hold (needs :meth:`from_dataset` with k-factors).
        """
        from gnnspec.quantification import perturb_amounts

        if mode == "exact":
            return self.content
        if mode == "perturbed":
            return perturb_amounts(torch.tensor(self.content), relative_error, 0.0, generator).numpy()
        if mode == "intensities":
            if self.intensity is None:
                raise ValueError("this set holds no intensity amounts: build it with EnvironmentSet.from_dataset(ds, k_factors)")
            return self.intensity
        raise ValueError(f"unknown quantification mode {mode!r}: expected one of {AMOUNT_MODES}")

    def rows(self, index: np.ndarray) -> EnvironmentSet:
        """The environments at ``index`` (a copy)."""
        index = np.asarray(index)

        def pick(a):
            return None if a is None else a[index]

        return replace(
            self,
            y=self.y[index],
            mask=self.mask[index],
            content=self.content[index],
            defects=self.defects[index],
            sid=self.sid[index],
            centre_z=pick(self.centre_z),
            members=[self.members[i] for i in index] if self.members else [],
            coverage=pick(self.coverage),
            intensity=pick(self.intensity),
        )


def _append(cols: dict[str, list], members: list[np.ndarray], g) -> None:
    """One graph's environments into the column lists."""
    centre = g[K.ENV_CENTRE_INDEX].cpu()
    cols["y"].append(g[K.ENV_Y].cpu().double().numpy())
    cols["mask"].append(g[K.ENV_Y_MASK].cpu().numpy())
    cols["content"].append(g[K.ENV_CONTENT].cpu().double().numpy())
    cols["defects"].append(g[K.ENV_DEFECTS].cpu().double().numpy())
    cols["sid"].append(np.full(centre.numel(), int(g[K.SID].reshape(-1)[0])))
    cols["centre_z"].append(g[K.Z].cpu()[centre].numpy())
    member_index, member_env = g[K.ENV_MEMBER_INDEX].cpu().numpy(), g[K.ENV_MEMBER_ENV].cpu().numpy()
    members.extend(member_index[member_env == e] for e in range(centre.numel()))
