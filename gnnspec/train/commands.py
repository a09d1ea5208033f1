"""Command-line parts: ``gnnspec train | ensemble`` (``predict`` lives with the model in
:mod:`gnnspec.models.commands`; ``evaluate`` and ``infer`` with the analysis commands).

:func:`add_parsers` adds the two subcommands to an ``argparse`` subparsers object; each sets
``func`` to a handler that takes the parsed ``args`` and returns an exit code (0 on success,
130 when training was interrupted). Handlers raise :class:`gnnspec.errors.InputError` for bad
input. Several processes: ``torchrun --nproc_per_node N -m gnnspec train CONFIG``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnnspec.errors import InputError

#: Epochs of ``gnnspec ensemble --realign`` per encoder unless ``--epochs`` says otherwise.
REALIGN_EPOCHS = 30


def add_parsers(subparsers) -> None:
    """Add ``train`` and ``ensemble`` to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train the joint model from a YAML config (torchrun for several GPUs)",
        description="Train forward model, spectrum encoder and property heads together.",
    )
    p.add_argument("config", help="training YAML (see train_configs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from its last.pt")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default: the config's run_dir, else runs/<config name>)")
    p.add_argument("--data", metavar="PATH", help="gnnspec LMDB dataset folder (overrides the config's data)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config entry, VALUE in YAML (repeatable): --set model.tiers=[scf] --set align.epochs=0",
    )
    p.set_defaults(func=cmd_train)

    add_ensemble_parser(subparsers)
    r = subparsers.add_parser(
        "release",
        help="a training checkpoint as a model to use and share (training state dropped)",
        description="Write best.pt of a run as a released model: weights, config, channels and attached "
        "calibration kept; the training record under 'trained'; optimizer and resume state dropped.",
    )
    r.add_argument("checkpoint", help="a run's best.pt (or last.pt)")
    r.add_argument("--out", required=True, help="the released model file (.pt)")
    r.set_defaults(func=cmd_release)


def add_ensemble_parser(subparsers) -> None:
    """``gnnspec ensemble``: an ensemble of independently trained encoders inside the checkpoint."""
    p = subparsers.add_parser(
        "ensemble",
        help="ensembles inside a checkpoint: spectrum encoders (trained here, resumable) or forward models (--forward-from)",
        description="Encoders (default): re-initialise and retrain the model's embedding side (structure projection, spectrum "
        "encoder, property heads) with the alignment stage from N-1 further seeds, backbone and forward head frozen; member 0 "
        "is the model's own. The spread is calibrated on validation and the ensemble is written into the checkpoint, member by "
        "member: rerun to resume. gnnspec infer reports it. Forward models (--forward-from RUN.pt ...): the forward side of "
        "other training runs of the same channels and tiers joins the model's own; predict and explain then give the member "
        "mean with a spread calibrated on validation.",
    )
    p.add_argument("model", help="checkpoint (.pt) to add the ensemble to (rewritten in place)")
    p.add_argument("--members", type=int, default=5, help="members including the model's own encoder (default 5, at least 3)")
    p.add_argument("--epochs", type=int, default=None, help="alignment epochs per member (default: the model's own training)")
    p.add_argument("--data", metavar="LMDB", help="dataset (default: the one the model was trained on)")
    p.add_argument(
        "--forward-from",
        nargs="+",
        metavar="RUN_PT",
        help="trained checkpoints whose forward side (backbone, spectra head) join the model's as forward members "
        "(replaces the model's forward ensemble; the encoder ensemble is untouched)",
    )
    p.add_argument(
        "--keep-members",
        action="store_true",
        help="with --forward-from: keep the checkpoint's present forward members and add the named runs to them",
    )
    p.add_argument(
        "--drop-members",
        nargs="+",
        metavar="SOURCE",
        help="remove the forward members with these source names (as this command prints them, e.g. seed3/best.pt); "
        "the others stay, the runs of --forward-from join them, and the linear heads are refitted",
    )
    p.add_argument(
        "--linear-heads",
        action="store_true",
        help="fit each forward model's linear tier heads (a ridge map from its base-tier output to each higher tier, "
        "alpha chosen on validation) and recalibrate the spread; with or without --forward-from",
    )
    p.add_argument(
        "--realign",
        action="store_true",
        help="continue the alignment of every encoder in the checkpoint (its own and the encoder ensemble's) on the spectra "
        f"of its forward ensemble and linear heads, as gnnspec predict gives them ({REALIGN_EPOCHS} epochs unless --epochs; "
        "resumable); then run gnnspec calibrate again",
    )
    p.add_argument(
        "--edge-spread",
        action="store_true",
        help="calibrate only the spread of the forward models' edge positions (the transition metals' K edges) on "
        "validation, the rest of the forward ensemble kept (done by --forward-from and --linear-heads as well)",
    )
    p.add_argument(
        "--skill",
        action="store_true",
        help="score only the channel skill (each channel's R^2 against FEFF on the test split, for the forward ensemble "
        "and the own forward side; gnnspec predict reports it), the rest of the forward ensemble kept (done by "
        "--forward-from and --linear-heads as well)",
    )
    p.add_argument("--lr", type=float, default=None, help="with --realign: peak learning rate (default: the model's own alignment's)")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="with --realign: re-initialise each encoder from its seed first instead of continuing from its trained weights",
    )
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    from gnnspec.models.factory import load_checkpoint, read_checkpoint
    from gnnspec.train.align import recorded_alignment, recorded_alignment_data
    from gnnspec.train.ensemble import build_ensemble

    if not args.realign and (args.lr is not None or args.from_scratch):
        raise InputError("--lr and --from-scratch set up a realignment: add --realign")
    if args.realign and (args.forward_from or args.linear_heads):
        raise InputError("--realign runs on its own: attach the forward models and linear heads first, then realign")
    if args.realign:
        from gnnspec.train.realign import realign, summary_lines

        record = realign(args.model, REALIGN_EPOCHS if args.epochs is None else args.epochs, args.data, lr=args.lr, from_scratch=args.from_scratch)
        print("\n".join([f"{args.model}:", *summary_lines(record), "the calibration and support were fitted on the old embeddings: run gnnspec calibrate"]))
        return 0
    if args.skill:
        if args.forward_from or args.linear_heads or args.edge_spread:
            raise InputError("--skill scores the present forward ensemble on its own: --forward-from and --linear-heads score it as well")
        return channel_skill(args)
    if args.edge_spread:
        if args.forward_from or args.linear_heads or args.realign:
            raise InputError("--edge-spread calibrates the present forward ensemble on its own: --forward-from and --linear-heads calibrate it as well")
        return edge_spread(args)
    if args.keep_members and not args.forward_from:
        raise InputError("--keep-members adds the runs of --forward-from to the present members: name them")
    if args.forward_from or args.linear_heads or args.drop_members:
        return forward_ensemble(args)
    if args.members < 3:
        raise InputError(f"--members must be at least 3 (the spread is calibrated leaving one out), got {args.members}")
    trained, align, augment = recorded_alignment(read_checkpoint(args.model), args.model)
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {args.epochs}")
        align.epochs = args.epochs
    model = load_checkpoint(args.model)
    splits, pool = recorded_alignment_data(model, trained, align, args.data or trained["data"], args.model)
    record = build_ensemble(model, args.model, splits, align, augment, args.members, generated=pool)
    print(
        f"{args.model}: {len(record['members'])} encoders; spread k = {record['k_content']:.2f} (content), "
        f"{record['k_defects']:.2f} (defects); unscaled coverage {record['coverage_content_unscaled']:.2f} / "
        f"{record['coverage_defects_unscaled']:.2f}; true content inside the spread for {record['truth_inside_content']:.0%} of validation outputs"
    )
    return 0


