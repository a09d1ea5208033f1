"""gnnspec map on the real STEM-EELS line scan (21 x 2 pixels, O K and Mn/Co/Ni L2,3 at every pixel)."""

import json
from pathlib import Path

import numpy as np
import pytest

from gnnspec.cli import main

SI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc" / "spectrum_images"
pytestmark = pytest.mark.skipif(not SI.is_dir(), reason="shared/data/experimental_eels_nmc is absent")


def _check_map(out: Path, shape: tuple[int, int], log: str) -> None:
    n = shape[0] * shape[1]
    arrays = np.load(out / "map.npz")
    assert arrays["element_content"].shape == (*shape, 5) and arrays["defects"].shape == (*shape, 2)
    assert np.allclose(arrays["element_content"].sum(-1), 1.0)
    fwhm = arrays["zero_loss_fwhm_eV"]
    assert np.all((fwhm > 1.0) & (fwhm < 4.0))  # the measured energy resolution, pixel by pixel
    summary = json.loads((out / "map.json").read_text())
    assert summary["pixels_inferred"] == n
    channels = {c for p in summary["pixels"] for c in p["channels"]}
    assert {"O-K-eels", "Mn-L23-eels"} <= channels
    # the verdict per pixel is the support check's: both checks must pass
    for p in summary["pixels"]:
        s = p["support"]
        assert s["in_distribution"] == (s["embedding_in_distribution"] and all(c["in_distribution"] for c in s["channels"].values()))
    assert (out / "map.png").stat().st_size > 10_000
    assert f"{n} of {n} pixels inferred" in log


def _argv():
    return ["map", str(SI / "tm_o_spectrum_image.dm3"), "--zero-loss", str(SI / "zero_loss_spectrum_image.dm3"), "--adf", str(SI / "tm_o_adf_image.dm3")]


def test_binned_pixels_of_the_line_scan_are_calibrated_inferred_and_judged(tmp_path, capsys):
    """3 x 3 binning: 7 pixels of the real line scan through the whole chain (every pixel: the slow test)."""
    pytest.importorskip("rsciio")
    assert main([*_argv(), "--bin", "3", "--out", str(tmp_path / "binned")]) == 0
    _check_map(tmp_path / "binned", (1, 7), capsys.readouterr().out)
    assert main(["map", str(SI / "tm_o_adf_image.dm3"), "--out", str(tmp_path / "x")]) == 2  # an image, not a spectrum image


@pytest.mark.slow
def test_every_pixel_of_the_line_scan_is_calibrated_inferred_and_judged(tmp_path, capsys):
    pytest.importorskip("rsciio")
    assert main([*_argv(), "--out", str(tmp_path / "map")]) == 0
    _check_map(tmp_path / "map", (2, 21), capsys.readouterr().out)
