"""Rerun check: compare a benchmark run with the previous one written to the same folder.

When the previous ``results.json`` was made by the same command with the same model file (sha256)
and the same data (:meth:`gnnspec.data.store.SpectraStore.fingerprint`: a dataset that grew is
not the same), every accuracy number (forward table, inverse table, retrieval hit@k) should come
out the same up to floating-point noise, and timings within the machine's noise. The report
states the largest accuracy difference and the timing ratios, so "reproduced by a rerun" is a
number rather than a claim.
"""

from __future__ import annotations

import math

#: Accuracy sections compared number by number (their leaves are metrics, not timings).
ACCURACY_SECTIONS = ("forward", "inverse", "retrieval")
#: Timings compared as new / previous ratios: (section, key, label).
TIMINGS = (
    ("feff_vs_gnn", "feff_s_per_spectrum", "FEFF10 s per spectrum"),
    ("feff_vs_gnn", "gnn_s_per_spectrum", "gnnspec s per spectrum"),
    ("training", "structures_per_s", "training supercells/s"),
    ("worker_scaling", "speedup", "build speed-up, 2 workers"),
)


def _leaves(obj, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def comparable(previous: dict | None, current: dict) -> bool:
    """Same command, model file and data (a run that recorded no data fingerprint compares with none):
    the accuracy numbers must agree."""
    keys = ("command", "model_sha256", "data_sha256")
    return bool(previous) and current.get("data_sha256") is not None and all(previous.get(k) == current.get(k) for k in keys)


def compare_runs(previous: dict, current: dict) -> dict:
    """Largest absolute difference over the accuracy numbers, and the timing ratios (new / previous)."""
    old = {k: v for s in ACCURACY_SECTIONS for k, v in _leaves(previous.get(s, {}), s)}
    worst, worst_key, compared = 0.0, None, 0
    for key, value in (kv for s in ACCURACY_SECTIONS for kv in _leaves(current.get(s, {}), s)):
        if key not in old or math.isnan(value) or math.isnan(old[key]):
            continue
        compared += 1
        if abs(value - old[key]) > worst:
            worst, worst_key = abs(value - old[key]), key
    timings = {}
    for section, key, label in TIMINGS:
        a, b = previous.get(section, {}).get(key), current.get(section, {}).get(key)
        if a and b:
            timings[label] = b / a
    return {"previous_commit": previous.get("commit"), "compared": compared, "max_abs_diff": worst, "max_diff_at": worst_key, "timing_ratios": timings}


def rerun_section(check: dict | None) -> list[str]:
    if check is None:
        return [
            "## 6. Rerun check",
            "",
            "No previous run of the same command, model file and data (sha256 of each) to compare with: this is the "
            "first run of this model on these data; the next `make bench` of both is compared here.",
            "",
        ]
    lines = [
        "## 6. Rerun check",
        "",
        f"Compared with the previous run of the same command, model file and dataset (commit `{check['previous_commit']}`): "
        f"{check['compared']} accuracy numbers, largest absolute difference {check['max_abs_diff']:.2e}"
        + (f" (`{check['max_diff_at']}`)." if check["max_diff_at"] else "."),
        "",
        "| timing | this run / previous run |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {ratio:.2f} |" for label, ratio in check["timing_ratios"].items()]
    return lines + [""]
