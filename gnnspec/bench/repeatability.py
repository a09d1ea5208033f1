"""How much of a FEFF tier any model of the structure can learn: FEFF against itself one
hundredth of an Angstrom away.

For sites of the test split where FEFF computed the tier (``scf`` by default), every run of the
site is repeated with every atom moved at random by :data:`gnnspec.bench.convergence.DISPLACEMENT_A`
(a Gaussian per Cartesian component, far below the 0.03 A thermal displacements of the
dataset and below what a relaxation to 0.1 eV/A fixes), and each channel spectrum (normalised,
on the channel grid, as the model learns it) is compared with the stored one.

A move that small changes the physics by almost nothing, so a smooth function of the structure
(a forward model) gives nearly the same answer at both geometries. Where FEFF does not, the
difference is numerical sensitivity (such as the jumps of its RPA-screened core hole,
``docs/2026-12-06-scf-baselines-and-screening-jumps.md``), and no model can follow it. Per channel:

* ``r2_displaced``: R^2 of the moved FEFF spectrum as a prediction of the stored one, scored as
  every forward R^2 here (:func:`gnnspec.scoring.spectrum_metrics`: around the channel's mean
  spectrum over all test sites of the tier, whose per-site variance sets the denominator);
* ``ceiling_r2`` = ``1 - (1 - r2_displaced) / 2``: the R^2 a model that predicts the mean of the
  two answers would reach, if the two differed by independent noise of equal size, an estimate
  of the best R^2 against FEFF in that channel at these sites.

Control runs (``--controls``, the first sites of each element at the stored geometry) must
reproduce the stored spectra (``r2_displaced`` 1): the wheel and cards are the dataset's.

Run: ``python -m gnnspec.bench.repeatability DATA --out benchmarks/repeatability.json --elements
Co Ni --sites 10`` (one SCF and the site's shared runs per site, about 90 s each on a quiet core;
resumes from the JSON, whose ``plan`` fixes the sites, so a build that adds sites meanwhile
changes nothing); ``--markdown`` prints the table of the JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
from pathlib import Path

import numpy as np

from gnnspec.bench.convergence import DISPLACEMENT_A, displaced
from gnnspec.channels import CHANNELS, normalised_channels
from gnnspec.errors import InputError


def tier_channels(store, tier: str, element: str) -> list[str]:
    """The channels of ``element`` that the dataset's recipe computes in ``tier``."""
    config = (store.metadata() or {}).get("build_config", {})
    tiers = {config.get("preset"): config.get("channels", [])}
    tiers.update({t["preset"]: t["channels"] for t in config.get("extra_tiers", [])})
    if tier not in tiers:
        raise InputError(f"{store.path}: the recipe computes no tier {tier!r} (it has {sorted(t for t in tiers if t)})")
    return [c for c in tiers[tier] if CHANNELS[c].element == element]


