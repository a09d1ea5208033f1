"""``gnnspec library build|add|info|evaluate``: the embedding library from the command line
(``gnnspec query``, which answers about spectra, is in :mod:`gnnspec.analysis.commands`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_DATA_HELP = "an LMDB dataset folder, a folder of structure files (CIF, POSCAR, *.vasp, pymatgen JSON) or one structure file"
_MODEL_HELP = "model checkpoint (.pt); default: gnnspec/assets/model.pt"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "library",
        help="build, extend and inspect embedding libraries of structure environments",
        description="Embedding libraries: a unit vector per environment (centre site + sites within 3.2 A), its labels "
        "and structure, and a FAISS index (inner product = cosine similarity).",
    )
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION")

    b = lsub.add_parser(
        "build",
        help="embed every environment of a dataset into a new library",
        description="Embed every site environment of DATA with the model into a new library folder.",
    )
    b.add_argument("--data", required=True, help=_DATA_HELP)
    b.add_argument("--model", default=None, help=_MODEL_HELP)
    b.add_argument("--out", required=True, help="library folder to create")
    b.add_argument("--bulk", action="store_true", help="also add each whole structure as an entry (site -1; needs --vectors predicted)")
    b.add_argument(
        "--index",
        default="auto",
        choices=["auto", "exact", "hnsw", "ivfpq"],
        help="FAISS index: auto (exact below 50k vectors, HNSW below 1M, IVF-PQ beyond), or force one",
    )
    b.add_argument("--split", default=None, help="only this split of an LMDB dataset (train, val or test); default: all")
    b.add_argument(
        "--vectors",
        default="structure",
        choices=["structure", "predicted"],
        help="structure: structure embeddings of the environments (default); predicted: spectrum embeddings of their forward-predicted spectra",
    )
    b.set_defaults(func=_build)

    a = lsub.add_parser(
        "add",
        help="add a dataset's environments to a library",
        description="Add the environments of DATA to library LIB (same model); structures already there are skipped.",
    )
    a.add_argument("library", metavar="LIB", help="library folder")
    a.add_argument("--data", required=True, help=_DATA_HELP)
    a.add_argument("--model", default=None, help=_MODEL_HELP)
    a.add_argument("--bulk", action="store_true", help="also add each whole structure as an entry (site -1; needs --vectors predicted)")
    a.add_argument("--split", default=None, help="only this split of an LMDB dataset; default: all")
    a.set_defaults(func=_add)

    i = lsub.add_parser(
        "info",
        help="count, dimension, model hash, index, sources",
        description="Check every file of LIB against its manifest and summarise it.",
    )
    i.add_argument("library", metavar="LIB", help="library folder")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=_info)
    e = lsub.add_parser(
        "evaluate",
        help="label-match hit@k of the library for the spectra of a dataset's environments",
        description="Query LIB with the spectra of every environment of a gnnspec LMDB dataset (embedded by the library's "
        "model) and report how often the retrieved environment shares the query's labels: the same defect labels and "
        "element content within 0.05. For an honest number, use structures the model and library never saw.",
    )
    e.add_argument("library", metavar="LIB", help="library folder")
    e.add_argument("--data", required=True, help="gnnspec LMDB dataset folder whose environments are the queries")
    e.add_argument("--split", default=None, help="only this split of the dataset (train, val or test); default: all")
    e.add_argument("-k", type=int, default=5, help="also report hit@k (default 5)")
    e.add_argument(
        "--pool",
        type=int,
        default=None,
        help="pool of the consensus ranking, reported beside cosine (default: sqrt of LIB's size)",
    )
    e.add_argument(
        "--quantification-error",
        type=float,
        default=None,
        metavar="SIGMA",
        help="give each query its environment's elemental quantification with this log-normal relative error "
        "(0: exact; for models that read one); default: none",
    )
    e.add_argument(
        "--intensity-quantification",
        nargs="?",
        const="shipped",
        default=None,
        metavar="K.json",
        help="give each query the elemental quantification its own FEFF spectra hold in their intensities (integrated "
        "intensity summed over the environment's atoms / per-atom k-factor; default k-factors: the shipped ones, from "
        "gnnspec data k-factors on the shipped train split)",
    )
    e.add_argument(
        "--spectra",
        choices=("auto", "feff", "model"),
        default="auto",
        help="the queries' spectra: the dataset's FEFF spectra (feff), or the model's forward-model spectra of the same "
        "environments in the tier its encoder learned from (model); auto (default): model when the encoder learned a "
        "forward-model tier, else feff",
    )
    e.add_argument(
        "--centre-known",
        action="store_true",
        help="restrict each query's hits to environments centred on the query's own centre element (gnnspec query --centre)",
    )
    e.add_argument("--model", default=None, help=_MODEL_HELP + "; its hash must match the library's")
    e.add_argument("--out", default=None, help="write the report as JSON here")
    e.set_defaults(func=_evaluate)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _progress(label: str, unit: str = "structures"):
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth != state["last"] or done == total:
            state["last"] = tenth
            print(f"{label}: {done}/{total} {unit}", file=sys.stderr, flush=True)

    return report


def _build(args: argparse.Namespace) -> int:
    from gnnspec.library.build import build_library
    from gnnspec.library.embed import resolve_model

    model = resolve_model(args.model)
    lib = build_library(
        model,
        args.data,
        args.out,
        include_bulk=args.bulk,
        index=args.index,
        split=args.split,
        vector_source=args.vectors,
        progress=_progress("embedding"),
    )
    print(
        f"{lib.path}: {lib.count} environments of {lib.manifest['n_structures']} structures, dimension {lib.dim}, index {lib.index_kind}"
    )
    _report_support(lib.manifest["sources"][-1].get("structure_support"), args.data)
    return 0


def _report_support(summary: dict | None, source: str) -> None:
    """The structure-side support of the embedded sites: a warning line on stderr per structure
    with sites outside the model's training distribution, and the count (the library is still written)."""
    from gnnspec.library.build import support_warnings

    if summary is None:
        return
    for line in support_warnings(summary, source):
        print(line, file=sys.stderr)
    if summary["sites_out_of_distribution"]:
        unseen = f"; unseen elements {', '.join(summary['unseen_elements'])}" if summary["unseen_elements"] else ""
        print(
            f"structure support: {summary['sites_out_of_distribution']} of {summary['sites_checked']} sites outside the "
            f"model's training distribution{unseen} (listed in the manifest's sources)",
            file=sys.stderr,
        )


