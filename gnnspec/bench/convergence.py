"""Convergence of the ``scf`` tier: how much a spectrum changes with each setting, and what it costs.

For a few NMC sites per edge (Li K, O K, the TM K, L3 and L2 edges; the element's first site in
each of the first ``--structures`` supercells of the dataset's test split), each setting is varied
alone around the ``scf`` cards, and every spectrum is compared with the one at the largest setting
of its row:

* SCF radius 3, 4 (the tier), 5 A;
* FMS radius 4 (the tier), 5, 6 A;
* core hole FSR against RPA (the tier);
* geometry: every atom moved at random by :data:`DISPLACEMENT_A` (two seeded draws) against the
  stored structure, at the tier's cards: how much of a spectrum is numerical sensitivity rather
  than structure (a change this small caps what any model can learn).

The change is the relative L2 norm ``|y - y_ref| / |y_ref|`` on the reference's energy axis
(after interpolation; both raw, same units). The tier itself is never changed: a better level
goes beside it under a new name (:mod:`gnnspec.simulate.presets`).

Run: ``python -m gnnspec.bench.convergence DATA --out benchmarks/convergence.json --workers N``
(8 distinct FEFF runs per run kind, 1-4 minutes each; meant for a machine with many cores);
``--settings geometry`` runs one row only.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Random displacement of every atom (Angstrom, per Cartesian component) of the geometry row.
DISPLACEMENT_A = 0.01
#: Settings varied around the scf tier: (row, label, card replaced, new card[, displacement A, draw]).
VARIATIONS = [
    ("SCF radius", "3 A", "SCF 4.0 0 30 0.1 1", "SCF 3.0 0 30 0.1 1"),
    ("SCF radius", "4 A (tier)", None, None),
    ("SCF radius", "5 A", "SCF 4.0 0 30 0.1 1", "SCF 5.0 0 30 0.1 1"),
    ("FMS radius", "4 A (tier)", None, None),
    ("FMS radius", "5 A", "FMS 4.0 0", "FMS 5.0 0"),
    ("FMS radius", "6 A", "FMS 4.0 0", "FMS 6.0 0"),
    ("core hole", "FSR", "COREHOLE RPA", "COREHOLE FSR"),
    ("core hole", "RPA (tier)", None, None),
    ("geometry", "as stored (tier)", None, None),
    ("geometry", f"moved {DISPLACEMENT_A} A, draw 1", None, None, DISPLACEMENT_A, 1),
    ("geometry", f"moved {DISPLACEMENT_A} A, draw 2", None, None, DISPLACEMENT_A, 2),
]
#: The reference of each row: its largest (or the tier's) setting.
REFERENCE = {"SCF radius": "5 A", "FMS radius": "6 A", "core hole": "RPA (tier)", "geometry": "as stored (tier)"}


def displaced(structure_dict: dict, sigma_a: float, draw: int) -> dict:
    """``structure_dict`` with every atom moved by a Gaussian ``sigma_a`` A per Cartesian component,
    from ``numpy.random.default_rng(draw)`` (the stored structure itself for ``sigma_a == 0``)."""
    from pymatgen.core import Structure

    if sigma_a == 0:
        return structure_dict
    s = Structure.from_dict(structure_dict)
    moves = np.random.default_rng(draw).normal(0.0, sigma_a, (len(s), 3))
    for i, move in enumerate(moves):
        s.translate_sites([i], move, frac_coords=False, to_unit_cell=True)
    return s.as_dict()


def _variant(old: str | None, new: str | None):
    from gnnspec.simulate.presets import get_preset

    preset = get_preset("scf")
    if old is None:
        return preset
    return preset.with_cards("scf-variant", {old: new})


def _run(structure_dict: dict, site: int, run: str, old: str | None, new: str | None, sigma_a: float = 0.0, draw: int = 0) -> dict:
    from pymatgen.core import Structure

    from gnnspec.simulate.engine import run_feff_text
    from gnnspec.simulate.feff_input import build_feff_input

    preset = _variant(old, new)
    el, edge, kind = run.split("-")
    text = build_feff_input(Structure.from_dict(displaced(structure_dict, sigma_a, draw)), site, edge, kind, preset)
    with tempfile.TemporaryDirectory() as tmp:
        spectra, seconds = run_feff_text(text, kind, preset.stage_timeout_s, Path(tmp) / "feff.log")
    modality = "eels" if kind == "elnes" else "xas"
    energy, intensity = spectra[modality]
    return {"energy": energy.tolist(), "intensity": intensity.tolist(), "seconds": seconds}


def convergence_table(
    data: str,
    workers: int,
    runs: tuple[str, ...] = ("O-K-elnes", "Ni-K-xanes", "Ni-L3-elnes", "Ni-L2-elnes"),
    settings: tuple[str, ...] | None = None,
    structures: tuple[int, ...] = (0,),
) -> list[dict]:
    """One row per (run, test structure, setting): relative L2 change against the row's reference,
    and seconds. ``settings``: the rows to run (default all: SCF radius, FMS radius, core hole,
    geometry); ``structures``: test-split record indices, the element's first site in each."""
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.errors import InputError

    ds = LMDBStructureDataset(data, "test")
    sites = {}  # every structure and run checked before any FEFF run starts
    for index in structures:
        if not 0 <= index < len(ds):
            raise InputError(f"{data}: the test split has {len(ds)} structures, not a structure {index}")
        record = ds.record(index)
        species = [s["species"][0]["element"] for s in record["structure"]["sites"]]
        for run in runs:
            element = run.split("-")[0]
            if element not in species:
                raise InputError(f"{data}: test structure {index} ({record.get('sid', '?')}) has no {element} site for the run {run}")
            sites[(index, run)] = (record["structure"], species.index(element))
    jobs, unique = {}, {}
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        for (index, run), (structure, site) in sites.items():
            for row, label, old, new, *move in VARIATIONS:
                if settings is not None and row not in settings:
                    continue
                key = (index, run, old, new, *move) if move and move[0] else (index, run, old, new)
                if key not in unique:  # the tier's own cards on the stored structure appear in every row: run them once
                    unique[key] = pool.submit(_run, structure, site, run, old, new, *move)
                jobs[(index, run, row, label)] = (site, unique[key])
        done = {key: (site, fut.result()) for key, (site, fut) in jobs.items()}
    table = []
    for (index, run, row, label), (site, res) in done.items():
        _, ref = done[(index, run, row, REFERENCE[row])]
        y_ref = np.asarray(ref["intensity"])
        y = np.interp(ref["energy"], res["energy"], res["intensity"])
        change = float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref))
        table.append(
            {
                "run": run,
                "structure": index,
                "site": site,
                "setting": row,
                "value": label,
                "relative_l2_change": change,
                "edge_shift_ev": edge_shift(ref, res),
                "seconds": res["seconds"],
            }
        )
    return table


