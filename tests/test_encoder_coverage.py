"""Partial windows reach the encoder as a coverage mask: which grid energies a spectrum measured.

A measurement narrower than its channel grid is read with flat extrapolation; with
``encoder.coverage`` the encoder is told which energies are missing and reads nothing there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnspec.channels import CHANNEL_NAMES, CHANNELS
from gnnspec.models.factory import build_model
from gnnspec.spectra import Spectrum, grid_coverage
from tests.model_fixtures import tiny_model_config


def coverage_model(on: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    encoder = {**tiny_model_config().encoder.__dict__, "coverage": on}
    return build_model(tiny_model_config(encoder=encoder)).double().eval()


def half_window(name: str, rng: np.random.Generator) -> Spectrum:
    """A measurement of ``name`` over the first half of its grid (finer sampling than the grid)."""
    grid = CHANNELS[name].grid
    energy = np.linspace(grid[0] - 2.0, grid[0] + 0.5 * (grid[-1] - grid[0]), 200)
    return Spectrum(name, energy, 1.0 + 0.3 * rng.random(energy.size))


def test_grid_coverage_marks_the_measured_energies():
    rng = np.random.default_rng(0)
    part = half_window("Mn-K-xas", rng)
    grid = CHANNELS["Mn-K-xas"].grid
    cov = grid_coverage({"Mn-K-xas": part, "O-K-eels": np.ones(grid.size)})
    row = cov["Mn-K-xas"]
    assert np.array_equal(row, grid <= part.energy[-1] + 1e-6)
    assert 0.45 < row.mean() < 0.55 and row[0] and not row[-1]
    assert cov["O-K-eels"].all() and set(cov) == {"Mn-K-xas", "O-K-eels"}  # a value already on the grid covers it all
    shifted = grid_coverage({"Mn-K-xas": part}, shift={"Mn-K-xas": 5.0})["Mn-K-xas"]
    assert shifted.sum() > row.sum()  # the shift moves the window up the grid


def test_encoder_reads_coverage_and_nothing_outside_the_window():
    model = coverage_model(True)
    c = model.cfg.channels.index("Ni-L23-eels")
    x = torch.ones(1, len(model.cfg.channels), model.cfg.n_energy, dtype=torch.float64)
    x[0, c] += 0.2 * torch.rand(model.cfg.n_energy, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.zeros(1, len(model.cfg.channels), dtype=torch.bool)
    mask[0, c] = True
    cov = torch.ones_like(x, dtype=torch.bool)
    cov[0, c, 60:] = False
    with torch.no_grad():
        full = model.encode_spectra(x, mask)
        part = model.encode_spectra(x, mask, coverage=cov)
        y = x.clone()
        y[0, c, 60:] = 5.0  # anything outside the window
        part_other = model.encode_spectra(y, mask, coverage=cov)
        full_other = model.encode_spectra(y, mask)
    assert not torch.allclose(full, part)  # the coverage plane reaches the embedding
    assert torch.allclose(part, part_other, atol=1e-12)  # values outside the window do not
    assert not torch.allclose(full, full_other)
    with pytest.raises(ValueError, match="coverage has shape"):
        model.encode_spectra(x, mask, coverage=cov[:, :, :10])


def test_encoder_without_the_option_ignores_coverage():
    model = coverage_model(False)
    x = torch.ones(2, len(model.cfg.channels), model.cfg.n_energy, dtype=torch.float64)
    mask = torch.ones(2, len(model.cfg.channels), dtype=torch.bool)
    cov = torch.zeros_like(x, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model.encode_spectra(x, mask), model.encode_spectra(x, mask, coverage=cov))
    assert model.coverage_tensor({"Ni-L23-eels": np.ones(model.cfg.n_energy)}) is None


def test_infer_reports_the_window_and_passes_it_to_the_encoder():
    rng = np.random.default_rng(2)
    part = {"Mn-K-xas": half_window("Mn-K-xas", rng)}
    with_cov, without = coverage_model(True), coverage_model(False)
    a, b = with_cov.infer(part), without.infer(part)
    assert a["coverage_used"] and not b["coverage_used"]
    assert 0.45 < a["grid_coverage"]["Mn-K-xas"] < 0.55 and a["grid_coverage"] == b["grid_coverage"]
    cov = with_cov.coverage_tensor(part)
    assert cov.shape == (1, len(with_cov.cfg.channels), with_cov.cfg.n_energy)
    assert not bool(cov[0, with_cov.cfg.channels.index("Mn-K-xas")].all()) and bool(
        cov[0, with_cov.cfg.channels.index("O-K-eels")].all()
    )
    x, mask = with_cov.spectra_tensor(part)
    with torch.no_grad():
        told = with_cov.encode_spectra(x, mask, coverage=cov)[0].numpy()
        untold = with_cov.encode_spectra(x, mask)[0].numpy()
    assert np.allclose(with_cov.embed_spectra(part), told) and not np.allclose(told, untold)
    # on-grid values lose the window; the coverage passed beside them brings it back
    grids = {"Mn-K-xas": x[0, with_cov.cfg.channels.index("Mn-K-xas")].numpy()}
    assert np.allclose(with_cov.embed_spectra(grids, coverage=grid_coverage(part)), told)
    assert np.allclose(with_cov.embed_spectra(grids), untold)
    assert with_cov.infer(grids, coverage=grid_coverage(part))["grid_coverage"] == a["grid_coverage"]


def test_augment_with_coverage_marks_the_drawn_windows():
    from gnnspec.instrument import InstrumentRanges
    from gnnspec.train.augment import augment_spectra, augment_with_coverage, eels_channels, grid_steps
    from gnnspec.train.config import AugmentConfig, InstrumentAugmentConfig

    channels = list(CHANNEL_NAMES)
    x = 1.0 + torch.rand(6, len(channels), 121, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.rand(6, len(channels), generator=torch.Generator().manual_seed(1)) < 0.5
    mask[:, 0] = True
    steps, eels = grid_steps(channels), eels_channels(channels)
    cfg = AugmentConfig(noise=0.0, instrument=InstrumentAugmentConfig(enabled=True, partial=0.5))  # noise would blur "flat"
    y, cov = augment_with_coverage(x, mask, steps, cfg, torch.Generator().manual_seed(3), eels=eels)
    assert torch.equal(y, augment_spectra(x, mask, steps, cfg, torch.Generator().manual_seed(3), eels=eels))
    assert cov[~mask].all()  # absent channels are untouched
    cut = ~cov.all(-1)
    assert bool(cut.any()) and not bool((cut & ~mask).any())
    for b, c in cut.nonzero().tolist():  # a window is contiguous, and y is flat outside it
        inside = cov[b, c].nonzero().squeeze(-1)
        lo, hi = int(inside[0]), int(inside[-1])
        assert int(inside.numel()) == hi - lo + 1
        assert torch.all(y[b, c, :lo] == y[b, c, lo]) and torch.all(y[b, c, hi + 1 :] == y[b, c, hi])
    _, all_cov = augment_with_coverage(x, mask, steps, AugmentConfig(), torch.Generator().manual_seed(3))
    assert all_cov.all()
    assert InstrumentRanges().partial == 0.0  # partial windows only where a config asks for them


def test_channel_support_compares_a_partial_window_on_its_measured_energies():
    from gnnspec.analysis.support import ChannelSupport

    rng = np.random.default_rng(4)
    e = np.linspace(0.0, 1.0, 121)

    def edge(centre):
        return 1.0 + 4.0 * np.exp(-((e - centre) ** 2) / 0.01) + 0.5 * (e > centre) + 0.3 * np.exp(-((e - 0.7) ** 2) / 0.01)

    support = ChannelSupport.fit(
        {"Ni-L23-eels": edge(0.2 + 0.03 * rng.standard_normal((300, 1)))},
        {"Ni-L23-eels": edge(0.2 + 0.03 * rng.standard_normal((100, 1)))},
    )
    query = edge(0.2)
    assert support.check({"Ni-L23-eels": query})["Ni-L23-eels"]["in_distribution"]
    window = e <= 0.5
    flat = np.where(window, query, query[window][-1])  # what reading a half-window measurement gives
    whole = support.check({"Ni-L23-eels": flat})["Ni-L23-eels"]
    part = support.check({"Ni-L23-eels": flat}, coverage={"Ni-L23-eels": window})["Ni-L23-eels"]
    assert part["nearest_training_correlation"] > whole["nearest_training_correlation"]
    assert not whole["in_distribution"] and part["in_distribution"] and "61 measured grid energies" in part["resolution"]
    garbage = np.where(window, rng.random(121), query)  # foreign where it was measured stays foreign
    assert not support.check({"Ni-L23-eels": garbage}, coverage={"Ni-L23-eels": window})["Ni-L23-eels"]["in_distribution"]
