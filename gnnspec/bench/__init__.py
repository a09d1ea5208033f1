"""Benchmarks: gnnspec against FEFF10, the seed paper's method and classical baselines.

``python -m gnnspec.bench [--quick]`` (``make bench``) writes ``benchmarks/report.md`` and figures.
"""

import subprocess


def current_commit() -> str:
    """The repository's short commit hash, for the captions of benchmark reports ("unknown" outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def model_table_main(argv, module: str, doc: str, default_out: str, make_table, describe) -> int:
    """The command line of a benchmark that scores one model on one dataset and writes a Markdown
    table with its JSON beside it (``--data``, ``--model``, ``--out``, ``--threads``).

    ``make_table(model, data) -> table``; ``describe(model, table) -> (title, intro, lines)``: the
    page's heading, its one-paragraph method and the table's rows. A bad input exits 2 with its message."""
    import argparse
    import os
    import sys
    from pathlib import Path

    import torch

    from gnnspec.errors import InputError

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    p.add_argument("--data", default="datasets/nmc_feff10_fast", help="dataset (LMDB folder)")
    p.add_argument("--model", default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--out", default=default_out, help="markdown table (its JSON beside it)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from gnnspec.bench.fidelity import _data_label, _members_note
    from gnnspec.models.factory import DEFAULT_MODEL, load_checkpoint

    try:
        model = load_checkpoint(args.model or DEFAULT_MODEL)
        table = make_table(model, args.data)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    caption = f"`python -m {module}` at commit {current_commit()}; {_data_label(args.data)}; model {args.model or 'the shipped model'}{_members_note(model)}"
    print(write_table_page(Path(args.out), describe(model, table), table, caption))
    return 0


def write_table_page(out, page: tuple[str, str, list[str]], table, caption: str) -> str:
    """Write one benchmark's Markdown page (``page``: heading, method paragraph, table rows, as a
    ``describe`` gives them) at ``out`` and its table with the caption as JSON beside it; return the
    page. ``make bench`` writes its sections' standalone pages with it, so they stay in step with
    the report."""
    import json
    from pathlib import Path

    title, intro, lines = page
    text = "\n".join([title, "", intro, "", *lines, "", caption, ""])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"table": table, "caption": caption}, indent=1))
    return text
