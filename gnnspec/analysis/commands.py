"""``gnnspec infer``, ``query``, ``map``, ``explain``, ``attribute``, ``evaluate`` and ``calibrate``: what a trained model says and how well."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gnnspec.errors import InputError
from gnnspec.library.consensus import RANKINGS
from gnnspec.spectra import quantification_argument

_MODEL_HELP = "model checkpoint (.pt); default: the shipped model"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from gnnspec.assets import DEFAULT_MODEL

    q = sub.add_parser(
        "query",
        help="nearest library environments of measured or simulated spectra",
        description="Embed SPECTRA (gnnspec.spectra/1: any subset of channels, absolute eV) with the library's model and return "
        "the k nearest environments with their composition, defects and structure, and per query the support check "
        "of gnnspec infer (is the query like the model's training spectra; needs a calibrated model).",
    )
    q.add_argument("library", metavar="LIB", help="library folder")
    q.add_argument(
        "spectra",
        metavar="SPECTRA",
        help="a spectra .json file, or a batch: a folder of .json files or a .jsonl file (a record's optional "
        "'quantification' goes to models that read one)",
    )
    q.add_argument("-k", type=int, default=5, help="hits per query (default 5)")
    q.add_argument(
        "--rank",
        choices=RANKINGS,
        default="cosine",
        help="cosine: nearest first (default); consensus: the --pool nearest re-ranked by how many of them share each "
        "entry's labels (most probable labels first; hits gain 'support')",
    )
    q.add_argument(
        "--pool", type=int, default=None, help="nearest entries the consensus ranking weighs (default: sqrt of LIB's size)"
    )
    q.add_argument(
        "--centre",
        default=None,
        metavar="ELEMENT",
        help="only environments centred on an atom of this element (for example Ni: which Ni environments explain the spectra)",
    )
    q.add_argument(
        "--resolution",
        type=float,
        default=None,
        metavar="EV",
        help="measurement resolution (Gaussian FWHM, eV) for channels whose file records none (as gnnspec infer)",
    )
    q.add_argument("--model", default=None, help=_MODEL_HELP + "; its hash must match the library's")
    q.add_argument("--out", default=None, help="write the hits as JSON here (default: print JSON to stdout)")
    q.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="PNG of each hit's forward-predicted spectra beside the query, per channel (batch: PNG-{id}.png)",
    )
    q.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "infer",
        help="element content and defect probabilities from spectra",
        description="Inverse model: reads gnnspec.spectra/1 JSON (any subset of channels). With what gnnspec calibrate "
        "stores in the checkpoint: ensemble spread, calibrated defect probabilities and the support check "
        "(embedding and spectrum space, per channel).",
    )
    p.add_argument("spectra", help="gnnspec.spectra/1 JSON file")
    p.add_argument("--model", help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument(
        "--quantification",
        type=quantification_argument,
        help="elemental quantification of the sample, ELEMENT=AMOUNT,... (ratios matter; overrides the file's)",
    )
    p.add_argument(
        "--resolution",
        type=float,
        default=None,
        metavar="EV",
        help="energy resolution of the measurement (Gaussian FWHM, eV) for channels whose file does not record one "
        "(convert records the zero-loss FWHM of EELS); the support check compares at it",
    )
    p.add_argument("--out", required=True, help="output JSON")
    p.set_defaults(func=cmd_infer)

    m = sub.add_parser(
        "map",
        help="every pixel of an EELS spectrum image through convert and infer",
        description="Per pixel of a core-loss spectrum image (.dm3/.dm4): zero-loss calibration from the zero-loss spectrum "
        "image, every edge cut as by convert --survey, inference with uncertainty and the support check. Writes map.npz "
        "(arrays shaped like the scan), map.json (per pixel) and map.png (profiles) to DIR.",
    )
    m.add_argument("spectrum_image", help="core-loss spectrum image (.dm3/.dm4)")
    m.add_argument("--zero-loss", default=None, help="zero-loss spectrum image of the same scan (per-pixel energy calibration)")
    m.add_argument("--bin", type=int, default=1, help="sum N x N pixel blocks first (default 1)")
    m.add_argument("--adf", default=None, help="ADF image recorded with the scan, plotted beside the profiles")
    m.add_argument("--model", help=f"checkpoint (default {DEFAULT_MODEL})")
    m.add_argument("--out", required=True, help="output folder")
    m.set_defaults(func=cmd_map)

    e = sub.add_parser(
        "explain",
        help="per-atom contributions to a predicted spectrum",
        description="Which atoms make which features: each atom's contribution spectrum to site N's spectrum in channel C, "
        "a table of shares (contributions.csv) and a figure (contributions.png) in DIR.",
    )
    e.add_argument("structure", help="structure file")
    e.add_argument("--site", type=int, required=True, help="absorbing site (0-based)")
    e.add_argument("--channel", required=True, help="channel, e.g. Ni-L3-eels")
    e.add_argument("--model", default=None, help=_MODEL_HELP)
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(func=_explain)

    a = sub.add_parser(
        "attribute",
        help="energy-resolved attributions of defect and content predictions",
        description="Integrated gradients of the defect and element-content predictions over each input channel: "
        "which parts of which edge reveal a vacancy. Writes attributions.json and attributions.png to DIR.",
    )
    a.add_argument("spectra", help="gnnspec.spectra/1 JSON of one environment")
    a.add_argument("--model", default=None, help=_MODEL_HELP)
    a.add_argument("--steps", type=int, default=32, help="integration steps (default 32)")
    a.add_argument(
        "--quantification",
        type=quantification_argument,
        metavar="EL=AMOUNT,...",
        help="elemental quantification of the sample, held fixed along the path (overrides the file's own)",
    )
    a.add_argument("--out", required=True, help="output folder")
    a.set_defaults(func=_attribute)

    v = sub.add_parser(
        "evaluate",
        help="metrics of a trained model on a dataset split",
        description="Per-channel R^2/MSE/cosine of site spectra, element-content MAE, defect AUROC.",
    )
    v.add_argument("model", help="checkpoint (.pt)")
    v.add_argument("--data", metavar="LMDB", help="dataset folder (default: the one the model was trained on)")
    v.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="split to evaluate (default test)")
    v.add_argument("--batch-size", type=int, default=4, help="supercells per batch")
    v.add_argument("--out", metavar="JSON", help="write the metrics here as JSON")
    v.set_defaults(func=_evaluate)

    c = sub.add_parser(
        "calibrate",
        help="fit the uncertainty ensemble and calibrate defect probabilities",
        description="Fit a bootstrap ensemble of property heads on the spectrum embeddings of the training split, "
        "calibrate defect probabilities by temperature scaling on the validation split, report the calibration error. "
        "Stores the ensemble and the training support inside the model file (used by `gnnspec infer`) and writes a JSON report.",
    )
    c.add_argument("--model", default=None, help=_MODEL_HELP)
    c.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    c.add_argument("--members", type=int, default=5, help="ensemble members (default 5)")
    c.add_argument("--out", default=None, help="report JSON (default: MODEL.calibration.json)")
    c.set_defaults(func=_calibrate)


def _load(path: str | None):
    from gnnspec.models.factory import load_model, model_path

    return load_model(path), model_path(path)


def _evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset split; print and optionally write JSON."""
    import torch

    from gnnspec.models.factory import load_model, read_checkpoint
    from gnnspec.train.commands import metrics_text
    from gnnspec.train.data import load_split
    from gnnspec.train.metrics import evaluate, write_metrics

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    model = load_model(args.model)
    data = args.data or read_checkpoint(args.model).get("train_config", {}).get("data") or "datasets/nmc_feff10_fast"
    if not Path(data).exists():
        raise InputError(f"{data}: no such dataset folder (pass --data)")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    split = None if args.split == "all" else args.split
    graphs = load_split(data, split, model.cfg.backbone.cutoff, model.cfg.channels)
    if len(graphs) == 0:
        raise InputError(f"{data}: no structures in split {args.split!r}")
    metrics = evaluate(model, graphs, args.batch_size)
    metrics["model"], metrics["data"], metrics["split"] = str(args.model), str(data), args.split
    print(metrics_text(metrics, args.split))
    if args.out:
        write_metrics(metrics, args.out)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gnnspec.analysis.explain import explain_site, write_explanation

    model, _ = _load(args.model)
    result = explain_site(model, args.structure, args.site, args.channel)
    files = write_explanation(result, args.out)
    top = sorted(result["atoms"], key=lambda a: -abs(a["share"]))[:5]
    print(f"site {args.site} {args.channel}: largest shares " + ", ".join(f"{a['element']}{a['index']} {a['share']:+.2f}" for a in top))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _attribute(args: argparse.Namespace) -> int:
    from gnnspec.analysis.attributions import integrated_gradients, plot_attributions
    from gnnspec.spectra import on_grid_by_channel, read_spectra

    model, _ = _load(args.model)
    spectra, _ = read_spectra(args.spectra)
    on_grid = on_grid_by_channel(spectra, source=args.spectra)
    result = integrated_gradients(model, on_grid, steps=args.steps, quantification=args.quantification or spectra.quantification)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "channels": result["channels"],
        "quantification_used": result["quantification_used"],
        "targets": {t: {"value": v["value"], "delta": v["delta"], "attribution": v["attribution"].tolist()} for t, v in result["targets"].items()},
    }
    (out / "attributions.json").write_text(json.dumps(data))
    plot_attributions(result, out / "attributions.png")
    print(f"wrote {out / 'attributions.json'} and {out / 'attributions.png'} ({', '.join(result['channels'])})")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from gnnspec.analysis.calibration import calibrate_model

    model, path = _load(args.model)
    report = calibrate_model(model, path, data=args.data, members=args.members, out=args.out)
    for name, r in report["defects"].items():
        print(f"{name}: temperature {r['temperature']:.2f}, ECE {r['ece_before']:.3f} -> {r['ece_after']:.3f} (validation, n={r['n']})")
    print(f"stored the ensemble and the training support in {path}; wrote {report['report_file']}")
    return 0


