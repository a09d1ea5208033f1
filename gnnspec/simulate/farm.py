"""Run many prepared FEFF10 inputs in parallel processes on any machine with ``feff10``.

Needs only ``feff10``, ``numpy`` and ``msgpack`` (no pymatgen), so a dataset's pending runs
can be exported (``gnnspec data export-tasks``), computed on a larger machine with
``python -m gnnspec.simulate.farm TASKS.jsonl --out RESULTS.msgpack --workers N`` and ingested
(``gnnspec data ingest``) with exactly the records a local build writes. Results are rewritten
every ``flush_every`` finished runs, so an interrupted farm still returns what it finished.
A task line ``{"runs": [task, ...]}`` holds the runs of one site that share one SCF
(:mod:`gnnspec.simulate.ground_state`): one worker runs them in order, the first computing it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from gnnspec.codec import encode
from gnnspec.simulate.engine import FeffRunError, run_feff_text
from gnnspec.simulate.ground_state import GroundState


def _run_one(task: dict, ground_state: GroundState | None) -> dict:
    log = Path(task.get("log_dir", "/tmp")) / f"feff_farm_{os.getpid()}.log"
    reused = ground_state.ready_from if ground_state is not None else None
    diagnostics: dict = {}
    try:
        spectra, seconds = run_feff_text(
            task["text"],
            task["kind"],
            task["stage_timeout_s"],
            log_path=log,
            screened=task.get("screened"),
            ground_state=ground_state,
            run_name=task["key"].rsplit("/", 1)[-1],
            diagnostics=diagnostics,
        )
    except FeffRunError as exc:
        return {"key": task["key"], "failure": str(exc)}
    except Exception as exc:  # a FEFF input the parser refuses
        return {"key": task["key"], "failure": f"{type(exc).__name__}: {exc}"}
    out = {"key": task["key"], "seconds": seconds, "spectra": {m: [e, y] for m, (e, y) in spectra.items()}}
    if reused:
        out["potentials_from"] = reused
    out.update(diagnostics)  # core_hole_screening of a screened run
    return out


def _run(task: dict) -> list[dict]:
    """Results of one task line: a single run, or a site's runs sharing one SCF."""
    if "runs" not in task:
        return [_run_one(task, None)]
    ground_state = GroundState()
    return [_run_one(one, ground_state) for one in task["runs"]]


def run_tasks(tasks: list[dict], out: str | Path, workers: int, flush_every: int = 100) -> int:
    """Run ``tasks`` with ``workers`` processes; write the results to ``out`` (msgpack)."""
    out = Path(out)
    results: list[dict] = []
    t0 = time.time()
    with mp.get_context("fork").Pool(workers) as pool:
        for i, res in enumerate(pool.imap_unordered(_run, tasks, chunksize=1), 1):
            results += res
            if i % flush_every == 0 or i == len(tasks):
                tmp = out.with_suffix(".tmp")
                tmp.write_bytes(encode({"results": results, "wall_seconds": time.time() - t0, "workers": workers}))
                tmp.replace(out)
                print(f"{i}/{len(tasks)} tasks, {len(results)} runs, {time.time() - t0:.0f} s", flush=True)
    return len(results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.simulate.farm", description=__doc__.split("\n\n")[0])
    p.add_argument("tasks", help="JSON lines from `gnnspec data export-tasks`")
    p.add_argument("--out", required=True, help="results file (msgpack)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--limit", type=int, default=0, help="run only the first N tasks")
    args = p.parse_args(argv)
    tasks = [json.loads(line) for line in Path(args.tasks).read_text().splitlines() if line.strip()]
    if args.limit:
        tasks = tasks[: args.limit]
    n = run_tasks(tasks, args.out, args.workers)
    print(f"wrote {n} results to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
