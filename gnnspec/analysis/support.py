"""Training support of a spectrum query: is it near anything the encoder was trained on?

Measured spectra can differ from every FEFF10 spectrum of the training set (broadening,
background, energy scale), and the property heads then extrapolate. The support check
compares a query's spectrum embedding with the spectrum embeddings of the training
environments: its cosine to the nearest one, next to the same number for the validation
environments (held-out FEFF spectra, so in distribution by construction). A query below the
validation 1st percentile is flagged ``in_distribution: false``.

A check in the embedding space alone can be fooled: the encoder maps a foreign spectrum
somewhere, possibly near training embeddings (measured: the shared NMC EELS, whose Mn L edge
correlates 0.27 with the fast-tier FEFF spectra, sat at a nearest cosine of 0.966 against a
validation 1st percentile of 0.876). So the support also looks at each channel's spectrum itself
(:class:`ChannelSupport`): the Pearson correlation (the shape, whatever the scale and offset) of
the query's spectrum with its nearest training environment spectrum of the same channel. A
channel is foreign when its distance ``1 - correlation`` exceeds ``CHANNEL_TOLERANCE`` times the
validation environments' 99th-percentile distance (a single site's spectrum, or a forward-model
prediction, sits a little further from the environment means than held-out environments do:
measured, 0.993 against a validation 1st percentile of 0.994 for a predicted O K spectrum; the
measured NMC EELS sits at 0.45). A query with a foreign channel is foreign.

Stored inside the checkpoint as plain arrays (:data:`gnnspec.analysis.attached.SUPPORT`; older
models: ``<model>.support.npz`` beside it): the training embeddings (float16) and the validation quantiles; per channel, up to
``CHANNEL_REFERENCES`` training environment spectra (float16, centred and scaled to unit norm,
a seeded random subset) and the validation quantiles of the nearest correlation. For a model that reads an elemental
quantification the support holds a second pair made with each environment's exact quantification:
a query that carries a quantification is compared with those (a quantified embedding sits
elsewhere than the spectra-alone one; measured on the validation split of the shipped model,
quantified queries against spectra-alone references have a 1st percentile of 0.84 instead of
0.91, so they would be flagged three times too often).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gnnspec.channels import CHANNELS

QUANTILES = (0.01, 0.05, 0.5)
#: Training environment spectra kept per channel for the spectrum-space check.
CHANNEL_REFERENCES = 600
#: Validation environment spectra kept per channel, to recompute the quantiles at a query's resolution.
CHANNEL_VALIDATION = 300
#: A channel is foreign beyond this many times the validation 99th-percentile distance (1 - correlation).
CHANNEL_TOLERANCE = 2.0
QUANTIFIED_INPUTS = "spectra with their exact elemental quantification"


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

    def arrays(self, quantified: TrainingSupport | None = None, channels: ChannelSupport | None = None) -> dict[str, np.ndarray]:
        """The named arrays of this support and, for a model with the quantification input, the
        ``quantified`` one; ``channels``: the spectrum-space support (a checkpoint entry or an npz file)."""
        out = {"train": self.train, "val_quantiles": self.val_quantiles, "quantiles": np.asarray(QUANTILES)}
        if quantified is not None:
            out.update(quantified_train=quantified.train, quantified_val_quantiles=quantified.val_quantiles)
        if channels is not None:
            out.update(channels.arrays())
        return out

    def save(self, path: str | Path, quantified: TrainingSupport | None = None, channels: ChannelSupport | None = None) -> None:
        """Write :meth:`arrays` as an npz file."""
        np.savez(path, **self.arrays(quantified, channels))

    @classmethod
    def from_arrays(cls, arrays, quantified: bool = False, source: str = "<support>") -> TrainingSupport:
        """The support for spectra alone, or (``quantified``) for queries with a quantification when ``arrays`` has it."""
        if tuple(np.asarray(arrays["quantiles"]).tolist()) != QUANTILES:
            from gnnspec.errors import InputError

            raise InputError(f"{source}: support made with other quantiles; rerun gnnspec calibrate")
        if quantified and "quantified_train" in arrays:
            return cls(np.asarray(arrays["quantified_train"]), np.asarray(arrays["quantified_val_quantiles"]), QUANTIFIED_INPUTS)
        return cls(np.asarray(arrays["train"]), np.asarray(arrays["val_quantiles"]))

    @classmethod
    def load(cls, path: str | Path, quantified: bool = False) -> TrainingSupport:
        """:meth:`from_arrays` of an npz file."""
        with np.load(path, allow_pickle=False) as f:
            return cls.from_arrays(f, quantified, str(path))


def _centred(rows: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


@dataclass
class ChannelSupport:
    """Per channel: training spectra (centred, unit norm), validation nearest-correlation quantiles
    and (``validation``, support files written since the instrument model) up to
    :data:`CHANNEL_VALIDATION` validation spectra (centred, unit norm) to recompute the quantiles at
    a query's resolution."""

    references: dict[str, np.ndarray]
    val_quantiles: dict[str, np.ndarray]
    validation: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, train: dict[str, np.ndarray], val: dict[str, np.ndarray], seed: int = 0) -> ChannelSupport:
        """``train``/``val``: ``{channel: [n, K] environment spectra on the grid}``."""
        rng, rng_val = np.random.default_rng(seed), np.random.default_rng([seed, 1])
        refs, quantiles, kept = {}, {}, {}
        for name, rows in train.items():
            if name not in val or len(rows) == 0 or len(val[name]) == 0:
                continue
            keep = rng.choice(len(rows), size=min(CHANNEL_REFERENCES, len(rows)), replace=False)
            refs[name] = _centred(rows[np.sort(keep)]).astype(np.float16)
            quantiles[name] = np.quantile(cls._nearest(refs[name], val[name]), QUANTILES)
            pick = rng_val.choice(len(val[name]), size=min(CHANNEL_VALIDATION, len(val[name])), replace=False)
            kept[name] = _centred(val[name][np.sort(pick)]).astype(np.float16)
        return cls(refs, quantiles, kept)

    @staticmethod
    def _nearest(refs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return (_centred(rows) @ refs.astype(np.float32).T).max(axis=1)

    def check(
        self,
        spectra: dict[str, np.ndarray],
        fwhm_ev: float | None = None,
        coverage: dict[str, np.ndarray] | None = None,
        thickness: float | None = None,
    ) -> dict:
        """``{channel: {"nearest_training_correlation", "validation_p01", "threshold", "in_distribution"}}``
        for the channels of ``spectra`` (on their grids) that the support knows.

        ``fwhm_ev``: the query's resolution (Gaussian FWHM, eV; the zero-loss FWHM for EELS). The
        training references and the stored validation spectra are then broadened by it
        (:func:`gnnspec.instrument.gaussian_resolution`: a linear, area-keeping operator, so
        broadening a centred row and centring again equals centring the broadened spectrum; the
        broadened references are centred and scaled to unit norm again, the validation rows are
        when compared) and the validation 1st percentile is recomputed there, so a broad measurement is compared with
        training spectra at its own resolution. FEFF's own core-hole broadening is not
        subtracted. A support file without validation spectra keeps the unbroadened comparison and
        says so (``resolution``).

        ``coverage``: ``{channel: bool [K]}``, the grid energies a partial window measured
        (:func:`gnnspec.spectra.grid_coverage`). The correlations, the query's and the validation
        quantile's alike, are then taken over those energies only (``window``), so the flat
        extrapolation outside the window does not count against the query.

        A measurement is noisy and, in EELS, plurally scattered; a held-out FEFF spectrum is
        neither, so comparing the two quantiles alone would call every real measurement foreign.
        With the query's ``thickness`` (t/lambda, EELS; recorded by ``gnnspec convert --low-loss``
        and not removed) the training references and the validation spectra are plurally scattered
        like it (as they are broadened to its resolution), and the validation spectra are given
        white noise up to the query's own noise level (:func:`measured_like`; :func:`noise_level`,
        estimated from the query itself; a noiseless simulated query adds none) before the quantile
        is taken. A foreign shape stays foreign: noise at the query's level lowers the validation
        correlations only as far as noise lowers any spectrum's; a channel noisier than
        :data:`MAX_NOISE_TO_SIGNAL` is foreign whatever its correlation (``why``)."""
        out = {}
        for name, y in spectra.items():
            if name not in self.references:
                continue
            refs, val, how = self.references[name], self.validation.get(name), "FEFF spectra as computed"
            if fwhm_ev:
                if val is not None:
                    refs, val = _centred(_broadened(refs, name, fwhm_ev)), _broadened(val, name, fwhm_ev)
                    how = f"training and validation spectra broadened to the query's {fwhm_ev:g} eV FWHM"
                else:
                    how = "not adapted: this support file holds no validation spectra (rerun gnnspec calibrate)"
            y = np.atleast_2d(np.asarray(y, dtype=np.float32))
            window = np.asarray((coverage or {}).get(name, np.ones(y.shape[-1], dtype=bool)), dtype=bool)
            partial = not window.all()
            if partial:
                refs, y = _centred(refs[:, window]), y[:, window]
                val = None if val is None else val[:, window]
                how += f"; compared on the {int(window.sum())} measured grid energies"
            measured_as = None
            if val is not None:
                if thickness and CHANNELS[name].modality == "eels":
                    refs, val = _centred(_scattered(refs, name, thickness)), _scattered(val, name, thickness)
                    how += f"; both plurally scattered at the query's t/lambda {thickness:.2f}"
                val, measured_as = measured_like(val, y[0])
                if measured_as:
                    how += f"; validation spectra given the query's {measured_as}"
            p01 = float(self.val_quantiles[name][0])
            if val is not None and (fwhm_ev or partial or measured_as):
                p01 = float(np.quantile(self._nearest(refs, val), QUANTILES[0]))
            elif partial:
                how += " (validation quantile of the full grid: no validation spectra stored)"
            corr = float(self._nearest(refs, y)[0])
            threshold = 1.0 - CHANNEL_TOLERANCE * (1.0 - p01)
            noise = float(noise_level(y)[0])
            out[name] = {
                "nearest_training_correlation": corr,
                "validation_p01": p01,
                "threshold": threshold,
                "noise_to_signal": noise,
                "in_distribution": bool(corr >= threshold and noise <= MAX_NOISE_TO_SIGNAL),
                "resolution": how,
            }
            if noise > MAX_NOISE_TO_SIGNAL:
                out[name]["why"] = f"too noisy to judge: noise-to-signal {noise:.2f} above {MAX_NOISE_TO_SIGNAL}"
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz entries: ``channel_refs/<name>``, ``channel_quantiles/<name>`` and ``channel_val/<name>``."""
        out = {}
        for name in self.references:
            out[f"channel_refs/{name}"] = self.references[name]
            out[f"channel_quantiles/{name}"] = self.val_quantiles[name]
            if name in self.validation:
                out[f"channel_val/{name}"] = self.validation[name]
        return out

    @classmethod
    def from_arrays(cls, f) -> ChannelSupport | None:
        """The spectrum-space support in :meth:`arrays`-named arrays (None when they have none)."""
        names = [k.split("/", 1)[1] for k in f.keys() if k.startswith("channel_refs/")]
        if not names:
            return None
        val = {n: np.asarray(f[f"channel_val/{n}"]) for n in names if f"channel_val/{n}" in f}
        return cls({n: np.asarray(f[f"channel_refs/{n}"]) for n in names}, {n: np.asarray(f[f"channel_quantiles/{n}"]) for n in names}, val)


def noise_level(rows: np.ndarray) -> np.ndarray:
    """Per row, a robust estimate of its white-noise standard deviation relative to its own
    standard deviation (a noise-to-signal ratio, so any scale or offset of the row is the same):
    ``1.4826 MAD(second differences) / sqrt(6)``, the second difference of white noise of
    variance ``s^2`` having variance ``6 s^2``; the median keeps the few sharp features of a
    spectrum from counting as noise."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    d2 = np.diff(rows, n=2, axis=1)
    mad = np.median(np.abs(d2 - np.median(d2, axis=1, keepdims=True)), axis=1)
    return 1.4826 * mad / np.sqrt(6.0) / np.maximum(rows.std(axis=1), 1e-12)


#: Seed of the noise given to validation spectra in :func:`measured_like` (the same verdict every run).
MEASURED_LIKE_SEED = 0
#: Beyond this noise-to-signal ratio (:func:`noise_level`) a channel is too noisy to judge, and foreign:
#: noise of half the signal's spread hides the shape that the check and the encoder read.
MAX_NOISE_TO_SIGNAL = 0.5


def measured_like(val: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Validation rows ``val [n, K]`` (any offset and scale) with white noise bringing each row's
    :func:`noise_level` up to the ``query [K]``'s (rows already as noisy are left; seeded, so the
    same query gets the same verdict). Returns the rows and what was done (None: nothing, the
    query being no noisier than the validation spectra)."""
    rows = np.asarray(val, dtype=np.float64)
    target = float(noise_level(query[None, :])[0])
    have = noise_level(rows)
    extra = np.sqrt(np.maximum(target**2 - have**2, 0.0)) * rows.std(axis=1)
    if not (target > 1.05 * float(np.median(have)) and extra.any()):
        return rows, None
    rng = np.random.default_rng(MEASURED_LIKE_SEED)
    return rows + rng.normal(size=rows.shape) * extra[:, None], f"noise (noise-to-signal {target:.3f}, estimated from the query)"


def _scattered(rows: np.ndarray, channel: str, thickness: float) -> np.ndarray:
    """``rows`` (any offset; on ``channel``'s grid) plurally scattered at ``thickness`` t/lambda
    (:func:`gnnspec.instrument.plural_scattering`: linear, without renormalisation)."""
    import torch

    from gnnspec.channels import CHANNELS
    from gnnspec.instrument import plural_scattering

    x = torch.from_numpy(np.asarray(rows, dtype=np.float64).copy())
    return plural_scattering(x, CHANNELS[channel].step, float(thickness), renormalise=False).numpy()


def _broadened(rows: np.ndarray, channel: str, fwhm_ev: float) -> np.ndarray:
    """``rows`` (on ``channel``'s grid) convolved with a Gaussian of ``fwhm_ev`` eV FWHM."""
    import torch

    from gnnspec.channels import CHANNELS
    from gnnspec.instrument import gaussian_resolution

    x = torch.from_numpy(np.asarray(rows, dtype=np.float64))
    return gaussian_resolution(x, CHANNELS[channel].step, fwhm_ev).numpy()


def load_channel_support(path: str | Path) -> ChannelSupport | None:
    """The spectrum-space support in a support file (None for files made before it existed)."""
    with np.load(path, allow_pickle=False) as f:
        return ChannelSupport.from_arrays(f)
