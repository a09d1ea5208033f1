"""Uncertainty of element content and defect probabilities, and their calibration.

Method: a bootstrap ensemble of linear property heads on the frozen spectrum embeddings of the
training environments (``members`` heads, each fitted on a resample with replacement), giving a
predictive mean and a spread (standard deviation across members) for every output. Defect
probabilities are then calibrated by temperature scaling on the validation split (one
temperature per defect, minimising the negative log-likelihood), and the expected calibration
error (ECE, 10 equal-width bins) is reported before and after.

The fitted ensemble is saved as plain arrays (``.npz``, no pickles) next to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE: sum over equal-width probability bins of |accuracy - confidence| weighted by count."""
    prob, label = np.asarray(prob, float).ravel(), np.asarray(label, float).ravel()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(label[sel].mean() - prob[sel].mean())
    return float(ece)


@dataclass
class PropertyEnsemble:
    """Linear heads ``[M, d, 5]`` (content) and ``[M, d, 2]`` (defects) with biases and temperatures."""

    w_content: np.ndarray
    b_content: np.ndarray
    w_defect: np.ndarray
    b_defect: np.ndarray
    temperature: np.ndarray  # [2]

    def logits(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.einsum("nd,mdk->mnk", emb, self.w_content) + self.b_content[:, None, :]
        d = np.einsum("nd,mdk->mnk", emb, self.w_defect) + self.b_defect[:, None, :]
        return c, d

    def predict(self, emb: np.ndarray, calibrated: bool = True) -> dict[str, np.ndarray]:
        """Means and standard deviations across members of content fractions and defect probabilities."""
        c, d = self.logits(np.atleast_2d(emb))
        content = np.exp(c - c.max(-1, keepdims=True))
        content /= content.sum(-1, keepdims=True)
        t = self.temperature if calibrated else np.ones_like(self.temperature)
        defect = 1.0 / (1.0 + np.exp(-d / t))
        return {"content": content.mean(0), "content_std": content.std(0), "defect": defect.mean(0), "defect_std": defect.std(0)}

    def arrays(self) -> dict[str, np.ndarray]:
        """The named arrays the ensemble is stored as (a checkpoint entry or an npz file)."""
        return {"w_content": self.w_content, "b_content": self.b_content, "w_defect": self.w_defect, "b_defect": self.b_defect, "temperature": self.temperature}

    @classmethod
    def from_arrays(cls, arrays) -> PropertyEnsemble:
        return cls(**{k: np.asarray(arrays[k]) for k in ("w_content", "b_content", "w_defect", "b_defect", "temperature")})

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> PropertyEnsemble:
        with np.load(path, allow_pickle=False) as f:
            return cls.from_arrays(f)


def fit_ensemble(emb: np.ndarray, content: np.ndarray, defects: np.ndarray, members: int = 5, steps: int = 400, weight_decay: float = 1e-3, seed: int = 0) -> PropertyEnsemble:
    """Fit ``members`` linear heads on bootstrap resamples of ``(emb, content, defects)``."""
    rng = np.random.default_rng(seed)
    d = emb.shape[1]
    wc, bc, wd, bd = [], [], [], []
    for _ in range(members):
        idx = rng.integers(0, len(emb), size=len(emb))
        x = torch.tensor(emb[idx], dtype=torch.float64)
        yc = torch.tensor(content[idx], dtype=torch.float64)
        yd = torch.tensor(defects[idx], dtype=torch.float64)
        lin_c = torch.nn.Linear(d, content.shape[1]).double()
        lin_d = torch.nn.Linear(d, defects.shape[1]).double()
        opt = torch.optim.Adam([*lin_c.parameters(), *lin_d.parameters()], lr=0.05, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            loss = -(yc * torch.log_softmax(lin_c(x), -1)).sum(-1).mean()
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(lin_d(x), yd)
            loss.backward()
            opt.step()
        wc.append(lin_c.weight.detach().numpy().T)
        bc.append(lin_c.bias.detach().numpy())
        wd.append(lin_d.weight.detach().numpy().T)
        bd.append(lin_d.bias.detach().numpy())
    return PropertyEnsemble(np.array(wc), np.array(bc), np.array(wd), np.array(bd), np.ones(defects.shape[1]))


def calibrate(ens: PropertyEnsemble, emb_val: np.ndarray, defects_val: np.ndarray) -> dict:
    """Temperature-scale each defect on validation data; returns ECE before and after."""
    _, d = ens.logits(emb_val)  # [M, n, 2]
    temps = np.exp(np.linspace(np.log(0.2), np.log(5.0), 61))

    def prob(j: int, t: float) -> np.ndarray:  # ensemble mean of the tempered member probabilities
        return (1 / (1 + np.exp(-d[:, :, j] / t))).mean(0)

    report = {}
    for j in range(d.shape[2]):
        y = defects_val[:, j]
        before = prob(j, 1.0)
        nll = []
        for t in temps:
            p = np.clip(prob(j, t), 1e-7, 1 - 1e-7)
            nll.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
        best = int(np.argmin(nll))
        t_best = float(temps[best])
        ens.temperature[j] = t_best
        after = prob(j, t_best)
        nll_before = float(nll[int(np.argmin(np.abs(temps - 1.0)))])
        report[j] = {"temperature": t_best, "nll_before": nll_before, "nll_after": float(nll[best]), "ece_before": expected_calibration_error(before, y), "ece_after": expected_calibration_error(after, y), "n": int(len(y))}
    return report