def edge_spread(args) -> int:
    """``gnnspec ensemble MODEL --edge-spread``: calibrate and print the edge spread."""
    from gnnspec.models.forward_ensemble import attach_edge_spread

    record = attach_edge_spread(args.model, args.data)
    print(f"{args.model}: edge spread calibrated on {record['split']} (FEFF's half-step edge within k times the forward models' standard deviation at {record['coverage']:.0%} of sites)")
    for tier, ks in record["k"].items():
        print(
            f"  {tier}: "
            + ", ".join(
                f"{c} k {k:.2f} (median std {record['median_std_eV'][tier][c]:.2f} eV, RMS error {record['rms_error_eV'][tier][c]:.2f} eV, "
                f"{record['n_sites'][tier][c]} sites)"
                for c, k in ks.items()
            )
        )
    return 0


def channel_skill(args) -> int:
    """``gnnspec ensemble MODEL --skill``: score, store and print the channel skill."""
    from gnnspec.models.forward_ensemble import attach_channel_skill

    record = attach_channel_skill(args.model, args.data)
    print(f"{args.model}: channel skill, R^2 against FEFF on the {record['split']} split (95 % interval over sites)")
    print(skill_lines(record))
    return 0


def skill_lines(record: dict) -> str:
    """The channel skill record as indented lines, one per way of predicting and tier."""
    lines = []
    for mode in ("forward_ensemble", "own_forward"):
        for tier, by_channel in (record.get(mode) or {}).items():
            lines.append(
                f"  {mode}, {tier}: "
                + ", ".join(f"{c} {e['r2']:.2f} [{e['r2_low']:.2f}, {e['r2_high']:.2f}] ({e['n_sites']})" for c, e in by_channel.items())
            )
    return "\n".join(lines)