# -- infer -------------------------------------------------------------------------------
def cmd_infer(args) -> int:
    """Element content and defect probabilities from a gnnspec.spectra/1 file (mapped onto the channel grids)."""
    from gnnspec.analysis.calibration import infer_with_uncertainty
    from gnnspec.models.energy_scale import encoder_tier, energy_shifts
    from gnnspec.models.factory import load_model, model_path
    from gnnspec.spectra import grid_coverage, on_grid_by_channel, read_spectra

    spectra, meta = read_spectra(args.spectra)
    quantification = args.quantification or spectra.quantification
    model = load_model(args.model)
    tier = encoder_tier(model_path(args.model))
    # calibrated (absolute) energies onto the FEFF scale the encoder learned (gnnspec.edge_offsets)
    shifts, energy_record = energy_shifts(meta, list(spectra), tier)
    on_grid = on_grid_by_channel(spectra, shift=shifts, source=str(args.spectra))
    # with the model's uncertainty ensemble (gnnspec calibrate) beside it: ensemble means, their
    # spread and temperature-calibrated defect probabilities; otherwise the model's own heads
    resolution = query_resolution(meta, list(spectra), args.resolution)
    result = infer_with_uncertainty(
        model,
        model_path(args.model),
        on_grid,
        quantification,
        resolution={c: r["fwhm_ev"] for c, r in resolution.items() if r["fwhm_ev"]},
        coverage=grid_coverage(spectra, shift=shifts),  # a partial window: the energies it measured
        thickness={c: r["thickness"] for c, r in resolution.items() if r.get("thickness")},
    )
    result["energy_scale"] = {"encoder_tier": tier, "channels": energy_record}
    result["resolution"] = resolution
    result["edges"] = query_edges(model, on_grid, shifts, tier, grid_coverage(spectra, shift=shifts), str(args.spectra))
    out = Path(args.out)
    if not out.parent.exists():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Nearest library environments of each query, with the query's support verdict."""
    from gnnspec.library.library import Library
    from gnnspec.library.query import is_batch, load_query_records, on_encoder_scale, plot_results, run_queries
    from gnnspec.models.energy_scale import encoder_tier
    from gnnspec.models.factory import model_path
    from gnnspec.spectra import grid_coverage, on_grid_by_channel

    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    lib = Library.open(args.library, model=args.model)
    checkpoint = model_path(args.model)
    batch = is_batch(args.spectra)
    # calibrated (absolute) energies onto the FEFF scale the encoder learned, as infer does, per record
    records = load_query_records(args.spectra)
    queries, energy_scales = on_encoder_scale(records, encoder_tier(checkpoint))
    results = run_queries(lib, queries, args.k, args.rank, args.pool, args.centre)
    tier = encoder_tier(checkpoint)
    for res, scale, (qid, spectra), (_, _, meta) in zip(results, energy_scales, queries, records):
        res["energy_scale"] = scale
        res["resolution"] = query_resolution(meta, list(spectra), args.resolution)
        res["support"] = query_support(lib.model, checkpoint, spectra, res["quantification"], res["resolution"])
        shifts = {c: r["shift_eV"] for c, r in scale["channels"].items() if r["shift_eV"]}  # already applied to spectra
        res["edges"] = query_edges(lib.model, on_grid_by_channel(spectra, source=qid), shifts, tier, grid_coverage(spectra), f"{args.spectra} {qid}")
    keys = ("hits", "channels_used", "quantification", "centre", "energy_scale", "resolution", "support", "edges")
    payload = results if batch else {key: results[0][key] for key in keys}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1) + "\n")
        for res in results:
            for rank, hit in enumerate(res["hits"], start=1):
                where = "bulk" if hit["site"] < 0 else f"{hit['element']} site {hit['site']}"
                comp = " ".join(f"{el}{v:.2f}" for el, v in hit["composition"].items() if v)
                sup = f"  support {hit['support']:.2f}" if "support" in hit else ""
                print(
                    f"{res['id']}  #{rank}  score {hit['score']:.4f}{sup}  id {hit['id']}  structure {hit['structure_id']} {where}  {comp}  defects {hit['defects']}"
                )
            support = res["support"]
            if support is not None and not support["in_distribution"]:
                print(f"{res['id']}  out of distribution: {support.get('why', 'the spectrum embedding is unlike every training one')}")
        print(f"wrote {out}")
    else:
        print(json.dumps(payload, indent=1))
    if args.plot:
        for path in plot_results(lib, queries, results, args.plot, batch):
            print(f"wrote {path}", file=sys.stderr if not args.out else sys.stdout)
    return 0


