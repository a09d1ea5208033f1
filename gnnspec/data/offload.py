"""Computing a dataset's pending FEFF runs elsewhere: export them as tasks, ingest the results.

``export_tasks`` renders every pending run's ``feff.inp`` in every tier of the recipe (same
cluster, preset and cards as a local build) into JSON lines, one line per site where the tier
shares one SCF between a site's runs (``{"runs": [task, ...]}``, run in order by one worker); :mod:`gnnspec.simulate.farm` runs them anywhere ``feff10`` is
installed; ``ingest_results`` stores the results with the same keys and record fields as a
local build (preset name and hash, FEFF version, seconds), skipping anything already stored.
"""

from __future__ import annotations

import json
from pathlib import Path

from pymatgen.core import Structure

from gnnspec.config import from_dict
from gnnspec.data import schema
from gnnspec.data.recipe import BuildConfig, pending_runs, site_tasks
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError


def export_tasks(path: str | Path, out: str | Path, recheck_screening: bool = False) -> int:
    """Write the pending FEFF runs of the dataset at ``path`` to ``out`` (JSON lines); returns the
    number of runs. ``recheck_screening``: also the screened runs stored without their core-hole
    screening (:func:`gnnspec.data.recipe.pending_runs`)."""
    from gnnspec.simulate.feff_input import build_feff_input
    from gnnspec.simulate.presets import get_preset

    store = SpectraStore(path)
    cfg = from_dict(BuildConfig, store.metadata()["build_config"], f"{path}: build_config")
    n = 0
    with open(out, "w") as f:
        for sid in store.structure_ids():
            rec = store.structure(sid)
            structure = Structure.from_dict(rec["structure"])
            for tier, site, runs in site_tasks(pending_runs(store, rec, cfg, recheck_screening)):
                preset = get_preset(tier)
                group = []
                for run, raws in runs:
                    element, edge, kind = run.split("-")
                    text = build_feff_input(structure, site, edge, kind, preset, title=f"gnnspec {element} {edge} site {site}")
                    group.append(
                        {
                            "key": f"{tier}/{sid:06d}/{site:04d}/{run}",
                            "text": text,
                            "kind": kind,
                            "channels": raws,
                            "stage_timeout_s": preset.stage_timeout_s,
                            "screened": preset.screened_core_hole,
                        }
                    )
                f.write(json.dumps(group[0] if len(group) == 1 else {"runs": group}) + "\n")
                n += len(group)
    return n


def ingest_results(path: str | Path, results_file: str | Path, tasks_file: str | Path) -> dict:
    """Store farm results into the dataset at ``path``; returns counts. A result for a stored
    record is skipped, unless it carries the core-hole screening the stored record lacks (a
    recheck, ``export-tasks --recheck-screening``): it then replaces it (``replaced``)."""
    from gnnspec.simulate.presets import feff_version, get_preset, preset_hash

    store = SpectraStore(path, readonly=False)
    meta = store.metadata()
    if meta is None:
        raise InputError(f"{path}: not a gnnspec dataset")
    channels_of = {}
    for line in Path(tasks_file).read_text().splitlines():
        if line.strip():
            t = json.loads(line)
            for one in t.get("runs", [t]):
                channels_of[one["key"]] = one["channels"]
    data = schema.decode(Path(results_file).read_bytes())
    counts = {"spectra": 0, "failures": 0, "skipped": 0, "replaced": 0}
    version = feff_version()
    for res in data["results"]:
        if res["key"] not in channels_of:
            raise InputError(f"{results_file}: result {res['key']} is not among the tasks of {tasks_file}")
        tier, sid, site, run = res["key"].split("/")
        sid, site = int(sid), int(site)
        preset = get_preset(tier)
        if "failure" in res:
            store.put_many({schema.failure_key(sid, site, run, tier): {"message": res["failure"]}})
            counts["failures"] += 1
            continue
        items = {}
        for ch in channels_of[res["key"]]:
            key = schema.spectrum_key(sid, site, ch, tier)
            stored = store.get(key)
            if stored is not None:
                if "core_hole_screening" in stored or "core_hole_screening" not in res:
                    counts["skipped"] += 1
                    continue
                counts["replaced"] += 1
            energy, intensity = res["spectra"][ch.split("-")[-1]]
            items[key] = schema.spectrum_record(
                energy, intensity, preset.name, preset_hash(preset), version, res["seconds"], res.get("potentials_from"), res.get("core_hole_screening")
            )
        store.put_many(items)
        counts["spectra"] += len(items)
    sessions = list(meta.get("sessions", []))
    sessions.append({"offloaded_runs": len(data["results"]), "wall_seconds": data.get("wall_seconds", 0.0), "workers": data.get("workers"), "note": "computed with gnnspec.simulate.farm"})
    meta["sessions"] = sessions
    store.put_many({schema.METADATA_KEY: meta})
    return counts
