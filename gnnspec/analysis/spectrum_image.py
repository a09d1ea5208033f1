"""Spectrum images: every pixel of a STEM-EELS scan through calibration, edge processing and inference.

``map_spectrum_image`` reads a core-loss spectrum image (``.dm3``/``.dm4``, rosettasciio) and,
optionally, the zero-loss spectrum image of the same scan. Pixels may be binned (``bin`` x
``bin`` blocks summed, the last partial block kept). Per pixel:

1. energy calibration: the centre of that pixel's zero-loss peak (a Gaussian fit,
   :func:`gnnspec.measured.alignment.fit_zero_loss`) is set to 0 eV, and its FWHM (the energy
   resolution there) is recorded;
2. every edge of the default EELS channels the pixel holds is cut, background-subtracted, aligned
   and normalised (:func:`gnnspec.measured.edges.cut_survey`, as ``gnnspec convert --survey``);
3. inference with the calibration and support stored in the checkpoint (:func:`gnnspec.analysis.calibration.infer_with_uncertainty`):
   element content, defect probabilities, their spread, and the support verdict (embedding and
   spectrum space, per channel).

A pixel that fails (no edge found, too few counts) keeps NaN values and its reason. Outputs, in
``out``: ``map.npz`` (arrays shaped like the binned scan: ``element_content [..., 5]``,
``defects [..., 2]``, ``defects_std``, ``in_distribution``, ``zero_loss_centre_eV``,
``zero_loss_fwhm_eV`` and per channel ``correlation/<channel>``), ``map.json`` (per pixel, every
number and note) and ``map.png`` (profiles along the scan, with the ADF signal when given).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.errors import InputError


def _binned(data: np.ndarray, b: int) -> np.ndarray:
    """Sum ``b`` x ``b`` blocks of the navigation axes of ``data [..., E]`` (1 or 2 navigation axes)."""
    if b <= 1:
        return data
    for axis in range(data.ndim - 1):
        n = data.shape[axis]
        starts = np.arange(0, n, b)
        data = np.add.reduceat(data, starts, axis=axis)
    return data


def map_spectrum_image(
    si_path: str | Path,
    model: Any,
    model_path: str | Path,
    zero_loss: str | Path | None = None,
    bin: int = 1,
    adf: str | Path | None = None,
    out: str | Path | None = None,
) -> dict:
    """Run every (binned) pixel of a spectrum image through convert and infer; see the module docstring."""
    from gnnspec.analysis.calibration import infer_with_uncertainty
    from gnnspec.measured.alignment import fit_zero_loss
    from gnnspec.measured.edges import cut_survey
    from gnnspec.measured.readers import read_dm_spectrum_image

    if bin < 1:
        raise InputError(f"--bin must be at least 1, got {bin}")
    energy, data, meta = read_dm_spectrum_image(si_path)
    if data.ndim < 2:
        raise InputError(f"{si_path}: a single spectrum, not a spectrum image; use gnnspec convert")
    data = _binned(data, bin)
    if zero_loss is not None:
        zlp_energy, zlp_data, _ = read_dm_spectrum_image(zero_loss)
        zlp_data = _binned(zlp_data, bin)
        if zlp_data.shape[:-1] != data.shape[:-1]:
            raise InputError(f"{zero_loss}: {zlp_data.shape[:-1]} pixels after binning, but {si_path} has {data.shape[:-1]}")
    shape = data.shape[:-1]
    elements, defects = list(model.cfg.content_elements), list(model.cfg.defects)
    arrays: dict[str, np.ndarray] = {
        "element_content": np.full((*shape, len(elements)), np.nan),
        "element_content_std": np.full((*shape, len(elements)), np.nan),
        "defects": np.full((*shape, len(defects)), np.nan),
        "defects_std": np.full((*shape, len(defects)), np.nan),
        "in_distribution": np.zeros(shape, dtype=bool),
        "zero_loss_centre_eV": np.full(shape, np.nan),
        "zero_loss_fwhm_eV": np.full(shape, np.nan),
    }
    pixels = []
    for index in np.ndindex(*shape):
        where = f"{si_path} pixel {index}"
        record: dict = {"pixel": list(index)}
        e, fwhm = energy, None
        try:
            if zero_loss is not None:
                fit = fit_zero_loss(zlp_energy, zlp_data[index], source=f"{zero_loss} pixel {index}")
                e, fwhm = energy - fit.centre, fit.fwhm
                arrays["zero_loss_centre_eV"][index], arrays["zero_loss_fwhm_eV"][index] = fit.centre, fit.fwhm
            edges, skipped = cut_survey(e, data[index], source=where, modality="eels")
            spectra = {name: edge.spectrum() for name, edge in edges.items() if name in model.cfg.channels}
            if not spectra:
                raise InputError(f"{where}: no edge of the model's channels found ({'; '.join(skipped.values()) or 'none in range'})")
            # the pixel's own zero-loss FWHM is the resolution its support check compares at
            result = infer_with_uncertainty(model, model_path, spectra, resolution=None if fwhm is None else {name: fwhm for name in spectra})
        except InputError as exc:
            record["error"] = str(exc)
            pixels.append(record)
            continue
        arrays["element_content"][index] = [result["element_content"][el] for el in elements]
        arrays["defects"][index] = [result["defects"][d] for d in defects]
        if result.get("uncertainty"):
            arrays["element_content_std"][index] = [result["uncertainty"]["element_content_std"][el] for el in elements]
            arrays["defects_std"][index] = [result["uncertainty"]["defects_std"][d] for d in defects]
        support = result.get("support", {})
        arrays["in_distribution"][index] = bool(support.get("in_distribution", False))
        for name, verdict in support.get("channels", {}).items():
            arrays.setdefault(f"correlation/{name}", np.full(shape, np.nan))[index] = verdict["nearest_training_correlation"]
        record.update({"channels": sorted(spectra), "skipped": skipped, **{k: result[k] for k in ("element_content", "defects", "uncertainty", "support") if k in result}})
        pixels.append(record)
    summary = {
        "source": str(si_path),
        "zero_loss": None if zero_loss is None else str(zero_loss),
        "bin": bin,
        "shape": list(shape),
        "navigation": meta["navigation"],
        "model": str(model_path),
        "pixels_inferred": int(sum("error" not in p for p in pixels)),
        "pixels_in_distribution": int(arrays["in_distribution"].sum()),
        "pixels": pixels,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "map.npz", **arrays)
        (out / "map.json").write_text(json.dumps(summary, indent=1) + "\n")
        _profile_figure(arrays, elements, defects, summary, out / "map.png", adf)
    return {"arrays": arrays, **summary}


def _profile_figure(arrays: dict, elements: list[str], defects: list[str], summary: dict, path: Path, adf: str | Path | None) -> None:
    """Profiles along the scan's last axis, one line per row: content, defects with their spread, support."""
    from matplotlib.figure import Figure

    content = arrays["element_content"].reshape(-1, *arrays["element_content"].shape[-2:])
    prob, spread = (arrays[k].reshape(-1, *arrays[k].shape[-2:]) for k in ("defects", "defects_std"))
    ok = arrays["in_distribution"].reshape(-1, arrays["in_distribution"].shape[-1])
    x = np.arange(content.shape[1])
    panels = 3 + (adf is not None)
    fig = Figure(figsize=(8.0, 2.3 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for row in range(content.shape[0]):
        for j, el in enumerate(elements):
            axes[0].plot(x, content[row, :, j], marker=".", lw=1, label=el if row == 0 else None, color=f"C{j}")
        for j, d in enumerate(defects):
            axes[1].plot(x, prob[row, :, j], marker=".", lw=1, label=d if row == 0 else None, color=f"C{j}")
            axes[1].fill_between(x, prob[row, :, j] - spread[row, :, j], prob[row, :, j] + spread[row, :, j], alpha=0.2, color=f"C{j}")
        for j, name in enumerate(k.split("/", 1)[1] for k in arrays if k.startswith("correlation/")):
            corr = arrays[f"correlation/{name}"].reshape(-1, content.shape[1])[row]
            axes[2].plot(x, corr, marker=".", lw=1, label=name if row == 0 else None, color=f"C{j}")
        axes[2].plot(x[ok[row]], np.ones(int(ok[row].sum())), "k^", ms=5, label="in distribution" if row == 0 else None)
    axes[0].set_ylabel("atom fraction")
    axes[1].set_ylabel("probability (+- spread)")
    axes[2].set_ylabel("nearest training\ncorrelation")
    axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=7, ncol=5)
    axes[1].legend(fontsize=7)
    if adf is not None:
        from rsciio.digitalmicrograph import file_reader

        image = np.asarray(file_reader(str(adf))[0]["data"], dtype=float).reshape(-1, content.shape[1] * summary["bin"])
        axes[3].plot(np.arange(image.shape[1]) / summary["bin"], image.T, lw=1)
        axes[3].set_ylabel("ADF (counts)")
    axes[-1].set_xlabel(f"pixel along the scan (binned by {summary['bin']})")
    fig.suptitle(f"{Path(summary['source']).name}: {summary['pixels_inferred']} pixels inferred, {summary['pixels_in_distribution']} in distribution", fontsize=9)
    fig.savefig(path, dpi=100)