def forward_ensemble(args) -> int:
    """``gnnspec ensemble MODEL [--forward-from RUN.pt ...] [--linear-heads]``: attach, fit, calibrate, print."""
    from gnnspec.models.forward_ensemble import attach_linear_heads, attach_members

    if args.forward_from or args.drop_members:
        record = attach_members(
            args.model, args.forward_from or [], args.data, linear_heads=args.linear_heads, keep=args.keep_members, drop=args.drop_members
        )
    else:
        record = attach_linear_heads(args.model, args.data)
    others = f" and {', '.join(record['members'])}" if record["members"] else ""
    print(f"{args.model}: {1 + len(record['members'])} forward models (the model's own{others})")
    for tier, by_channel in record.get("linear_heads", {}).items():
        print(
            f"  {tier}: linear heads, validation R^2 (mean over forward models) "
            + ", ".join(f"{c} {np.mean(r2):.2f}" for c, r2 in by_channel.items() if r2)
        )
        mix = record.get("linear_heads_mix", {}).get(tier)
        if mix:
            print(f"  {tier}: share of the linear heads in the mean (chosen on validation) " + ", ".join(f"{c} {w:.1f}" for c, w in mix.items()))
    for tier, ks in record["spread_k"].items():
        cover = record["coverage_unscaled"][tier]
        print(
            f"  {tier}: spread k "
            + ", ".join(f"{c} {k:.2f}" for c, k in ks.items())
            + f"; one member std covers FEFF at {np.mean(list(cover.values())):.0%} of {record['split']} energies"
        )
    if record.get("channel_skill"):
        print(f"  channel skill, R^2 against FEFF on the {record['channel_skill']['split']} split:")
        print(skill_lines(record["channel_skill"]))
    return 0


# -- train -------------------------------------------------------------------------------
def cmd_train(args) -> int:
    """Train; print the test metrics and where the run folder, TensorBoard logs and checkpoint are."""
    from gnnspec.train.config import load_train_config
    from gnnspec.train.loop import run_training

    cfg = load_train_config(args.config, args.overrides)
    if args.out:
        cfg.run_dir = args.out
    if args.data:
        cfg.data = args.data
    if not Path(cfg.data).exists():
        raise InputError(f"{cfg.data}: no such dataset folder (set data: in {args.config} or pass --data)")
    summary = run_training(cfg, resume=args.resume)
    if summary.get("interrupted"):
        return 130
    if "checkpoint" in summary:  # rank 0
        print(_summary_text(summary))
    return 0


def _summary_text(summary: dict) -> str:
    lines = [
        f"trained {summary['epoch']} epochs, {summary['step']} steps in {summary['wall_seconds'] / 60:.1f} min "
        f"({summary['supercells_per_s']:.2f} supercells/s, {summary['environments_per_s']:.0f} environments/s)"
        + (" [stopped at max_minutes]" if summary.get("timed_out") else "")
    ]
    m = summary.get("test_metrics")
    if m:
        lines.append(metrics_text(m, "test"))
    lines += [
        f"run folder:  {summary['run_dir']}",
        f"TensorBoard: tensorboard --logdir {summary['tensorboard']}",
        f"checkpoint:  {summary['checkpoint']}",
    ]
    return "\n".join(lines)


def metrics_text(m: dict, split: str) -> str:
    """The console table of :func:`gnnspec.train.metrics.evaluate` metrics of ``split``."""
    lines = [
        f"{split} metrics ({m['n_structures']} structures, {m['n_site_spectra']} site spectra):",
        f"  {'channel':<12} {'R2':>7} {'med R2':>7} {'MSE':>9} {'cosine':>7} {'n':>5}",
    ]
    for name, c in m["channels"].items():
        if c["n"]:
            lines.append(f"  {name:<12} {c['r2']:7.3f} {c['r2_median']:7.3f} {c['mse']:9.5f} {c['cosine']:7.4f} {c['n']:5d}")
    s = m["spectra"]
    lines.append(f"  {'mean':<12} {s['r2']:7.3f} {s['r2_median']:7.3f} {s['mse']:9.5f} {s['cosine']:7.4f}")
    lines.append("  (R2 around the channel's mean spectrum; med R2: median of each spectrum's own R2)")
    if "content_mae" in m:
        c = m["content_mae"]
        lines.append(f"  spectrum side reads: {m.get('spectrum_side_inputs', 'FEFF environment spectra')}")
        lines.append(f"  element content MAE: structure {c['structure']:.4f}, spectra {c['spectra']:.4f}")
        for side, d in m["defect_auroc"].items():
            lines.append(f"  defect AUROC ({side}): " + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
        lines.append(f"  embedding alignment (mean cosine): {m['alignment_cosine']:.3f}")
    return "\n".join(lines)


def cmd_release(args) -> int:
    from gnnspec.train.checkpoint import release_checkpoint

    released = release_checkpoint(args.checkpoint, args.out)
    trained = released["trained"]
    align = "aligned" if trained.get("alignment") else "not aligned"
    print(f"wrote {args.out}: epoch {trained.get('epoch')}, tiers {released['model_config'].get('tiers')}, {align}")
    return 0