def _add(args: argparse.Namespace) -> int:
    from gnnspec.library.build import add_to_library
    from gnnspec.library.embed import resolve_model
    from gnnspec.library.library import Library

    lib = Library.open(args.library)
    model = resolve_model(args.model)
    stats = add_to_library(lib, model, args.data, split=args.split, include_bulk=args.bulk, progress=_progress("embedding"))
    print(
        f"{lib.path}: added {stats['entries']} environments of {stats['structures']} structures "
        f"({stats['skipped']} already present); {stats['count']} in all, index {lib.index_kind}"
    )
    _report_support(stats.get("structure_support"), args.data)
    return 0


def _info(args: argparse.Namespace) -> int:
    from gnnspec.library.library import Library

    lib = Library.open(args.library)
    m = lib.manifest
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    idx = m["index"]
    print(f"library        {lib.path} ({m['format']}), files verified")
    print(f"entries        {m['count']} environments of {m['n_structures']} structures")
    print(f"vectors        dimension {m['dim']}, {m.get('vector_source', 'structure')} embeddings, {m['metric']}")
    print(f"model hash     {m['model_hash']}")
    params = ", ".join(f"{k}={v}" for k, v in idx["params"].items()) or "no parameters"
    print(f"index          {idx['kind']} (requested {idx['requested']}; {params})")
    for s in m.get("sources", []):
        print(
            f"source         {s['path']} ({s['kind']}, split {s['split'] or 'all'}): {s['entries']} entries, {s['structures']} structures, added {s['added']}"
        )
    size = sum(f["bytes"] for f in m["files"].values())
    print(f"size           {size / 1e6:.2f} MB in {len(m['files'])} files + manifest")
    return 0


def _k_factors_path(value: str | None) -> str | Path | None:
    """``--intensity-quantification``'s file: the shipped k-factors when given without one."""
    if value != "shipped":
        return value
    from gnnspec.quantification.k_factors import SHIPPED_K_FACTORS

    return SHIPPED_K_FACTORS


def _evaluate(args: argparse.Namespace) -> int:
    from gnnspec.library.evaluate import evaluate_library
    from gnnspec.library.library import Library

    lib = Library.open(args.library, model=args.model)
    r = evaluate_library(
        lib,
        args.data,
        split=args.split,
        k=args.k,
        pool=args.pool,
        progress=_progress("queries", "environments"),
        quantification_error=args.quantification_error,
        centre_known=args.centre_known,
        intensity_k_factors=_k_factors_path(args.intensity_quantification),
        spectra=args.spectra,
    )
    k = r["k"]
    print(f"library      {r['library']} ({r['library_entries']} entries)")
    print(f"queries      {r['queries']} environments of {r['query_structures']} structures ({r['data']}, split {r['split']})")
    print(f"spectra      {r['query_spectra']}")
    if r["query_structures_in_library"]:
        print(f"WARNING      {r['query_structures_in_library']} query structures are in the library: not an unseen check")
    print(f"match        same defect labels, element content within {r['content_tol']}")
    quant = r["quantification"]
    if quant is not None and "relative_error" in quant:
        print(f"quantified   each query with its elemental quantification, relative error {quant['relative_error']}")
    elif quant is not None:
        err = quant["atom_fraction_log_error"]
        print(
            f"quantified   each query from its own spectra's intensities (k-factors {quant['k_factors_file']}): "
            f"atom fractions off by {100 * err['sd']:.1f} % (sd), "
            f"{100 * err['within_5_percent']:.1f} % within 5 %"
        )
    if r["centre_known"]:
        print("centre       each query's hits restricted to environments centred on its own centre element")
    for name, scores in (("cosine", r), (f"consensus (pool {r['consensus']['pool']})", r["consensus"])):
        print(f"{name}: hit@1 {scores['hit@1']:.3f}    hit@{k} {scores[f'hit@{k}']:.3f}")
        for title, key in (("by centre", "hit@1_by_centre"), ("by defects", "hit@1_by_defects")):
            parts = ", ".join(f"{el} {v['hit@1']:.2f} (n={v['queries']})" for el, v in scores[key].items())
            print(f"  {title:<11} {parts}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=1) + "\n")
        print(f"wrote {out}")
    return 0
