"""The robustness benchmark's instrument pass over environment spectra and its scoring."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gnnspec.bench.robustness import SETTINGS, clean_test_set, degrade, render, score
from gnnspec.channels import CHANNELS, DEFAULT_CHANNELS
from gnnspec.data.environment_set import EnvironmentSet


def _envs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    channels = tuple(DEFAULT_CHANNELS)
    k = len(CHANNELS[channels[0]].grid)
    y = np.zeros((n, len(channels), k))
    mask = rng.random((n, len(channels))) < 0.6
    mask[:, channels.index("O-K-eels")] = True
    mask[:, channels.index("O-K-xas")] = True
    for i, c in zip(*np.nonzero(mask)):
        g = np.arange(k)
        row = 1 / (1 + np.exp(-(g - 30) / 2.0)) + 2.0 * np.exp(-0.5 * ((g - 40) / 1.5) ** 2) + 0.05
        y[i, c] = row / row.mean()
    content = rng.dirichlet(np.ones(5), n)
    defects = (rng.random((n, 2)) < 0.5).astype(float)
    return EnvironmentSet(y=y, mask=mask, content=content, defects=defects, sid=np.arange(n), channels=channels)


def test_clean_setting_changes_nothing():
    envs = _envs()
    fwhm, t, counts, window = SETTINGS["clean"]
    clean = degrade(envs, fwhm, t, counts, window=window)
    assert np.allclose(clean.y, envs.y, rtol=1e-12, atol=0) and clean.coverage is None


def test_degrade_broadens_scatters_eels_only_and_keeps_unit_mean():
    envs = _envs()
    eels, xas = envs.channels.index("O-K-eels"), envs.channels.index("O-K-xas")
    plural = degrade(envs, 0.0, 0.9, None)
    assert np.allclose(plural.y[:, xas], envs.y[:, xas])  # no plural scattering on XAS
    assert not np.allclose(plural.y[:, eels], envs.y[:, eels])
    broad = degrade(envs, 2.4, 0.0, None)
    assert broad.y[:, xas].max() < envs.y[:, xas].max()  # the peak is lower once broadened
    noisy = degrade(envs, 1.0, 0.5, 1e3, seed=3)
    present = envs.mask
    assert np.allclose(noisy.y[present].mean(-1), 1.0) and np.all(noisy.y[~present] == 0)
    assert np.array_equal(degrade(envs, 1.0, 0.5, 1e3, seed=3).y, noisy.y)  # seeded
    assert not np.array_equal(degrade(envs, 1.0, 0.5, 1e3, seed=4).y, noisy.y)


def test_score_and_render_on_a_small_model():
    from test_library_helpers import tiny_model

    model = tiny_model().double().eval()
    envs = _envs(12)
    lib = _envs(20, seed=1)
    torch.manual_seed(0)
    lib_emb = torch.nn.functional.normalize(torch.randn(20, model.cfg.embedding.dim, dtype=torch.float64), dim=-1).numpy()
    r = score(model, lib, lib_emb, envs)
    assert r["queries"] == 12 and 0.0 <= r["hit@1"] <= r["hit@5"] <= 1.0
    assert 0.0 <= r["auroc_o_vacancy"] <= 1.0 and r["content_mae"] > 0
    text = render({"spectra": "FEFF, dataset base tier", "settings": {"clean": {**r}}}, "test")
    assert "| clean |" in text and "(FEFF, dataset base tier)" in text and f"{r['hit@1']:.3f}" in text


def test_partial_window_is_flat_outside_and_reaches_a_coverage_encoder():
    from gnnspec.models.factory import build_model
    from tests.model_fixtures import tiny_model_config

    envs = _envs(8)
    part = degrade(envs, 0.0, 0.0, None, seed=2, window=0.6)
    k = envs.y.shape[-1]
    assert part.coverage.shape == envs.y.shape and part.coverage[~envs.mask].all()
    kept = part.coverage[envs.mask].sum(-1)
    assert np.all(kept == 1 + round(0.6 * (k - 1)))  # one window of 60 % of the grid per present row
    for i, c in zip(*np.nonzero(envs.mask)):
        cov, row = part.coverage[i, c], part.y[i, c]
        lo, hi = np.nonzero(cov)[0][[0, -1]]
        assert np.all(row[:lo] == row[lo]) and np.all(row[hi:] == row[hi])  # flat extrapolation
        assert np.isclose(row.mean(), 1.0)
    with pytest.raises(ValueError, match="window"):
        degrade(envs, 0.0, 0.0, None, window=0.0)

    torch.manual_seed(0)
    encoder = {**tiny_model_config().encoder.__dict__, "coverage": True}
    model = build_model(tiny_model_config(encoder=encoder)).double().eval()
    lib = _envs(10, seed=1)
    lib_emb = torch.nn.functional.normalize(torch.randn(10, model.cfg.embedding.dim, dtype=torch.float64), dim=-1).numpy()
    told, blind = score(model, lib, lib_emb, part), score(model, lib, lib_emb, replace(part, coverage=None))
    assert told["content_mae"] != blind["content_mae"]  # the encoder reads the window it is given


@pytest.mark.parametrize("name", list(SETTINGS))
def test_settings_are_physical(name):
    fwhm, t, counts, window = SETTINGS[name]
    assert 0 <= fwhm <= 2.5 and 0 <= t <= 1 and (counts is None or counts >= 1e2) and 0.5 <= window <= 1


def test_the_clean_set_holds_the_spectra_the_encoder_learned(tmp_path):
    """FEFF's base tier for an encoder trained on it; the forward model's spectra of the same
    environments for one aligned on a forward-model tier."""
    from model_fixtures import write_synthetic_lmdb
    from test_library_helpers import tiny_model

    from gnnspec.data.dataset import LMDBStructureDataset

    data = write_synthetic_lmdb(tmp_path / "data", splits=("test",))
    model = tiny_model()
    ds = LMDBStructureDataset(data, "test", cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels)
    feff, what = clean_test_set(model, ds)
    assert what == "FEFF, dataset base tier" and np.array_equal(feff.y, EnvironmentSet.from_dataset(ds).y)
    model.encoder_spectra_tier = "fast"
    simulated, what = clean_test_set(model, ds)
    assert what == "forward model, tier fast" and simulated.y.shape == feff.y.shape
    assert np.array_equal(simulated.content, feff.content) and not np.allclose(simulated.y[feff.mask], feff.y[feff.mask])