def tier_test_spectra(store, tier: str, channels: list[str]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Every test-split site holding all of ``channels`` in ``tier``: ``{(sid, site): {channel: spectrum}}``."""
    out = {}
    for sid in store.structure_ids():
        if store.structure(sid)["split"] != "test":
            continue
        by_site: dict[int, dict] = {}
        for (site, run), rec in store.spectra_of(sid, tier).items():
            by_site.setdefault(site, {})[run] = (rec["energy"], rec["intensity"])
        for site, runs in sorted(by_site.items()):
            spectra = normalised_channels(runs, channels)
            if len(spectra) == len(channels):
                out[(sid, site)] = spectra
    return out


def plan_sites(store, tier: str, element: str, n_sites: int, skip: list | None = None) -> list[list[int]]:
    """``n_sites`` test sites of ``element`` with the tier, leaving out those in ``skip``: the
    lowest-index site of each test supercell in turn (supercells by id), then the next ones, so
    the sites spread over supercells."""
    channels = tier_channels(store, tier, element)
    by_supercell: dict[int, list[int]] = {}
    for sid, site in tier_test_spectra(store, tier, channels):
        by_supercell.setdefault(sid, []).append(site)
    order = [[sid, sites[k]] for k in range(max(map(len, by_supercell.values()), default=0)) for sid, sites in sorted(by_supercell.items()) if k < len(sites)]
    order = [s for s in order if s not in (skip or [])]
    if len(order) < n_sites:
        more = " more" if skip else ""
        raise InputError(f"{store.path}: the test split holds {len(order)}{more} {element} sites with the {tier} tier, not {n_sites}")
    return order[:n_sites]


def rerun_site(structure: dict, site: int, channels: list[str], tier: str, sigma_a: float, draw: int) -> tuple[dict[str, list], float]:
    """The site's channel spectra from FEFF at the structure moved by ``sigma_a`` (draw ``draw``),
    and FEFF's seconds (all runs of the site, one SCF)."""
    from pymatgen.core import Structure

    from gnnspec.simulate.runner import run_feff_site

    spectra = run_feff_site(Structure.from_dict(displaced(structure, sigma_a, draw)), site, channels, tier)
    runs = {name: (s.energy, s.intensity) for name, s in spectra.items()}
    seconds = sum({s.run.rsplit("-", 1)[0]: s.seconds for s in spectra.values()}.values())
    return {c: y.tolist() for c, y in normalised_channels(runs, channels).items()}, seconds


def jobs_of(plan: dict, controls: int, sigma_a: float, draw: int) -> list[tuple]:
    """Every rerun of a plan: ``(element, sid, site, displacement, draw)``."""
    jobs = []
    for element, sites in plan.items():
        for k, (sid, site) in enumerate(sites):
            jobs.append((element, sid, site, sigma_a, draw))
            if k < controls:
                jobs.append((element, sid, site, 0.0, 0))
    return jobs


def add_sites(store, tier: str, state: dict, sites: list[tuple[int, int]]) -> None:
    """Append the sites ``(sid, site)`` (say, a model's worst) to the plan of their element and to
    ``state["added"]``, which the table scores apart from the sites the rule chose; each must be a
    test site holding every channel of its element in ``tier``."""
    plan, added = state["plan"], state.setdefault("added", [])
    for sid, site in sites:
        record = store.structure(sid)
        species = [s["species"][0]["element"] for s in record["structure"]["sites"]]
        if record["split"] != "test" or not 0 <= site < len(species):
            raise InputError(f"{store.path}: supercell {sid} site {site} is not a site of the test split")
        element = species[site]
        if (sid, site) not in tier_test_spectra(store, tier, tier_channels(store, tier, element)):
            raise InputError(f"{store.path}: supercell {sid} site {site} ({element}) holds no {tier} spectra of all its channels")
        if [sid, site] not in plan.setdefault(element, []):
            plan[element].append([sid, site])
        if [sid, site] not in added:
            added.append([sid, site])


def _write(out: Path, state: dict) -> None:
    """Replace ``out`` with ``state`` in one step, so a stop while writing loses no rerun."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, out)


def run_plan(
    data: str, out: Path, tier: str, elements: list[str], n_sites: int, controls: int, sigma_a: float, draw: int, workers: int, extra: list | None = None
) -> dict:
    """Rerun the planned sites not yet in ``out`` (written after each site); returns the JSON's
    content. ``extra``: further ``(sid, site)`` pairs (:func:`add_sites`)."""
    from gnnspec.data.store import SpectraStore
    from gnnspec.simulate.engine import FeffRunError

    store = SpectraStore(data)
    state = json.loads(out.read_text()) if out.exists() else {"tier": tier, "plan": {}, "results": []}
    if state["tier"] != tier:
        raise InputError(f"{out}: holds the {state['tier']} tier, not {tier}")
    added = state.get("added", [])
    for element in elements:
        known = state["plan"].get(element, [])
        chosen = [s for s in known if s not in added]  # by the rule; named sites do not count
        if len(chosen) < n_sites:  # keep the recorded sites, add new ones after them
            state["plan"][element] = known + plan_sites(store, tier, element, n_sites - len(chosen), skip=known)
    add_sites(store, tier, state, extra or [])
    done = {(r["element"], r["sid"], r["site"], r["displacement"], r["draw"]) for r in state["results"]}
    todo = [j for j in jobs_of(state["plan"], controls, sigma_a, draw) if j not in done]
    _write(out, state)
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {}
        for job in todo:
            element, sid, site, sigma, d = job
            futures[pool.submit(rerun_site, store.structure(sid)["structure"], site, tier_channels(store, tier, element), tier, sigma, d)] = job
        for fut in cf.as_completed(futures):
            element, sid, site, sigma, d = futures[fut]
            try:
                spectra, seconds = fut.result()
            except FeffRunError as exc:  # reported and left out; a rerun tries it again
                print(f"{element} supercell {sid} site {site} moved {sigma} A: FEFF failed: {exc}", file=sys.stderr, flush=True)
                continue
            state["results"].append({"element": element, "sid": sid, "site": site, "displacement": sigma, "draw": d, "seconds": seconds, "spectra": spectra})
            _write(out, state)
            print(f"{element} supercell {sid} site {site} moved {sigma} A: {seconds:.0f} s", flush=True)
    return state


def repeatability_table(data: str, state: dict, model=None) -> dict[str, dict]:
    """Per channel: ``n`` sites (chosen by the rule), ``r2_displaced``, ``ceiling_r2``, the largest
    per-site change as a fraction of the channel's per-site variance, the control runs'
    ``r2_control``, and ``named_sites``: the change of each site named with ``--add`` (scored
    apart: sites picked for their error would bias the estimate). With ``model`` (predicting the
    tier) also, on the rule's moved sites, ``model_r2_stored`` (its prediction against the stored
    FEFF spectrum) and ``model_r2_mean`` (against the mean of the stored and the moved one: a
    target with FEFF's jumps halved, what a tier averaged over geometries would give)."""
    from gnnspec.data.store import SpectraStore

    store = SpectraStore(data)
    tier = state["tier"]
    predicted = _model_spectra(model, store, state) if model is not None else {}
    table = {}
    for element in state["plan"]:
        channels = tier_channels(store, tier, element)
        reference = tier_test_spectra(store, tier, channels)
        for name in channels:
            everything = np.array([s[name] for s in reference.values()])
            per_site_var = float(((everything - everything.mean(0)) ** 2).sum(1).mean())
            rows, named = {"moved": [], "control": [], "model_stored": [], "model_mean": []}, {}
            for r in state["results"]:
                if r["element"] == element and name in r["spectra"]:
                    stored, rerun = reference[(r["sid"], r["site"])][name], np.asarray(r["spectra"][name])
                    change = float(((rerun - stored) ** 2).sum())
                    if [r["sid"], r["site"]] in state.get("added", []):
                        if r["displacement"] != 0:
                            named[f"{r['sid']}/{r['site']}"] = change / per_site_var
                    else:
                        rows["control" if r["displacement"] == 0 else "moved"].append(change)
                        p = predicted.get((r["sid"], r["site"]), {}).get(name)
                        if p is not None and r["displacement"] != 0:
                            rows["model_stored"].append(float(((p - stored) ** 2).sum()))
                            rows["model_mean"].append(float(((p - 0.5 * (stored + rerun)) ** 2).sum()))
            if not rows["moved"]:
                continue
            moved = np.array(rows["moved"]) / per_site_var
            r2 = 1.0 - float(moved.mean())
            table[name] = {
                "n": len(moved),
                "n_test_sites": len(everything),
                "r2_displaced": r2,
                "ceiling_r2": 1.0 - (1.0 - r2) / 2.0,
                "largest_change": float(moved.max()),
                "sites_over_10pct": int((moved > 0.1).sum()),
                "r2_control": 1.0 - float(np.mean(rows["control"]) / per_site_var) if rows["control"] else None,
                "named_sites": named,
            }
            if rows["model_stored"]:
                table[name]["model_r2_stored"] = 1.0 - float(np.mean(rows["model_stored"]) / per_site_var)
                table[name]["model_r2_mean"] = 1.0 - float(np.mean(rows["model_mean"]) / per_site_var)
    return table


def _model_spectra(model, store, state: dict) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """``{(sid, site): {channel: spectrum}}``: ``model``'s prediction in the state's tier of every
    site rerun, normalised on the channel grids as the stored spectra are."""
    from pymatgen.core import Structure

    sites: dict[int, set] = {}
    for r in state["results"]:
        sites.setdefault(r["sid"], set()).add(r["site"])
    out = {}
    for sid, wanted in sorted(sites.items()):
        structure = Structure.from_dict(store.structure(sid)["structure"])
        for site, spectra in model.predict_site_spectra(structure, sorted(wanted), tier=state["tier"]).items():
            out[(sid, site)] = {name: y for name, (_, y) in spectra.items()}
    return out


def render(table: dict[str, dict], sigma_a: float) -> str:
    lines = [
        f"| channel | sites moved ({sigma_a} A) | test sites | R^2 moved vs stored | ceiling R^2 | largest change (of per-site variance) "
        "| sites > 0.1 | control R^2 | named sites: change |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in table.items():
        control = "-" if r["r2_control"] is None else f"{r['r2_control']:.4f}"
        named = ", ".join(f"{key}: {change:.3f}" for key, change in r.get("named_sites", {}).items()) or "-"
        lines.append(
            f"| {name} | {r['n']} | {r['n_test_sites']} | {r['r2_displaced']:.3f} | {r['ceiling_r2']:.3f} | "
            f"{r['largest_change']:.3f} | {r['sites_over_10pct']} | {control} | {named} |"
        )
    scored = {name: r for name, r in table.items() if "model_r2_stored" in r}
    if scored:
        lines += [
            "",
            "The model's prediction on the same moved sites, against the stored FEFF spectrum and against the mean of the "
            "stored and the moved one (FEFF's jumps halved: what a tier averaged over geometries would give):",
            "",
            "| channel | model R^2 vs stored | model R^2 vs mean of the two |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {name} | {r['model_r2_stored']:.3f} | {r['model_r2_mean']:.3f} |" for name, r in scored.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.repeatability", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="dataset folder (its test split supplies the sites and stored spectra)")
    p.add_argument("--out", required=True, help="JSON with the plan and every rerun (resumed when present)")
    p.add_argument("--tier", default="scf")
    p.add_argument("--elements", nargs="+", default=["Co", "Ni"], help="absorbing elements (default: Co Ni)")
    p.add_argument("--sites", type=int, default=10, help="sites per element (default 10)")
    p.add_argument("--controls", type=int, default=1, help="sites per element also rerun at the stored geometry (default 1)")
    p.add_argument("--add", nargs="+", default=[], metavar="SID:SITE", help="further test sites to rerun (say, a model's worst)")
    p.add_argument("--draw", type=int, default=1, help="seed of the random moves")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--markdown", action="store_true", help="print the table of --out (no FEFF runs)")
    p.add_argument("--model", default=None, help="also score this checkpoint's predictions on the moved sites (the shipped model: 'shipped')")
    args = p.parse_args(argv)
    try:
        out = Path(args.out)
        if args.markdown:
            if not out.exists():
                raise InputError(f"{out}: no such file (run without --markdown first)")
            state = json.loads(out.read_text())
        else:
            extra = []
            for pair in args.add:
                sid, _, site = pair.partition(":")
                if not (sid.isdigit() and site.isdigit()):
                    raise InputError(f"--add {pair}: expected SID:SITE, such as 8:9")
                extra.append((int(sid), int(site)))
            state = run_plan(args.data, out, args.tier, args.elements, args.sites, args.controls, DISPLACEMENT_A, args.draw, args.workers, extra)
        model = None
        if args.model:
            from gnnspec.models.factory import DEFAULT_MODEL, load_model

            model = load_model(DEFAULT_MODEL if args.model == "shipped" else args.model)
        print(render(repeatability_table(args.data, state, model), DISPLACEMENT_A))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
