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