def query_edges(model, on_grid: dict, shifts: dict[str, float], tier: str, coverage: dict, label: str) -> dict[str, dict]:
    """A query's K edges against the edges the model learned (:func:`gnnspec.models.predicted_edges.measured_edges`),
    a stderr line for each outside them; ``on_grid`` on FEFF's scale after ``shifts``."""
    from gnnspec.models.predicted_edges import KEY, measured_edges

    calibration = (getattr(model, "forward_ensemble_record", None) or {}).get(KEY)
    edges = measured_edges(on_grid, shifts, calibration, tier, coverage)
    for name, e in edges.items():
        if e.get("inside_training_range") is False:
            print(f"warning: {label}: {name} edge at {e['edge_eV']:.1f} eV (FEFF {tier} scale) is {e['why']}", file=sys.stderr)
    return edges


def query_support(model, path, spectra, quantification: dict | None, resolution: dict[str, dict]) -> dict | None:
    """The support verdict of one query (:func:`gnnspec.analysis.calibration.spectra_support`), as
    ``gnnspec infer`` reports it; ``None`` for a model without training support."""
    from gnnspec.analysis.calibration import spectra_support
    from gnnspec.library.query import spectra_grids
    from gnnspec.spectra import grid_coverage

    fwhm = {c: r["fwhm_ev"] for c, r in resolution.items() if r["fwhm_ev"]}
    thickness = {c: r["thickness"] for c, r in resolution.items() if r.get("thickness")}
    return spectra_support(model, path, spectra_grids(spectra), quantification, fwhm, coverage=grid_coverage(spectra), thickness=thickness)


