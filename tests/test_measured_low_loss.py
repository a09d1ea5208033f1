"""The low-loss spectrum: zero-loss FWHM and log-ratio t/lambda (exspy), recorded by convert."""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA
from fixtures.synthetic import write_msa

from gnnspec.cli import main
from gnnspec.errors import InputError
from gnnspec.measured.low_loss import measure_low_loss

EELS = SHARED_DATA / "experimental_eels_nmc"


def low_loss(energy, t, fwhm=1.2, ep=22.0, width=6.0):
    """Zero loss plus the Poisson series of a Gaussian plasmon at thickness ``t`` (t/lambda)."""
    from math import factorial

    step = energy[1] - energy[0]
    out = np.zeros_like(energy)
    for n in range(8):
        centre, sigma = n * ep, np.hypot(fwhm / 2.3548, np.sqrt(n) * width / 2.3548)
        peak = np.exp(-0.5 * ((energy - centre) / sigma) ** 2)
        out += np.exp(-t) * t**n / factorial(n) * peak / (peak.sum() * step)
    return 1e6 * out + 1.0


@pytest.mark.parametrize("t", [0.3, 0.9])
def test_log_ratio_recovers_a_known_thickness(tmp_path, t):
    e = np.arange(-20.0, 300.0, 0.3)
    write_msa(tmp_path / "ll.msa", e + 1.5, low_loss(e, t))  # zero loss off by 1.5 eV: it is centred first
    r = measure_low_loss(tmp_path / "ll.msa")
    assert r["thickness_t_over_lambda"] == pytest.approx(t, rel=0.05)
    assert r["zero_loss_fwhm_eV"] == pytest.approx(1.2, rel=0.1) and r["zero_loss_centre_eV"] == pytest.approx(1.5, abs=0.1)


def test_bad_low_loss_files_are_refused(tmp_path):
    e = np.arange(400.0, 700.0, 0.3)
    write_msa(tmp_path / "core.msa", e, 100 + np.exp(-((e - 540) / 5) ** 2))
    with pytest.raises(InputError, match="core.msa: .*no zero-loss peak"):
        measure_low_loss(tmp_path / "core.msa")
    e = np.arange(-20.0, 15.0, 0.3)
    write_msa(tmp_path / "short.msa", e, low_loss(e, 0.5))
    with pytest.raises(InputError, match="short.msa: the spectrum ends at .* plasmon region"):
        measure_low_loss(tmp_path / "short.msa")


@pytest.mark.skipif(not EELS.is_dir(), reason="shared measured EELS not present")
def test_convert_records_resolution_and_thickness_of_the_shared_nmc_eels(tmp_path):
    out = tmp_path / "nmc.json"
    args = ["convert", f"{EELS / 'oxygen_edge.msa'}:O-K-eels", "--zero-loss", str(EELS / "zero_loss.msa"), "--low-loss", str(EELS / "zero_loss.msa")]
    assert main([*args, "--out", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]
    inst = meta["channels"]["O-K-eels"]["instrument"]
    assert 2.2 < inst["zero_loss_fwhm_ev"] < 2.6 and 0.7 < inst["thickness_t_over_lambda"] < 1.1  # measured: 2.41 eV, 0.93
    assert main(["infer", str(out), "--out", str(tmp_path / "a.json")]) == 0
    answer = json.loads((tmp_path / "a.json").read_text())
    assert answer["resolution"]["O-K-eels"]["fwhm_ev"] == pytest.approx(inst["zero_loss_fwhm_ev"])


def test_fourier_ratio_deconvolution_recovers_single_scattering():
    """An edge convolved with a known low loss (t/lambda 0.8) comes back as the single-scattering
    edge at the zero-loss resolution; the plasmon replicas are gone."""
    from gnnspec.measured.low_loss import LowLoss, fourier_ratio_deconvolve

    step, fwhm = 0.3, 1.2
    e_ll = np.arange(-20.0, 300.0, step)
    ll = low_loss(e_ll, 0.8, fwhm=fwhm) - 1.0
    e = np.arange(600.0, 720.0, step)
    single = (e > 640) * (1 + 3 * np.exp(-0.5 * ((e - 643) / 1.0) ** 2)) * np.exp(-(e - 640).clip(0) / 60)
    zero = int(np.argmin(abs(e_ll)))
    plural = np.convolve(single, ll / ll.sum(), mode="full")[zero : zero + len(single)]
    g = np.exp(-0.5 * (np.arange(-30, 31) * step / (fwhm / 2.3548)) ** 2)
    target = np.convolve(single, g / g.sum(), mode="same")
    got = fourier_ratio_deconvolve(e, plural, LowLoss(e_ll, ll, "ll.msa"), fwhm)

    def cos(a, b):
        sel = (e > 630) & (e < 700)
        return float(a[sel] @ b[sel] / np.linalg.norm(a[sel]) / np.linalg.norm(b[sel]))

    assert cos(plural, target) < 0.9 and cos(got, target) > 0.998
    assert got.shape == plural.shape


def test_deconvolve_needs_a_low_loss(tmp_path, capsys):
    e = np.arange(400.0, 700.0, 0.3)
    write_msa(tmp_path / "core.msa", e, 1e4 * (e / 400) ** -3 + 100 * (e > 532))
    assert main(["convert", f"{tmp_path / 'core.msa'}:O-K-eels", "--deconvolve", "--out", str(tmp_path / "o.json")]) != 0
    assert "needs the sample's low-loss spectrum: give --low-loss" in capsys.readouterr().err


@pytest.mark.skipif(not EELS.is_dir(), reason="shared measured EELS not present")
def test_convert_deconvolves_the_shared_nmc_eels(tmp_path):
    """On the shared NMC EELS (t/lambda 0.93) deconvolution lowers the O K and Mn L2,3 continuum
    relative to the near-edge peaks and records that plural scattering was removed."""
    from gnnspec.spectra import read_spectra

    inputs = [f"{EELS / 'oxygen_edge.msa'}:O-K-eels", f"{EELS / 'Mn_edge.msa'}:Mn-L23-eels"]
    common = ["--zero-loss", str(EELS / "zero_loss.msa"), "--low-loss", str(EELS / "zero_loss.msa")]
    assert main(["convert", *inputs, *common, "--out", str(tmp_path / "raw.json")]) == 0
    assert main(["convert", *inputs, *common, "--deconvolve", "--out", str(tmp_path / "frd.json")]) == 0
    raw, _ = read_spectra(tmp_path / "raw.json")
    frd, meta = read_spectra(tmp_path / "frd.json")
    for name in ("O-K-eels", "Mn-L23-eels"):
        assert meta["channels"][name]["instrument"]["plural_scattering"] == "removed by Fourier-ratio deconvolution"
        assert any("Fourier-ratio deconvolution" in note for note in meta["channels"][name]["notes"])
        tail = slice(-40, None)  # the last 12 eV of the window, against the whole window's mean
        assert frd[name].intensity[tail].mean() / frd[name].intensity.mean() < 0.9 * raw[name].intensity[tail].mean() / raw[name].intensity.mean()
    assert meta["low_loss"]["deconvolved"] is True
