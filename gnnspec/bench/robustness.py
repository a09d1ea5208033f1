"""How the spectrum encoder holds up when its input looks measured.

The test split's environment spectra (on the channel grids: those the encoder learned from, the
forward model's in ``encoder_spectra_tier`` for an encoder aligned on them, else FEFF's base
tier; :func:`clean_test_set`) pass through fixed
instruments of :mod:`gnnspec.instrument` (resolution FWHM in eV, EELS thickness t/lambda,
counts, and the measured part of the grid: a window of that fraction of each channel's range at
a random position, flat outside it as ``gnnspec convert`` reads a narrow scan; each row
renormalised to unit mean, the channel rule) and the encoder's answers are scored against the
environments' labels, exactly as for clean spectra. An encoder that reads a coverage mask
(``encoder.coverage``) is given the window; one without reads the flat-extrapolated spectra alone:

* defect AUROC (O vacancy, Li/Ni antisite) and element-content MAE from the property heads;
* retrieval hit@1 / hit@5 of the spectrum embedding against a library of the train and
  validation environments' structure embeddings (label match: same defect labels, element
  content within 0.05; :func:`gnnspec.bench.retrieval.label_match`).

Noise draws come from one seeded generator per setting, so a rerun gives the same numbers.
Run alone: ``python -m gnnspec.bench.robustness --out benchmarks/robustness.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gnnspec.channels import CHANNELS
from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.instrument import gaussian_resolution, partial_window, plural_scattering, poisson_noise

#: name -> (FWHM eV, t/lambda on EELS channels, counts or None, measured fraction of the grid).
SETTINGS: dict[str, tuple[float, float, float | None, float]] = {
    "clean": (0.0, 0.0, None, 1.0),
    "0.5 eV, t/lambda 0.3, 1e5 counts": (0.5, 0.3, 1e5, 1.0),
    "1.0 eV, t/lambda 0.5, 1e4 counts": (1.0, 0.5, 1e4, 1.0),
    "2.4 eV, t/lambda 0.9, 1e3 counts": (2.4, 0.9, 1e3, 1.0),
    "clean, 60 % of the grid": (0.0, 0.0, None, 0.6),
    "1.0 eV, t/lambda 0.5, 1e4 counts, 60 % of the grid": (1.0, 0.5, 1e4, 0.6),
}


def degrade(envs: EnvironmentSet, fwhm_ev: float, thickness: float, counts: float | None, seed: int = 0, window: float = 1.0) -> EnvironmentSet:
    """A copy of ``envs`` with every present spectrum measured by one instrument, renormalised to unit mean.

    ``window < 1``: every present spectrum keeps only a window of that fraction of its grid
    (:func:`gnnspec.instrument.partial_window`), and the copy's ``coverage`` says which energies."""
    if not 0 < window <= 1:
        raise ValueError(f"window must be a fraction of the grid in (0, 1], got {window}")
    y = torch.tensor(envs.y, dtype=torch.float64)
    coverage = np.ones(envs.y.shape, dtype=bool)
    gen = torch.Generator().manual_seed(seed)
    for c, name in enumerate(envs.channels):
        rows = np.nonzero(envs.mask[:, c])[0]
        if len(rows) == 0:
            continue
        ch = CHANNELS[name]
        x = y[rows, c]
        if fwhm_ev > 0:
            x = gaussian_resolution(x, ch.step, fwhm_ev)
        if thickness > 0 and ch.modality == "eels":
            x = plural_scattering(x, ch.step, thickness)
        if counts is not None:
            x = poisson_noise(x, counts, gen)
        if window < 1:
            x, covered = partial_window(x, 1.0, gen, (window, window))
            coverage[rows, c] = covered.numpy()
        y[rows, c] = x / x.mean(-1, keepdim=True).clamp(min=1e-12)
    return replace(envs, y=y.numpy(), coverage=coverage if window < 1 else None)


