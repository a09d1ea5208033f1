"""The instrument-and-sample model (gnnspec.instrument): area conservation, plural-scattering Poisson
weights, quadrature resolution, counting-noise statistics, reproducible draws, EELS-only plural
scattering, partial windows as convert reads them, and a training run with the model on."""

import math

import numpy as np
import pytest
import torch
from model_fixtures import smoke_config, write_synthetic_lmdb

from gnnspec import instrument as ins
from gnnspec.channels import CHANNELS, DEFAULT_CHANNELS, normalise, to_channel_grid
from gnnspec.config import from_dict
from gnnspec.errors import InputError
from gnnspec.spectra import Spectrum, spectra_on_grids
from gnnspec.train.config import AugmentConfig, InstrumentAugmentConfig

torch.set_num_threads(1)
STEP = 0.5  # eV, every channel grid
K = 121


def _spectra(r: int, seed: int = 0) -> torch.Tensor:
    """Edge-like float64 rows: a step, a white line and random wiggles, unit mean."""
    g = torch.Generator().manual_seed(seed)
    e = torch.arange(K, dtype=torch.float64) * STEP
    onset = 10.0 + 20.0 * torch.rand(r, 1, generator=g, dtype=torch.float64)
    step = torch.sigmoid((e - onset) / 0.8)
    line = 3.0 * torch.exp(-0.5 * ((e - onset - 2.0) / 1.0) ** 2)
    wiggle = 0.1 * torch.rand(r, K, generator=g, dtype=torch.float64)
    x = 0.05 + step + line + wiggle
    return x / x.mean(-1, keepdim=True)


def _fwhm(e: np.ndarray, y: np.ndarray) -> float:
    """FWHM of a single peak by linear interpolation of the half-maximum crossings."""
    half = y.max() / 2
    above = np.nonzero(y >= half)[0]
    i, j = above[0], above[-1]
    left = e[i - 1] + (half - y[i - 1]) / (y[i] - y[i - 1]) * (e[i] - e[i - 1])
    right = e[j] + (y[j] - half) / (y[j] - y[j + 1]) * (e[j + 1] - e[j])
    return right - left


# --- area conservation (float64, 1e-6 relative) -------------------------------------------------


def test_resolution_conserves_area_and_keeps_flat_ends():
    x = _spectra(6)
    x[0] = 0.0
    x[0, 0] = 1.0  # all intensity at the grid's first point
    fwhm = torch.tensor([2.5, 0.3, 1.0, 2.0, 2.5, 0.0], dtype=torch.float64)
    y = ins.gaussian_resolution(x, STEP, fwhm)
    assert torch.allclose(y.sum(-1), x.sum(-1), rtol=1e-6, atol=0)
    assert torch.equal(y[5], x[5])  # FWHM 0: unchanged
    assert y[0, 0] < 0.9 and y[0, 1] > 0  # blurred, and what went past the end came back
    assert (y >= -1e-12).all()  # a non-negative kernel
    flat = torch.ones(3, K, dtype=torch.float64)
    assert torch.allclose(ins.gaussian_resolution(flat, STEP, torch.tensor([0.3, 1.0, 2.5])), flat, atol=1e-12)


