"""gnnspec map on the real STEM-EELS line scan (21 x 2 pixels, O K and Mn/Co/Ni L2,3 at every pixel)."""

import json
from pathlib import Path

import numpy as np
import pytest

from gnnspec.cli import main

SI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc" / "spectrum_images"
pytestmark = pytest.mark.skipif(not SI.is_dir(), reason="shared/data/experimental_eels_nmc is absent")


def test_every_pixel_of_the_line_scan_is_calibrated_inferred_and_judged(tmp_path, capsys):
    pytest.importorskip("rsciio")
    out = tmp_path / "map"
    argv = ["map", str(SI / "tm_o_spectrum_image.dm3"), "--zero-loss", str(SI / "zero_loss_spectrum_image.dm3"), "--adf", str(SI / "tm_o_adf_image.dm3")]
    assert main([*argv, "--out", str(out)]) == 0
    arrays = np.load(out / "map.npz")
    assert arrays["element_content"].shape == (2, 21, 5) and arrays["defects"].shape == (2, 21, 2)
    assert np.allclose(arrays["element_content"].sum(-1), 1.0)
    fwhm = arrays["zero_loss_fwhm_eV"]
    assert np.all((fwhm > 1.0) & (fwhm < 4.0))  # the measured energy resolution, pixel by pixel
    summary = json.loads((out / "map.json").read_text())
    assert summary["pixels_inferred"] == 42
    channels = {c for p in summary["pixels"] for c in p["channels"]}
    assert {"O-K-eels", "Mn-L23-eels"} <= channels
    # the verdict per pixel is the support check's: both checks must pass
    for p in summary["pixels"]:
        s = p["support"]
        assert s["in_distribution"] == (s["embedding_in_distribution"] and all(c["in_distribution"] for c in s["channels"].values()))
    assert (out / "map.png").stat().st_size > 10_000
    assert "42 of 42 pixels inferred" in capsys.readouterr().out
    assert main(["map", str(SI / "tm_o_spectrum_image.dm3"), "--bin", "2", "--out", str(tmp_path / "binned")]) == 0
    assert np.load(tmp_path / "binned" / "map.npz")["defects"].shape == (1, 11, 2)
    assert main(["map", str(SI / "tm_o_adf_image.dm3"), "--out", str(tmp_path / "x")]) == 2  # an image, not a spectrum image