@torch.no_grad()
def score(model, lib: EnvironmentSet, lib_emb: np.ndarray, query: EnvironmentSet) -> dict:
    """Defect AUROC, content MAE and retrieval of the encoder on ``query`` (spectra alone, with
    ``query.coverage`` where set)."""
    from gnnspec.bench.retrieval import label_match, spectrum_embeddings
    from gnnspec.labels import DEFECTS
    from gnnspec.scoring import property_metrics

    ok = query.mask.any(1)
    emb = spectrum_embeddings(model, query, coverage=query.coverage)
    content, defects = model.property_answers(torch.tensor(emb, dtype=next(model.parameters()).dtype))
    out = property_metrics(content[ok], query.content[ok], defects[ok], query.defects[ok], DEFECTS)
    r = label_match(lib, lib_emb, query, emb)
    out.update({"hit@1": r["hit@1"], "hit@5": r["hit@5"], "queries": r["queries"]})
    return out


def robustness(model, data: str) -> dict:
    """Every :data:`SETTINGS` row on the test split of ``data``, against a train + val library."""
    from gnnspec.bench.retrieval import structure_embeddings
    from gnnspec.data.dataset import LMDBStructureDataset

    ds = {s: LMDBStructureDataset(data, s, cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels) for s in ("train", "val", "test")}
    lib = EnvironmentSet.concat([EnvironmentSet.from_dataset(ds["train"]), EnvironmentSet.from_dataset(ds["val"])])
    lib_emb = np.concatenate([structure_embeddings(model, ds["train"]), structure_embeddings(model, ds["val"])])
    test, spectra = clean_test_set(model, ds["test"])
    return {"data": data, "split": "test", "spectra": spectra, "settings": robustness_table(model, lib, lib_emb, test)}


def clean_test_set(model, test_ds) -> tuple[EnvironmentSet, str]:
    """The test environments with the spectra the encoder learned from, and their description:
    the forward model's in ``model.encoder_spectra_tier`` when the encoder was aligned on them
    (FEFF ran that tier on a few sites only), else the dataset's FEFF base tier."""
    from gnnspec.models.environment_table import SIMULATED, encoder_learned_tier, encoder_simulator, simulated_set

    tier = encoder_learned_tier(model)
    if tier is None:
        return EnvironmentSet.from_dataset(test_ds), "FEFF, dataset base tier"

    return simulated_set(model, test_ds, tier), f"{SIMULATED[encoder_simulator(model)]}, tier {tier}"


def robustness_table(model, lib: EnvironmentSet, lib_emb: np.ndarray, test: EnvironmentSet) -> dict[str, dict]:
    """:func:`score` of ``test`` through every :data:`SETTINGS` instrument (setting ``k`` draws with seed ``k``)."""
    rows = {}
    for k, (name, (fwhm, t, counts, window)) in enumerate(SETTINGS.items()):
        measured = degrade(test, fwhm, t, counts, seed=k, window=window)
        rows[name] = {"fwhm_ev": fwhm, "thickness": t, "counts": counts, "window": window, **score(model, lib, lib_emb, measured)}
    return rows


def render(result: dict, caption: str) -> str:
    lines = [
        "# The encoder on measured-looking spectra",
        "",
        f"*{caption}. Method: `gnnspec/bench/robustness.py` (test-split environment spectra ({result.get('spectra', 'FEFF')}) through fixed instruments of "
        "`gnnspec/instrument.py`; plural scattering on EELS channels only; partial windows at a random position, "
        "the coverage mask given to an encoder that reads one; spectra alone, no quantification).*",
        "",
        "| instrument | O vacancy AUROC | antisite AUROC | content MAE | hit@1 | hit@5 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in result["settings"].items():
        lines.append(f"| {name} | {r['auroc_o_vacancy']:.3f} | {r['auroc_antisite']:.3f} | {r['content_mae']:.3f} | {r['hit@1']:.3f} | {r['hit@5']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--out", default="benchmarks/robustness.md")
    args = p.parse_args(argv)

    from gnnspec.analysis.calibration import training_data
    from gnnspec.models.factory import load_model, model_path

    model = load_model(args.model)
    data = args.data or training_data(model_path(args.model))  # a shipped or a fresh run's checkpoint
    result = robustness(model, data)
    from gnnspec.bench import current_commit

    commit = current_commit()
    Path(args.out).write_text(render(result, f"python -m gnnspec.bench.robustness at commit {commit}, model {model_path(args.model).name}"))
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
