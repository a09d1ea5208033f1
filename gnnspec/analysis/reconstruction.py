"""Reconstruction check: do the training environments the encoder places a query among look like it?

The channel check (:class:`gnnspec.analysis.support.ChannelSupport`) asks whether any training
spectrum has the query's shape; the embedding check whether the query's embedding lies among
training embeddings. Neither sees a spectrum that the encoder maps next to environments whose
spectra look different from it: an answer read off those neighbours is then not about this
spectrum. Here the ``k`` training environments nearest to the query in the spectrum-embedding
space are taken as the retrieved structures, and their spectra (what the encoder learned: FEFF's,
or the forward model's in the tier the encoder was aligned on, so the forward model's
reconstruction from the retrieved structures) are compared with the query per channel: the best
Pearson correlation among the ``k``. The same statistic of held-out validation environments,
measured like the query (resolution, plural scattering, noise: the channel check's adaptations),
gives the 1st percentile; a channel whose reconstruction is further than
:data:`gnnspec.analysis.support.CHANNEL_TOLERANCE` times that distance is foreign.

Stored with the training support (``gnnspec calibrate``; entries ``recon/...``): the unit
embeddings and spectra (float16) of up to :data:`TRAINING_ROWS` training environments, and of up
to :data:`VALIDATION_ROWS` validation environments with the indices of their ``k`` nearest
training rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnnspec.analysis.support import CHANNEL_TOLERANCE, QUANTILES, _broadened, _centred, _scattered, measured_like
from gnnspec.channels import CHANNELS

TRAINING_ROWS = 1000
VALIDATION_ROWS = 300
NEIGHBOURS = 5
PREFIX = "recon/"


def _adapted(rows: np.ndarray, channel: str, fwhm_ev: float | None, thickness: float | None, window: np.ndarray) -> np.ndarray:
    """``rows`` as the query was measured (its resolution, its plural scattering for EELS), on its window."""
    rows = np.asarray(rows, dtype=np.float64)
    if fwhm_ev:
        rows = _broadened(rows, channel, fwhm_ev)
    if thickness and CHANNELS[channel].modality == "eels":
        rows = _scattered(rows, channel, thickness)
    return rows[:, window]


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


@dataclass
class ReconstructionSupport:
    """Training rows (``emb [N, d]``, ``x [N, C, K]``, ``mask [N, C]``) and validation rows with
    their nearest training rows (``val_knn [M, k]``); ``channels``: the names of the ``C`` axis."""

    emb: np.ndarray
    x: np.ndarray
    mask: np.ndarray
    val_x: np.ndarray
    val_mask: np.ndarray
    val_knn: np.ndarray
    channels: tuple[str, ...]

    @classmethod
    def fit(cls, train: tuple, val: tuple, channels, seed: int = 0) -> ReconstructionSupport:
        """``train``/``val``: ``(embeddings [n, d], spectra [n, C, K], mask [n, C])`` of environments with spectra."""
        rng = np.random.default_rng([seed, 7])
        e_tr, x_tr, m_tr = (np.asarray(a) for a in train)
        e_va, x_va, m_va = (np.asarray(a) for a in val)
        keep = np.sort(rng.choice(len(e_tr), size=min(TRAINING_ROWS, len(e_tr)), replace=False))
        pick = np.sort(rng.choice(len(e_va), size=min(VALIDATION_ROWS, len(e_va)), replace=False))
        emb = _unit(e_tr[keep]).astype(np.float16)
        knn = np.argsort(-(_unit(e_va[pick]) @ emb.astype(np.float32).T), axis=1)[:, :NEIGHBOURS]
        return cls(
            emb,
            x_tr[keep].astype(np.float16),
            m_tr[keep].astype(bool),
            x_va[pick].astype(np.float16),
            m_va[pick].astype(bool),
            knn.astype(np.int32),
            tuple(channels),
        )

    def nearest(self, embedding: np.ndarray) -> np.ndarray:
        """Row indices of the ``k`` training environments nearest to ``embedding`` (cosine)."""
        return np.argsort(-(_unit(embedding) @ self.emb.astype(np.float32).T)[0])[:NEIGHBOURS]

    def check(
        self,
        embedding: np.ndarray,
        spectra: dict[str, np.ndarray],
        fwhm_ev: dict[str, float] | None = None,
        thickness: dict[str, float] | None = None,
        coverage: dict[str, np.ndarray] | None = None,
    ) -> dict:
        """Per channel of ``spectra`` (on the grids): the reconstruction correlation, the validation
        1st percentile at the query's conditions, the threshold and the verdict."""
        near = self.nearest(embedding)
        out = {}
        for name, y in spectra.items():
            if name not in self.channels:
                continue
            c = self.channels.index(name)
            have = self.mask[near, c]
            val_rows = np.nonzero(self.val_mask[:, c])[0]
            if not have.any() or len(val_rows) < 20:
                out[name] = {"reconstruction_correlation": None, "in_distribution": False, "why": "no retrieved training environment has this channel"}
                continue
            window = np.asarray((coverage or {}).get(name, np.ones(len(y), dtype=bool)), dtype=bool)
            how = (name, (fwhm_ev or {}).get(name), (thickness or {}).get(name), window)
            query = np.asarray(y, dtype=np.float64)[window]
            corr = float((_centred(_adapted(self.x[near[have], c], *how)) @ _centred(query[None])[0]).max())
            knn = self.val_knn[val_rows]  # [M, k]
            refs = _centred(_adapted(self.x[knn.reshape(-1), c], *how)).reshape(len(val_rows), knn.shape[1], -1)
            val, _ = measured_like(_adapted(self.val_x[val_rows, c], *how), query)
            scores = np.einsum("mk,mjk->mj", _centred(val), refs)
            scores = np.where(self.mask[knn, c], scores, -1.0).max(axis=1)  # a neighbour without the channel cannot win
            p01 = float(np.quantile(scores, QUANTILES[0]))
            threshold = 1.0 - CHANNEL_TOLERANCE * (1.0 - p01)
            out[name] = {
                "reconstruction_correlation": corr,
                "validation_p01": p01,
                "threshold": threshold,
                "in_distribution": bool(corr >= threshold),
            }
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The entries stored with the training support (prefix :data:`PREFIX`)."""
        return {
            PREFIX + "emb": self.emb,
            PREFIX + "x": self.x,
            PREFIX + "mask": self.mask,
            PREFIX + "val_x": self.val_x,
            PREFIX + "val_mask": self.val_mask,
            PREFIX + "val_knn": self.val_knn,
        }

    @classmethod
    def from_arrays(cls, arrays, channels) -> ReconstructionSupport | None:
        """The reconstruction support in a support's arrays (None for supports made before it);
        ``channels``: the model's channel names (the ``C`` axis)."""
        if PREFIX + "emb" not in arrays:
            return None
        a = {k[len(PREFIX) :]: np.asarray(arrays[k]) for k in arrays.keys() if k.startswith(PREFIX)}
        return cls(a["emb"], a["x"], a["mask"], a["val_x"], a["val_mask"], a["val_knn"], tuple(channels))
