"""``gnnspec data build|info|verify|import|compact``: the dataset engine from the command line."""

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
    b.set_defaults(func=_build)

    x = dsub.add_parser(
        "export-tasks",
        help="write the pending FEFF runs as tasks for another machine",
        description="Render every pending run's feff.inp into JSON lines, to run with `python -m gnnspec.simulate.farm` where feff10 is installed.",
    )
    x.add_argument("path", help="dataset folder")
    x.add_argument("--out", required=True, help="tasks file (JSON lines)")
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

    c = dsub.add_parser("compact", help="compact the LMDB file in place (for shipping)", description="Rewrite the dataset's LMDB file compactly.")
    c.add_argument("path", help="dataset folder")
    c.set_defaults(func=_compact)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _build(args: argparse.Namespace) -> int:
    from gnnspec.config import load_config
    from gnnspec.data.build import BuildConfig, build_dataset

    cfg = load_config(args.config, BuildConfig)
    if args.n_structures is not None:
        cfg.n_structures = args.n_structures
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    stats = build_dataset(cfg, args.out, workers=args.workers, scheduler=args.scheduler, structures_only=args.structures_only)
    print(f"{args.out}: {stats['structures']} structures generated, {stats['runs']} FEFF runs ({stats['spectra']} spectra, {stats['failures']} failed) this session")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gnnspec.data.offload import export_tasks

    n = export_tasks(args.path, args.out)
    print(f"wrote {n} pending FEFF runs to {args.out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from gnnspec.data.offload import ingest_results

    counts = ingest_results(args.path, args.results, args.tasks)
    print(f"{args.path}: stored {counts['spectra']} spectra, {counts['failures']} failures; {counts['skipped']} already present")
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
        store.compact_copy(tmp)
        store.close()
        shutil.move(str(Path(tmp) / DATA_FILE), str(path / DATA_FILE))
    after = (path / DATA_FILE).stat().st_size
    print(f"{path}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0
