"""``gnnspec data build|info|verify|import|compact|k-factors``: the dataset engine from the command
line (``gnnspec quantify`` is :mod:`gnnspec.quantification.commands`)."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from gnnspec.errors import InputError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build, inspect and verify LMDB datasets of FEFF10 spectra", description="Datasets of NMC structures and their FEFF10 site spectra (LMDB).")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")

    b = dsub.add_parser(
        "build",
        help="generate structures and compute their spectra (resumable)",
        description="Generate the structures of CONFIG and compute every (structure, site, channel) spectrum with FEFF10. "
        "Each finished run is committed at once; rerun the same command to resume after a crash or Ctrl-C.",
    )
    b.add_argument("config", help="dataset recipe (YAML), e.g. datasets/nmc_feff10_fast.yaml")
    b.add_argument("--out", required=True, help="dataset folder (LMDB)")
    b.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    b.add_argument("--scheduler", default=None, help="Dask distributed scheduler address (tcp://host:port); default: local processes")
    b.add_argument("--n-structures", type=int, default=None, help="override the recipe's number of structures (grow a dataset)")
    b.add_argument("--structures-only", action="store_true", help="generate and relax the structures, run no FEFF")
    b.add_argument("--retry-failed", action="store_true", help="delete the stored failures first and run those FEFF runs again")
    b.add_argument(
        "--recheck-screening",
        action="store_true",
        help="run again the screened (COREHOLE RPA) runs of edges judged by their core-hole screening (Li K) that were stored without it, so that "
        "over-screened ones are known (their new records replace the old ones as they finish)",
    )
    b.set_defaults(func=_build)

    x = dsub.add_parser(
        "export-tasks",
        help="write the pending FEFF runs as tasks for another machine",
        description="Render every pending run's feff.inp into JSON lines, to run with `python -m gnnspec.simulate.farm` where feff10 is installed.",
    )
    x.add_argument("path", help="dataset folder")
    x.add_argument("--out", required=True, help="tasks file (JSON lines)")
    x.add_argument(
        "--recheck-screening",
        action="store_true",
        help="also the screened Li K runs stored without their core-hole screening (ingest replaces their records)",
    )
    x.set_defaults(func=_export)

    g = dsub.add_parser("ingest", help="store results computed by gnnspec.simulate.farm", description="Store farm results with the same records as a local build.")
    g.add_argument("path", help="dataset folder")
    g.add_argument("results", help="results file from the farm (msgpack)")
    g.add_argument("--tasks", required=True, help="the tasks file the results belong to")
    g.set_defaults(func=_ingest)

    i = dsub.add_parser("info", help="counts per channel, failures, presets, sizes", description="Summarise a dataset.")
    i.add_argument("path", help="dataset folder")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_info)

    v = dsub.add_parser("verify", help="check every record", description="Decode and check every record; exit 1 listing problems.")
    v.add_argument("path", help="dataset folder")
    v.set_defaults(func=_verify)

    m = dsub.add_parser("import", help="import FEFF run folders (feff.inp + xmu.dat)", description="Import spectra computed elsewhere: every folder below ROOT with feff.inp and xmu.dat (or eels.dat).")
    m.add_argument("root", help="folder holding FEFF run folders")
    m.add_argument("--out", required=True, help="dataset folder (created or extended)")
    m.add_argument("--split", default="train", help="split of the imported records (train, val or test)")
    m.set_defaults(func=_import)

    mg = dsub.add_parser(
        "migrate",
        help="rewrite a schema v1 dataset (before tiers) as v2, in place",
        description="Give every spectrum and failure key of a schema v1 dataset its tier (the preset it was computed with).",
    )
    mg.add_argument("path", help="dataset folder")
    mg.set_defaults(func=_migrate)

    c = dsub.add_parser("compact", help="compact the LMDB file in place (for shipping)", description="Rewrite the dataset's LMDB file compactly.")
    c.add_argument("path", help="dataset folder")
    c.add_argument(
        "--float32",
        action="store_true",
        help="also store the energies and intensities of spectrum records written as float64 (before 2026-12-07) as float32, "
        "the precision new records have (about 40 %% smaller file)",
    )
    c.set_defaults(func=_compact)

    k = dsub.add_parser(
        "k-factors",
        help="k-factors of every channel: integrated intensity per absorbing atom",
        description="Fit k-factors on a dataset's raw site spectra: for each channel, the mean over its site spectra of the "
        "intensity integrated over 50 eV from the channel window's start (gnnspec.quantification.intensities). gnnspec quantify "
        "divides summed intensities by them.",
    )
    k.add_argument("path", help="dataset folder (the standards)")
    k.add_argument("--split", default="train", help="split of the standards (default train; 'all' for every one)")
    k.add_argument("--out", required=True, help="output k-factors JSON")
    k.set_defaults(func=_k_factors)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _build(args: argparse.Namespace) -> int:
    from gnnspec.config import load_config
    from gnnspec.data.build import build_dataset
    from gnnspec.data.recipe import BuildConfig

    cfg = load_config(args.config, BuildConfig)
    if args.n_structures is not None:
        cfg.n_structures = args.n_structures
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    stats = build_dataset(
        cfg,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        structures_only=args.structures_only,
        retry_failed=args.retry_failed,
        recheck_screening=args.recheck_screening,
    )
    if stats["retried"]:
        print(f"{args.out}: {stats['retried']} failed runs planned again (--retry-failed)")
    if stats.get("rechecked"):
        print(f"{args.out}: {stats['rechecked']} screened runs without their core-hole screening planned again (--recheck-screening)")
    print(f"{args.out}: {stats['structures']} structures generated, {stats['runs']} FEFF runs ({stats['spectra']} spectra, {stats['failures']} failed) this session")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from gnnspec.data.store import migrate

    n = migrate(args.path)
    print(f"{args.path}: {n} records rewritten" if n else f"{args.path}: already schema v2")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gnnspec.data.offload import export_tasks

    n = export_tasks(args.path, args.out, args.recheck_screening)
    print(f"wrote {n} pending FEFF runs to {args.out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from gnnspec.data.offload import ingest_results

    counts = ingest_results(args.path, args.results, args.tasks)
    print(
        f"{args.path}: stored {counts['spectra']} spectra ({counts['replaced']} replacing records without their core-hole "
        f"screening), {counts['failures']} failures; {counts['skipped']} already present"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from gnnspec.data.inspect import dataset_info, format_info

    info = dataset_info(args.path)
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gnnspec.data.inspect import verify_dataset

    problems = verify_dataset(args.path)
    for p in problems:
        print(f"{args.path}: {p}")
    print(f"{args.path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


def _import(args: argparse.Namespace) -> int:
    from gnnspec.data.importer import import_feff_folders

    n = import_feff_folders(args.root, args.out, split=args.split)
    print(f"imported {n} FEFF run folder(s) into {args.out}")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from gnnspec.data.store import DATA_FILE, SpectraStore

    path = Path(args.path)
    store = SpectraStore(path)
    before = (path / DATA_FILE).stat().st_size
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        converted = store.compact_copy(tmp, float32=args.float32)
        store.close()
        shutil.move(str(Path(tmp) / DATA_FILE), str(path / DATA_FILE))
    # the old lock file describes the replaced data file (its transaction ids and readers); a
    # process that still held it (a test run beside a stopped build) kept it from being reset,
    # and the next reader saw no metadata record. Removed, the next opener makes a fresh one.
    (path / "lock.mdb").unlink(missing_ok=True)
    after = (path / DATA_FILE).stat().st_size
    print(f"{path}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB" + (f"; {converted} spectrum records stored as float32" if args.float32 else ""))
    return 0


def _k_factors(args: argparse.Namespace) -> int:
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.store import DATA_FILE
    from gnnspec.quantification.intensities import INTEGRATION_WINDOW_EV, fit_k_factors, site_integrals
    from gnnspec.quantification.k_factors import write_k_factors

    if not (Path(args.path) / DATA_FILE).is_file():
        raise InputError(f"{args.path}: not a gnnspec dataset (no {DATA_FILE})")
    split = None if args.split == "all" else args.split
    ds = LMDBStructureDataset(args.path, split)
    if len(ds) == 0:
        raise InputError(f"{args.path}: no structures in split {args.split!r}")
    k = fit_k_factors(site_integrals(ds.raw_runs(i)) for i in range(len(ds)))
    write_k_factors(args.out, k, {"dataset": Path(args.path).name, "split": args.split, "structures": len(ds)})
    for name, entry in k.items():
        print(f"{name:11s} k {entry['k']:.4g} per atom (spread {100 * entry['cv']:.1f} %, {entry['sites']} sites)")
    print(f"wrote {args.out} ({INTEGRATION_WINDOW_EV:g} eV windows)")
    return 0