def edge_shift(ref: dict, res: dict, step_ev: float = 0.1) -> float:
    """The rigid energy shift (eV, positive: ``res`` lies higher) that best aligns ``res`` with
    ``ref``, both on ``ref``'s energy range at ``step_ev`` and scaled to unit mean
    (:func:`gnnspec.scoring.edge_position_metrics`)."""
    from gnnspec.scoring import edge_position_metrics

    grid = np.arange(ref["energy"][0], ref["energy"][-1], step_ev)
    y_ref, y = (np.interp(grid, r["energy"], r["intensity"]) for r in (ref, res))
    y_ref, y = y_ref / y_ref.mean(), y / y.mean()
    return -edge_position_metrics(y[None], y_ref[None], step_ev)["shift_mean_ev"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.convergence", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="dataset folder (its test supercells supply the sites; not needed with --markdown)")
    p.add_argument("--out", required=True, help="JSON file for the table (rows of runs and settings not rerun are kept)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", nargs="+", default=["O-K-elnes", "Ni-K-xanes", "Ni-L3-elnes", "Ni-L2-elnes"], help="FEFF runs to vary (default: O K, Ni K, Ni L3, Ni L2)")
    p.add_argument("--settings", nargs="+", choices=sorted(REFERENCE), default=None, help="rows to run (default: all)")
    p.add_argument("--structures", nargs="+", type=int, default=[0], help="test-split structures (record indices) whose sites are varied (default: 0)")
    p.add_argument("--markdown", action="store_true", help="print the table of every row in --out as Markdown (no FEFF runs)")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.out).read_text())["rows"]), end="")
        return 0
    if args.data is None:
        p.error("the dataset folder is needed to run FEFF (only --markdown goes without it)")
    table = convergence_table(args.data, args.workers, tuple(args.runs), tuple(args.settings) if args.settings else None, tuple(args.structures))
    out = Path(args.out)
    new = {row_key(r) for r in table}
    kept = [r for r in json.loads(out.read_text())["rows"] if row_key(r) not in new] if out.exists() else []
    out.write_text(json.dumps({"rows": kept + table}, indent=1) + "\n")  # rows of other runs, structures and settings kept
    for r in table:
        print(
            f"{r['run']:12s} structure {r['structure']} site {r['site']:3d} {r['setting']:11s} {r['value']:24s} "
            f"change {r['relative_l2_change']:.3f}  edge {r['edge_shift_ev']:+.2f} eV  {r['seconds']:6.1f} s"
        )
    return 0


#: Columns of the Markdown table: (setting row, value label, column heading).
COLUMNS = [
    ("SCF radius", "3 A", "SCF 3 A"),
    ("SCF radius", "4 A (tier)", "SCF 4 A (tier)"),
    ("SCF radius", "5 A", "SCF 5 A (ref.)"),
    ("FMS radius", "4 A (tier)", "FMS 4 A (tier)"),
    ("FMS radius", "5 A", "FMS 5 A"),
    ("FMS radius", "6 A", "FMS 6 A (ref.)"),
    ("core hole", "FSR", "FSR vs RPA (tier, ref.)"),
]


def markdown_table(rows: list[dict]) -> str:
    """The convergence rows as the dataset card's table: one line per run and test structure, each
    cell ``relative L2 change, seconds`` (``-`` where not run)."""
    cells = {(r["run"], r.get("structure", 0), r["setting"], r["value"]): r for r in rows}
    lines = ["| run | structure, site | " + " | ".join(h for *_, h in COLUMNS) + " |", "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |"]
    for run, structure in dict.fromkeys((r["run"], r.get("structure", 0)) for r in rows if r["setting"] != "geometry"):
        found = [cells.get((run, structure, setting, value)) for setting, value, _ in COLUMNS]
        site = next(r["site"] for r in found if r is not None)
        text = [f"{r['relative_l2_change']:.3f}, {r['seconds']:.0f} s" if r else "-" for r in found]
        lines.append(f"| {run} | {structure}, {site} | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def row_key(row: dict) -> tuple:
    """What a rerun replaces: the run, the test structure (0 for rows written before there was a
    choice) and the setting."""
    return row["run"], row.get("structure", 0), row["setting"]


if __name__ == "__main__":
    sys.exit(main())