def query_resolution(meta: dict, channels: list[str], fallback_ev: float | None) -> dict[str, dict]:
    """Per channel, the measurement's resolution (Gaussian FWHM, eV) and where it comes from: the
    file's ``meta.channels[c].instrument.zero_loss_fwhm_ev`` or ``meta.zero_loss.fwhm_eV`` (written
    by ``gnnspec convert --zero-loss``) for EELS channels, else ``fallback_ev`` (``--resolution``);
    and ``thickness``, the t/lambda ``convert --low-loss`` recorded for an EELS channel whose plural
    scattering it did not remove (None otherwise), with which the support check measures its
    validation spectra."""
    from gnnspec.channels import CHANNELS

    if fallback_ev is not None and not fallback_ev > 0:
        raise InputError(f"--resolution must be a positive FWHM in eV, got {fallback_ev}")
    per_channel = meta.get("channels") if isinstance(meta.get("channels"), dict) else {}
    zlp = (meta.get("zero_loss") or {}).get("fwhm_eV") if isinstance(meta.get("zero_loss"), dict) else None
    out = {}
    for name in channels:
        inst = (per_channel.get(name) or {}).get("instrument") or {}
        inst = inst if isinstance(inst, dict) else {}
        recorded = inst.get("zero_loss_fwhm_ev")
        if CHANNELS[name].modality == "eels" and (recorded or zlp):
            out[name] = {"fwhm_ev": float(recorded or zlp), "source": "the file's zero-loss FWHM"}
        elif fallback_ev is not None:
            out[name] = {"fwhm_ev": float(fallback_ev), "source": "--resolution"}
        else:
            out[name] = {"fwhm_ev": None, "source": "not stated: compared with FEFF spectra as computed"}
        t = inst.get("thickness_t_over_lambda")
        kept = inst.get("plural_scattering") == "recorded, not removed"
        out[name]["thickness"] = float(t) if CHANNELS[name].modality == "eels" and t and kept else None
    return out


def cmd_map(args) -> int:
    """Map a spectrum image (see :mod:`gnnspec.analysis.spectrum_image`)."""
    from gnnspec.analysis.spectrum_image import map_spectrum_image
    from gnnspec.models.factory import load_model, model_path

    model = load_model(args.model)
    result = map_spectrum_image(args.spectrum_image, model, model_path(args.model), args.zero_loss, args.bin, args.adf, args.out)
    print(
        f"{result['pixels_inferred']} of {int(np.prod(result['shape']))} pixels inferred, "
        f"{result['pixels_in_distribution']} in distribution; wrote {args.out}/map.npz, map.json, map.png"
    )
    return 0
