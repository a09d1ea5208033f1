"""Training support of a spectrum query: is it near anything the encoder was trained on?

Measured spectra can differ from every FEFF10 spectrum of the training set (broadening,
background, energy scale), and the property heads then extrapolate. The support check
compares a query's spectrum embedding with the spectrum embeddings of the training
environments: its cosine to the nearest one, next to the same number for the validation
environments (held-out FEFF spectra, so in distribution by construction). A query below the
validation 1st percentile is flagged ``in_distribution: false``.

Stored next to the model as ``<model>.support.npz`` (plain arrays, no pickles): the training
embeddings (float16) and the validation quantiles. For a model that reads an elemental
quantification the file holds a second pair made with each environment's exact quantification:
a query that carries a quantification is compared with those (a quantified embedding sits
elsewhere than the spectra-alone one; measured on the validation split of the shipped model,
quantified queries against spectra-alone references have a 1st percentile of 0.84 instead of
0.91, so they would be flagged three times too often).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUANTILES = (0.01, 0.05, 0.5)
QUANTIFIED_INPUTS = "spectra with their exact elemental quantification"


def support_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".support.npz")


@dataclass
class TrainingSupport:
    """Unit training embeddings ``[N, d]`` and validation nearest-cosine quantiles (:data:`QUANTILES`);
    ``inputs`` says what the embeddings were made from."""

    train: np.ndarray
    val_quantiles: np.ndarray
    inputs: str = "spectra alone"

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, inputs: str = "spectra alone") -> TrainingSupport:
        train = (train / np.linalg.norm(train, axis=1, keepdims=True)).astype(np.float16)
        probe = cls(train, np.zeros(len(QUANTILES)))
        return cls(train, np.quantile(probe.nearest_cosine(val), QUANTILES), inputs)

    def nearest_cosine(self, emb: np.ndarray) -> np.ndarray:
        emb = np.atleast_2d(np.asarray(emb, dtype=np.float32))
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb @ self.train.astype(np.float32).T).max(axis=1)

    def check(self, emb: np.ndarray) -> dict:
        """The JSON block ``gnnspec infer`` writes for one embedding."""
        cos = float(self.nearest_cosine(emb)[0])
        q = {f"validation_p{int(round(100 * p)):02d}": float(v) for p, v in zip(QUANTILES, self.val_quantiles)}
        return {
            "nearest_training_cosine": cos,
            **q,
            "in_distribution": bool(cos >= self.val_quantiles[0]),
            "reference": self.inputs,
        }

    def save(self, path: str | Path, quantified: TrainingSupport | None = None) -> None:
        """Write this support and, for a model with the quantification input, the ``quantified`` one."""
        extra = {}
        if quantified is not None:
            extra = {"quantified_train": quantified.train, "quantified_val_quantiles": quantified.val_quantiles}
        np.savez(path, train=self.train, val_quantiles=self.val_quantiles, quantiles=np.asarray(QUANTILES), **extra)

    @classmethod
    def load(cls, path: str | Path, quantified: bool = False) -> TrainingSupport:
        """The support for spectra alone, or (``quantified``) for queries with a quantification when the file has it."""
        with np.load(path, allow_pickle=False) as f:
            if tuple(f["quantiles"]) != QUANTILES:
                from gnnspec.errors import InputError

                raise InputError(f"{path}: support file made with other quantiles; rerun gnnspec calibrate")
            if quantified and "quantified_train" in f.files:
                return cls(f["quantified_train"], f["quantified_val_quantiles"], QUANTIFIED_INPUTS)
            return cls(f["train"], f["val_quantiles"])
