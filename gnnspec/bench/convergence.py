"""Convergence of the ``scf`` tier: how much a spectrum changes with each setting, and what it costs.

For a few NMC sites per edge (O K, a TM K, a TM L3 and L2 from the test split of the dataset),
each setting is varied alone around the ``scf`` cards, and every spectrum is compared with the
one at the largest setting of its row:

* SCF radius 3, 4 (the tier), 5 A;
* FMS radius 4 (the tier), 5, 6 A;
* core hole FSR against RPA (the tier).

The change is the relative L2 norm ``|y - y_ref| / |y_ref|`` on the reference's energy axis
(after interpolation; both raw, same units). The tier itself is never changed: a better level
goes beside it under a new name (:mod:`gnnspec.simulate.presets`).

Run: ``python -m gnnspec.bench.convergence DATA --out benchmarks/convergence.json --workers N``
(6 distinct FEFF runs per run kind, 1-4 minutes each; meant for a machine with many cores).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Settings varied around the scf tier: (row, label, card replaced, new card).
VARIATIONS = [
    ("SCF radius", "3 A", "SCF 4.0 0 30 0.1 1", "SCF 3.0 0 30 0.1 1"),
    ("SCF radius", "4 A (tier)", None, None),
    ("SCF radius", "5 A", "SCF 4.0 0 30 0.1 1", "SCF 5.0 0 30 0.1 1"),
    ("FMS radius", "4 A (tier)", None, None),
    ("FMS radius", "5 A", "FMS 4.0 0", "FMS 5.0 0"),
    ("FMS radius", "6 A", "FMS 4.0 0", "FMS 6.0 0"),
    ("core hole", "FSR", "COREHOLE RPA", "COREHOLE FSR"),
    ("core hole", "RPA (tier)", None, None),
]
#: The reference of each row: its largest (or the tier's) setting.
REFERENCE = {"SCF radius": "5 A", "FMS radius": "6 A", "core hole": "RPA (tier)"}


def _variant(old: str | None, new: str | None):
    from gnnspec.simulate.presets import get_preset

    preset = get_preset("scf")
    if old is None:
        return preset
    return dataclasses.replace(preset, name="scf-variant", common=tuple(new if c == old else c for c in preset.common))


def _run(structure_dict: dict, site: int, run: str, old: str | None, new: str | None) -> dict:
    from pymatgen.core import Structure

    from gnnspec.simulate.engine import run_feff_text
    from gnnspec.simulate.feff_input import build_feff_input

    preset = _variant(old, new)
    el, edge, kind = run.split("-")
    text = build_feff_input(Structure.from_dict(structure_dict), site, edge, kind, preset)
    with tempfile.TemporaryDirectory() as tmp:
        spectra, seconds = run_feff_text(text, kind, preset.stage_timeout_s, Path(tmp) / "feff.log")
    modality = "eels" if kind == "elnes" else "xas"
    energy, intensity = spectra[modality]
    return {"energy": energy.tolist(), "intensity": intensity.tolist(), "seconds": seconds}


def convergence_table(data: str, workers: int, runs: tuple[str, ...] = ("O-K-elnes", "Ni-K-xanes", "Ni-L3-elnes", "Ni-L2-elnes")) -> list[dict]:
    """One row per (run, setting): relative L2 change against the row's reference, and seconds."""
    from gnnspec.data.dataset import LMDBStructureDataset

    ds = LMDBStructureDataset(data, "test")
    record = ds.record(0)
    species = [s["species"][0]["element"] for s in record["structure"]["sites"]]
    jobs, unique = {}, {}
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        for run in runs:
            site = species.index(run.split("-")[0])
            for row, label, old, new in VARIATIONS:
                if (run, old, new) not in unique:  # the tier's own cards appear in every row: run them once
                    unique[(run, old, new)] = pool.submit(_run, record["structure"], site, run, old, new)
                jobs[(run, row, label)] = (site, unique[(run, old, new)])
        done = {key: (site, fut.result()) for key, (site, fut) in jobs.items()}
    table = []
    for (run, row, label), (site, res) in done.items():
        _, ref = done[(run, row, REFERENCE[row])]
        y_ref = np.asarray(ref["intensity"])
        y = np.interp(ref["energy"], res["energy"], res["intensity"])
        change = float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref))
        table.append({"run": run, "site": site, "setting": row, "value": label, "relative_l2_change": change, "seconds": res["seconds"]})
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.convergence", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="dataset folder (its first test supercell supplies the sites)")
    p.add_argument("--out", required=True, help="JSON file for the table")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", nargs="+", default=["O-K-elnes", "Ni-K-xanes", "Ni-L3-elnes", "Ni-L2-elnes"], help="FEFF runs to vary (default: O K, Ni K, Ni L3, Ni L2)")
    args = p.parse_args(argv)
    table = convergence_table(args.data, args.workers, tuple(args.runs))
    Path(args.out).write_text(json.dumps({"rows": table}, indent=1) + "\n")
    for r in table:
        print(f"{r['run']:12s} {r['setting']:11s} {r['value']:11s} change {r['relative_l2_change']:.3f}  {r['seconds']:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
