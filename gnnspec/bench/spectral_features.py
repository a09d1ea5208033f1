"""Spectral features of the seed paper's inverse method (gradient-boosted trees on spectra).

Per channel, from the normalised spectrum on its grid (0.5 eV steps):

* cumulative-distribution features: the normalised cumulative sum of the spectrum sampled at
  every 2.5 eV (the CDF is smoother and less noise-sensitive than the spectrum itself);
* piecewise cubic polynomial fits: the four coefficients of a cubic least-squares fit in each
  5 eV window (energies relative to the window centre).

Missing channels give NaN features, which XGBoost treats as missing values.
"""

from __future__ import annotations

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, DEFAULT_CHANNELS

WINDOW_EV = 5.0
CDF_STEP_EV = 2.5


def _channel_features(y: np.ndarray, step: float) -> np.ndarray:
    cdf = np.cumsum(y)
    cdf = cdf / cdf[-1] if cdf[-1] != 0 else cdf
    cdf_feats = cdf[:: int(round(CDF_STEP_EV / step))]
    w = int(round(WINDOW_EV / step))
    coefs = []
    for start in range(0, len(y) - 1, w):
        seg = y[start : start + w + 1]
        x = (np.arange(len(seg)) - (len(seg) - 1) / 2) * step
        deg = min(3, len(seg) - 1)
        c = np.polyfit(x, seg, deg)
        coefs.append(np.pad(c, (3 - deg, 0)))
    return np.concatenate([cdf_feats, np.concatenate(coefs)])


def n_features_per_channel() -> int:
    ch = CHANNELS[CHANNEL_NAMES[0]]
    return len(_channel_features(np.ones(ch.n_energy), ch.step))


def seed_features(
    env_y: np.ndarray, mask: np.ndarray, channels: list[str] | None = None, rows: tuple[str, ...] | list[str] = DEFAULT_CHANNELS
) -> np.ndarray:
    """Features ``[n_env, n_used * F]`` of environment spectra ``[n_env, C, K]`` with ``mask [n_env, C]``.

    ``rows`` names the C rows; ``channels`` selects the channel subset (default all rows);
    missing spectra give NaN.
    """
    rows = list(rows)
    names = list(channels or rows)
    idx = [rows.index(c) for c in names]
    nf = n_features_per_channel()
    out = np.full((len(env_y), len(idx) * nf), np.nan)
    for i in range(len(env_y)):
        for j, c in enumerate(idx):
            if mask[i, c]:
                out[i, j * nf : (j + 1) * nf] = _channel_features(env_y[i, c], CHANNELS[rows[c]].step)
    return out