def test_plural_scattering_conserves_area_on_the_grid():
    x = _spectra(5)
    t = torch.tensor([0.0, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    y = ins.plural_scattering(x, STEP, t)
    assert torch.allclose(y.sum(-1), x.sum(-1), rtol=1e-6, atol=0)
    assert torch.equal(y[0], x[0])  # t/lambda = 0: unchanged
    change = (y - x).abs().sum(-1)
    assert (change[1:-1] < change[2:]).all()  # thicker: more changed
    raw = ins.plural_scattering(x, STEP, t, renormalise=False)
    assert (raw.sum(-1)[1:] < x.sum(-1)[1:]).all()  # without renormalising, the part past the top is lost


def test_poisson_noise_conserves_area_in_expectation():
    x = _spectra(1).expand(4000, K).contiguous()
    g = torch.Generator().manual_seed(3)
    y = ins.poisson_noise(x, 1.0e5, g)
    # total counts are Poisson(1e5) per row: relative std 1/sqrt(4e8) = 5e-5 for the mean of 4000 rows
    assert abs(float(y.sum(-1).mean() / x[0].sum()) - 1.0) < 3e-4


def test_plasmon_loss_is_a_drude_peak_of_unit_area():
    ep, w = 25.0, 8.0
    p = ins.plasmon_loss(400000, 0.05, ep, w)  # 0..20 keV of losses
    tail = w * ep / (math.pi * 20000.0**2)  # the Drude E^-3 tail beyond 20 keV, relative to the area
    assert abs(p.sum() + tail - 1.0) < 1e-7
    e = np.arange(4000) * 0.05
    drude = e * w * ep**2 / ((e**2 - ep**2) ** 2 + (e * w) ** 2)
    assert abs(e[np.argmax(p[:4000])] - e[np.argmax(drude)]) <= 0.05
    assert abs(_fwhm(e, p[:4000]) - _fwhm(e, drude)) < 0.02 and abs(_fwhm(e, drude) - 7.94) < 0.02


# --- plural scattering physics -----------------------------------------------------------------


@pytest.mark.parametrize("t", [0.3, 1.0])
def test_a_delta_through_plural_scattering_gives_poisson_weights(t):
    ep, step, k, at = 25.0, 0.01, 9000, 500
    x = torch.zeros(1, k, dtype=torch.float64)
    x[0, at] = 1.0
    y = ins.plural_scattering(x, step, t, plasmon_ev=ep, plasmon_fwhm_ev=0.05, renormalise=False)[0].numpy()
    loss = (np.arange(k) - at) * step
    for n in range(3):
        window = (loss >= (n - 0.5) * ep) & (loss < (n + 0.5) * ep) if n else (loss >= -0.5 * ep) & (loss < 0.5 * ep)
        expected = math.exp(-t) * t**n / math.factorial(n)
        assert abs(y[window].sum() - expected) < 1e-3, (n, y[window].sum(), expected)
    assert y[at] == pytest.approx(math.exp(-t), abs=1e-6)  # the unscattered delta: the Drude loss vanishes at 0


def test_plural_scattering_is_the_poisson_series_of_self_convolutions():
    """FFT implementation against a direct sum of numpy convolutions on an explicitly extended axis."""
    x = _spectra(2).numpy()
    t = 0.7
    pad = 4 * K  # flat pre-edge extension below the grid
    p = ins.plasmon_loss(pad + K, STEP)
    low = np.zeros(pad + K)
    term = np.zeros(pad + K)
    term[0] = 1.0
    for n in range(30):
        low += math.exp(-t) * t**n / math.factorial(n) * term
        term = np.convolve(term, p)[: pad + K]
    for row in x:
        ext = np.concatenate([np.full(pad, row[0]), row])
        direct = np.convolve(ext, low)[pad : pad + K]
        # below the explicit extension the spectrum is missing: its share (the mass of low-loss beyond pad) is small
        fft = ins.plural_scattering(torch.from_numpy(row[None]), STEP, t, renormalise=False)[0].numpy()
        assert np.allclose(fft, direct, rtol=0, atol=2e-4 * row.mean())
        assert not np.allclose(fft, row, atol=1e-2)


# --- resolution --------------------------------------------------------------------------------


def test_a_gaussian_through_a_gaussian_has_the_quadrature_fwhm():
    step = 0.02
    e = np.arange(2001) * step
    for f_in, f_res in [(2.0, 1.5), (1.0, 2.5), (3.0, 0.3)]:
        g = np.exp(-0.5 * ((e - 20.0) / (f_in / ins.FWHM_PER_SIGMA)) ** 2)
        y = ins.gaussian_resolution(torch.from_numpy(g[None]), step, f_res)[0].numpy()
        assert abs(_fwhm(e, y) / math.hypot(f_in, f_res) - 1) < 1e-3, (f_in, f_res)


def test_resolution_adds_variance_exactly_on_the_channel_grid():
    e = np.arange(K) * STEP
    sigma_in = 2.5 / ins.FWHM_PER_SIGMA
    g = np.exp(-0.5 * ((e - 30.0) / sigma_in) ** 2)

    def variance(y):
        w = y / y.sum()
        m = (w * e).sum()
        return (w * (e - m) ** 2).sum()

    for fwhm in (0.3, 0.7, 2.5):  # narrower than the grid too: a sampled Gaussian kernel would fail at 0.3
        y = ins.gaussian_resolution(torch.from_numpy(g[None]), STEP, fwhm)[0].numpy()
        assert variance(y) == pytest.approx(variance(g) + (fwhm / ins.FWHM_PER_SIGMA) ** 2, rel=1e-6)


# --- noise, residual, windows --------------------------------------------------------------------


def test_poisson_noise_variance_times_counts_is_one_on_a_flat_spectrum():
    x = torch.ones(4000, K, dtype=torch.float64)
    counts = 1.0e4
    y = ins.poisson_noise(x, counts, torch.Generator().manual_seed(0))
    # var(y_i) = x_i sum(x) / counts: each point holds counts / K expected counts
    ratio = y.var(0) * counts / (x[0] * x[0].sum())
    assert abs(float(ratio.mean()) - 1.0) < 0.02
    assert float(ratio.std()) < 0.1  # every point, not just on average
    # the sampled counts are integers: y * counts / sum(x) is whole
    n = y * counts / K
    assert torch.allclose(n, n.round(), atol=1e-6)


def test_background_residual_form_and_size():
    x = _spectra(3)
    a = torch.tensor([0.05, -0.03, 0.02], dtype=torch.float64)
    y = ins.background_residual(x, STEP, a, torch.tensor([3.0, 1.0, 0.0]), torch.tensor([60.0, 500.0, 100.0]))
    res = y - x
    mean = x.mean(-1)
    assert torch.allclose(res[:, 0], a * mean)  # largest at the first energy: |a| times the mean
    assert torch.all(res.abs().max(-1).values <= a.abs() * mean + 1e-15)
    e = torch.arange(K, dtype=torch.float64) * STEP
    assert torch.allclose(res[0], a[0] * mean[0] * (1 + e / 60.0) ** -3.0)
    assert torch.allclose(res[2], torch.full((K,), float(a[2] * mean[2]), dtype=torch.float64))  # r = 0: a constant offset


def test_partial_window_is_what_reading_a_narrower_measurement_gives():
    channel = CHANNELS["Ni-L23-eels"]
    x = _spectra(50, seed=5)
    y, covered = ins.partial_window(x, 1.0, torch.Generator().manual_seed(1))
    for row, out, cov in zip(x.numpy(), y.numpy(), covered.numpy(), strict=True):
        idx = np.nonzero(cov)[0]
        assert np.all(np.diff(idx) == 1) and (idx[-1] - idx[0]) / (K - 1) >= 0.5 - 1e-12
        assert np.array_equal(out[cov], row[cov])
        narrow = Spectrum("Ni-L23-eels", channel.grid[idx], row[idx])
        assert np.allclose(normalise(channel, out), to_channel_grid(channel, narrow.energy, narrow.intensity))
        spectra_on_grids({"Ni-L23-eels": narrow})  # convert's grid mapping accepts it (>= 50 % coverage)
    assert covered.sum(-1).float().mean() < K  # something was cut
    same, all_covered = ins.partial_window(x, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(same, x) and all_covered.all()


# --- per-row draws ------------------------------------------------------------------------------


def test_draws_come_from_the_generator_only():
    x = _spectra(40).float()
    step = torch.full((40,), STEP)
    eels = torch.arange(40) % 2 == 0
    ranges = ins.InstrumentRanges(partial=0.5)
    state = torch.get_rng_state()
    a, ca = ins.instrument_rows(x, step, eels, ranges, torch.Generator().manual_seed(7))
    b, cb = ins.instrument_rows(x, step, eels, ranges, torch.Generator().manual_seed(7))
    c, _ = ins.instrument_rows(x, step, eels, ranges, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and torch.equal(ca, cb)
    assert not torch.allclose(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator untouched
    assert torch.allclose(a.mean(-1), torch.ones(40), atol=1e-5)  # the channel normalisation: unit mean
    draw = ranges.draw(eels, torch.Generator().manual_seed(0))
    assert ((draw.fwhm_ev >= 0.3) & (draw.fwhm_ev <= 2.5)).all()
    assert ((draw.counts >= 1e3) & (draw.counts <= 1e5)).all()
    assert (draw.residual.abs() <= 0.05).all()


def test_xas_rows_receive_no_plural_scattering():
    eels = torch.tensor([True, False, True, False])
    draw = ins.InstrumentRanges(thickness=[0.5, 1.0]).draw(eels, torch.Generator().manual_seed(0))
    assert (draw.thickness[~eels] == 0).all() and (draw.thickness[eels] >= 0.5).all()
    only_plural = ins.InstrumentRanges(fwhm_ev=[0.0, 0.0], thickness=[1.0, 1.0], counts=None, residual=0.0)
    x = _spectra(4)
    y, _ = ins.instrument_rows(x, torch.full((4,), STEP), eels, only_plural, torch.Generator().manual_seed(0))
    assert torch.allclose(y[~eels], x[~eels], rtol=1e-12, atol=0)
    assert ((y[eels] - x[eels]).abs().max(-1).values > 1e-2).all()


# --- Instrument (one spectrum, numpy) -------------------------------------------------------------


def test_instrument_applies_to_one_spectrum():
    channel = "O-K-eels"
    e = CHANNELS[channel].grid
    y = _spectra(1)[0].numpy()
    inst = ins.Instrument(fwhm_ev=1.2, thickness=0.4, counts=2e4, residual=0.02)
    out = inst.apply(e, y, channel=channel, generator=5)
    assert isinstance(out, np.ndarray) and out.shape == y.shape and out.dtype == np.float64
    assert np.array_equal(out, inst.apply(e, y, channel=channel, generator=5))
    blurred = ins.Instrument(fwhm_ev=1.2).apply(e, y)
    assert np.allclose(blurred, ins.gaussian_resolution(torch.from_numpy(y[None]), 0.5, 1.2)[0].numpy())
    with pytest.raises(ValueError, match="generator"):
        inst.apply(e, y)
    with pytest.raises(ValueError, match="EELS"):
        inst.apply(CHANNELS["O-K-xas"].grid, y, channel="O-K-xas", generator=0)
    with pytest.raises(ValueError, match="uniform"):
        ins.Instrument(fwhm_ev=1.0).apply(np.r_[e[:10], e[11:]], np.r_[y[:10], y[11:]])


def test_core_hole_width_is_recorded_not_applied():
    assert ins.core_hole_width("Ni", "K") == pytest.approx(1.44, abs=0.01)  # Krause & Oliver 1979
    record = ins.Instrument(fwhm_ev=0.5).record("Ni-L23-eels")
    assert set(record["core_hole_fwhm_eV"]) == {"L3", "L2"}
    assert record["core_hole_fwhm_eV"]["L3"] == ins.core_hole_width("Ni", "L3") > 0
    assert record["fwhm_ev"] == 0.5 and record["core_hole_applied_by"] == "FEFF10"


# --- config and training ------------------------------------------------------------------------


def test_instrument_section_is_off_by_default_and_typed():
    assert AugmentConfig().instrument.enabled is False
    cfg = from_dict(AugmentConfig, {"instrument": {"enabled": True, "fwhm_ev": [0.5, 1], "counts": None}})
    assert cfg.instrument.enabled and cfg.instrument.fwhm_ev == [0.5, 1.0] and cfg.instrument.counts is None
    with pytest.raises(InputError, match="fwhm"):
        from_dict(AugmentConfig, {"instrument": {"fwhm": [0.5, 1.0]}})
    with pytest.raises(InputError, match="fwhm_ev"):
        from_dict(InstrumentAugmentConfig, {"fwhm_ev": [2.0, 1.0]})


def test_the_shipped_model_still_loads():
    from gnnspec.models.factory import load_model, model_path, read_checkpoint

    model = load_model(None)
    assert not model.training
    stored = read_checkpoint(model_path(None)).get("train_config") or {}
    if "augment" in stored:  # a stored train config without an instrument section reads as "off"
        assert from_dict(AugmentConfig, stored["augment"]).instrument.enabled is False


def test_training_runs_with_the_instrument_on(tmp_path, monkeypatch):
    from gnnspec.train import augment
    from gnnspec.train.loop import run_training

    seen = []
    real = augment.instrument_rows

    def spy(x, step, eels, ranges, generator):
        seen.append(int(eels.sum()))
        return real(x, step, eels, ranges, generator)

    monkeypatch.setattr(augment, "instrument_rows", spy)
    data = write_synthetic_lmdb(tmp_path / "data", splits=("train",) * 3 + ("val",))
    cfg = smoke_config(
        data,
        tmp_path / "run",
        epochs=2,
        log__figures_every=0,
        generated__enabled=False,
        align__epochs=1,
        augment__instrument__enabled=True,
        augment__instrument__partial=0.3,
        model__encoder__coverage=True,  # the partial windows reach the encoder as its coverage plane
    )
    summary = run_training(cfg)
    assert not summary["interrupted"]
    assert seen and sum(seen) > 0  # joint and alignment steps augmented, EELS rows among them
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == summary["step"] > 0 and math.isfinite(ckpt["best_metric"])
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["train_config"]["augment"]["instrument"]["enabled"] is True
    assert ckpt["model"]["encoder.tokenizer.conv.0.weight"].shape[1] == 2  # intensity and coverage planes
    assert any(c.endswith("eels") for c in DEFAULT_CHANNELS)
