"""``python -m gnnspec.bench [--quick]``: run every benchmark once and write ``benchmarks/report.md``.

Quick mode (``make bench QUICK=1``, under 10 minutes on 2 CPU cores) uses fewer trees, fewer
FEFF timing runs, a shorter training-throughput run and libraries of 10k and 100k entries;
the full run adds the 1M-entry library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gnnspec.bench import current_commit
from gnnspec.models.environment_table import SIMULATED


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the short run (under 10 minutes on 2 CPU cores)")
    p.add_argument("--data", default="datasets/nmc_feff10_fast", help="dataset (LMDB folder)")
    p.add_argument("--model", default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--out", default="benchmarks", help="folder for report.md and figures")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from gnnspec.bench import accuracy, retrieval, speed
    from gnnspec.bench.collect import collect_sites
    from gnnspec.bench.report import forward_figure, multimodal_figure
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.environment_set import EnvironmentSet
    from gnnspec.data.inspect import dataset_info
    from gnnspec.data.store import SpectraStore
    from gnnspec.models.factory import DEFAULT_MODEL, load_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = current_commit()
    command = "make bench QUICK=1" if args.quick else "make bench"
    caption = f"{command} at commit {commit}"
    t_start = time.time()
    model_path = args.model or DEFAULT_MODEL
    model = load_checkpoint(model_path)
    cutoff = model.cfg.backbone.cutoff
    ds = {s: LMDBStructureDataset(args.data, s, cutoff=cutoff, channels=model.cfg.channels) for s in ("train", "val", "test")}
    info = dataset_info(args.data)
    from gnnspec.bench.rerun import comparable, compare_runs
    from gnnspec.library.store import sha256_of

    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    results: dict = {
        "commit": commit,
        "command": command,
        "model": os.path.relpath(model_path),
        "model_sha256": sha256_of(Path(model_path)),
        "data": args.data,
        "data_sha256": SpectraStore(args.data).fingerprint(),
        "hardware": speed.hardware(),
    }

    print("forward accuracy ...", file=sys.stderr)
    sites = {s: collect_sites(d) for s, d in ds.items()}
    results["forward"] = accuracy.forward_table(model, ds["test"], sites["train"], sites["test"], args.quick)
    gnn = accuracy.gnn_site_predictions(model, ds["test"], sites["test"])
    from gnnspec.bench.baselines import forward_knn

    examples = {}
    for ch in results["forward"]:
        feff = sites["test"].Y[ch]
        err = ((gnn[ch] - feff) ** 2).mean(1)
        j = int(np.argsort(err)[len(err) // 2])
        knn = forward_knn(sites["train"].X[ch], sites["train"].Y[ch], sites["test"].X[ch][j : j + 1])[0]
        examples[ch] = (feff[j], gnn[ch][j], knn)
    forward_figure(examples, out / "forward_examples.png", f"median-error test spectrum per channel; {caption}")
    if len(model.cfg.tiers) > 1:  # a multi-fidelity model: its highest tier against FEFF's, where FEFF ran it
        from gnnspec.bench.fidelity import fidelity_table
        from gnnspec.bench.tier_baselines import tier_baseline_table

        results["forward_tier"] = {"tier": model.cfg.tiers[-1], "base": model.cfg.tiers[0], "table": fidelity_table(model, args.data)}
        print(f"classical baselines in the {model.cfg.tiers[-1]} tier ...", file=sys.stderr)
        tiers = [model.cfg.tiers[0], model.cfg.tiers[-1]]
        results["forward_tier"]["baselines"] = tier_baseline_table(args.data, model.cfg.channels, tiers, cutoff, 50 if args.quick else 200, model)
        from gnnspec.bench.error_groups import error_groups

        results["forward_tier"]["groups"] = error_groups(model, args.data)
        from gnnspec.bench.edge_shifts import TIER as EDGE_TIER
        from gnnspec.bench.edge_shifts import edge_shift_table

        if EDGE_TIER in model.cfg.tiers:
            results["forward_tier"]["edge_shifts"] = edge_shift_table(model, args.data)
        write_tier_pages(results["forward_tier"], model, out, page_caption(caption, args.data, model_path, model))

    print("inverse accuracy and multimodal table ...", file=sys.stderr)
    envs = {s: EnvironmentSet.from_dataset(d) for s, d in ds.items()}
    results["inverse"] = accuracy.inverse_table(model, envs["train"], envs["test"], args.quick)
    tier = getattr(model, "encoder_spectra_tier", None)
    simulated = {}
    if tier is not None:  # the encoder learned the forward model's spectra of this tier: score it there too
        from gnnspec.bench.scf_queries import score_model
        from gnnspec.models.environment_table import encoder_simulator, simulated_set

        simulated = {s: simulated_set(model, d, tier) for s, d in ds.items()}
        results["inverse_tier"] = {"tier": tier, "table": accuracy.inverse_table(model, simulated["train"], simulated["test"], args.quick)}
        results["inverse_tier"]["simulator"] = encoder_simulator(model)
        print(f"the encoder on FEFF's own {tier} spectra ...", file=sys.stderr)
        with_tier = LMDBStructureDataset(args.data, "test", cutoff=cutoff, channels=model.cfg.channels, extra_tiers=(tier,))
        queried = score_model(model, ds["train"], with_tier, tier)
        results["scf_queries"] = {"tier": tier, "simulator": encoder_simulator(model), "environments": queried["environments"], "sources": queried["sources"]}
    headline = results["inverse_tier"]["table"] if tier is not None else results["inverse"]
    multimodal_figure(headline, out / "multimodal_auroc.png", f"defect AUROC by channel set, test split{f', {tier} fidelity' if tier else ''}; {caption}")

    print("speed ...", file=sys.stderr)
    from pymatgen.core import Structure

    rec = ds["test"].record(0)
    structure = Structure.from_dict(rec["structure"])
    pick = [i for i, s in enumerate(structure) if s.specie.symbol in ("Ni", "O", "Li", "Mn", "Co")]
    rng = np.random.default_rng(0)
    timing_sites = sorted(rng.choice(pick, size=3 if args.quick else 10, replace=False).tolist())
    results["feff_vs_gnn"] = speed.feff_vs_gnn(model, structure, timing_sites)
    if not args.quick:  # the scf tier's cost: an O site (1 run) and a Ni site (K, L3, L2): about 6 minutes
        scf_sites = [next(i for i, s in enumerate(structure) if s.specie.symbol == el) for el in ("O", "Ni")]
        results["scf_cost"] = speed.scf_cost(structure, scf_sites)
    from gnnspec.train.config import load_train_config

    tcfg = load_train_config("train_configs/cpu.yaml")
    train_model = load_checkpoint(model_path)
    results["training"] = speed.training_throughput(train_model, tcfg, [ds["train"][i] for i in range(len(ds["train"]))], steps=5 if args.quick else 20)
    results["build"] = speed.build_throughput(info)
    from gnnspec.bench.gpu import inference_throughput

    n_inf = 4 if args.quick else len(ds["test"])
    results["inference"] = inference_throughput(model_path, [Structure.from_dict(ds["test"].record(i)["structure"]) for i in range(n_inf)])
    results["worker_scaling"] = speed.worker_scaling(n_structures=1 if args.quick else 2)

    print("retrieval ...", file=sys.stderr)
    lib = EnvironmentSet.concat([envs["train"], envs["val"]])
    lib_emb = np.concatenate([retrieval.structure_embeddings(model, ds["train"]), retrieval.structure_embeddings(model, ds["val"])])
    q_emb = retrieval.spectrum_embeddings(model, envs["test"])
    results["retrieval"] = retrieval.label_match(lib, lib_emb, envs["test"], q_emb)
    if model.encoder.takes_quantification:
        q_quant = retrieval.spectrum_embeddings(model, envs["test"], amounts=envs["test"].amounts("exact"))
        results["retrieval"]["quantified"] = retrieval.label_match(lib, lib_emb, envs["test"], q_quant)
        from gnnspec.quantification.k_factors import read_k_factors

        amounts = EnvironmentSet.from_dataset(ds["test"], read_k_factors()).amounts("intensities")
        q_int = retrieval.spectrum_embeddings(model, envs["test"], amounts=amounts)
        results["retrieval"]["intensity_quantified"] = retrieval.label_match(lib, lib_emb, envs["test"], q_int)
    if simulated:
        results["retrieval_tier"] = retrieval.label_match(lib, lib_emb, simulated["test"], retrieval.spectrum_embeddings(model, simulated["test"]))
        if model.encoder.takes_quantification:
            q_quant = retrieval.spectrum_embeddings(model, simulated["test"], amounts=simulated["test"].amounts("exact"))
            results["retrieval_tier"]["quantified"] = retrieval.label_match(lib, lib_emb, simulated["test"], q_quant)
    print("robustness ...", file=sys.stderr)
    from gnnspec.bench import robustness

    clean, spectra = robustness.clean_test_set(model, ds["test"])
    results["robustness"] = robustness.robustness_table(model, lib, lib_emb, clean)
    (out / "robustness.md").write_text(robustness.render({"spectra": spectra, "settings": results["robustness"]}, caption))
    from gnnspec.bench import measured

    if not args.quick and measured.REFERENCE_DIR.is_dir():  # about 15 minutes: FEFF scf runs of the reference oxides
        print("measured references ...", file=sys.stderr)
        measured_result = measured.measured_benchmark(model)
        measured_result["shared_eels"] = measured.shared_eels_answer(model_path)
        measured_result["reference_edges"] = measured.reference_edge_answers(model_path)
        from gnnspec.bench.measured_findings import nmc_edge_spread

        measured_result["nmc_edge_spread_eV"] = nmc_edge_spread((results.get("forward_tier") or {}).get("edge_shifts"))
        (out / "measured.md").write_text(measured.render(measured_result, caption))
        (out / "measured.json").write_text(json.dumps(measured_result, indent=1))
    results["scale"] = retrieval.scale_table([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    results["wall_s"] = time.time() - t_start
    results["rerun"] = compare_runs(previous, results) if comparable(previous, results) else None

    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "report.md").write_text(render(results, info, caption))
    print(f"wrote {out / 'report.md'} in {results['wall_s'] / 60:.1f} min", file=sys.stderr)
    return 0


def render(r: dict, info: dict, caption: str) -> str:
    from gnnspec.bench.report import _f, forward_section, inverse_section

    lines = [
        "# gnnspec benchmarks",
        "",
        f"Produced by `{r['command']}` at commit `{r['commit']}`; model `{r['model']}`; dataset `{r['data']}` "
        + (f"(data sha256 `{r['data_sha256'][:12]}`, " if r.get("data_sha256") else "(")
        + f"{info['structures']} supercells, {info['spectra']} FEFF10 spectra, splits {info['splits']}). "
        f"Hardware: {', '.join(f'{k} {v}' for k, v in r['hardware'].items())}. Wall time {r['wall_s'] / 60:.1f} min. "
        "Timings are wall-clock on that machine; a rerun of the same command with the same model is compared in section 6.",
        "",
    ]
    lines += forward_section(r["forward"])
    lines += ["![forward examples](forward_examples.png)", "", f"*Figure: {caption}.*", ""]
    if r.get("forward_tier"):
        from gnnspec.bench.report import tier_forward_section

        lines += tier_forward_section(r["forward_tier"]["table"], r["forward_tier"]["tier"], r["forward_tier"]["base"], r["forward_tier"].get("baselines"))
        if r["forward_tier"].get("groups"):
            from gnnspec.bench import error_groups

            lines += [
                f"## 1c. Where the {r['forward_tier']['tier']}-tier error sits",
                "",
                f"The model's {r['forward_tier']['tier']} prediction per group of test sites, R^2 around the channel's overall mean "
                "(site counts in brackets; `gnnspec.bench.error_groups`). How much of the tier any model can learn (FEFF against "
                "itself at a geometry moved by 0.01 A; FEFF runs, not part of this report): `benchmarks/repeatability.md`; "
                "how many more scf runs each channel would need (`python -m gnnspec.bench.learning_curve`, not part of this "
                "report): `benchmarks/learning_curve.md`.",
                "",
                *error_groups.render(r["forward_tier"]["groups"]),
                "",
            ]
        if r["forward_tier"].get("edge_shifts"):
            from gnnspec.bench import edge_shifts

            _, intro, table_lines = edge_shifts.describe(None, r["forward_tier"]["edge_shifts"])
            lines += ["## 1d. K-edge shifts with Li content and bond length", "", intro, "", *table_lines, ""]
    tier = (r.get("inverse_tier") or {}).get("tier")
    lines += inverse_section(
        r["inverse"],
        note="The encoder of this model learned the forward model's " + tier + "-tier spectra; these FEFF base-tier queries are foreign to it "
        "(section 2-3b is its own fidelity)." if tier else "",
    )
    if tier:
        lines += inverse_section(
            r["inverse_tier"]["table"],
            title=f"## 2-3b. Inverse accuracy and the multimodal table at {tier} fidelity (test environments)",
            note=f"Queries: the {SIMULATED[r['inverse_tier'].get('simulator', 'own')]}'s {tier}-tier environment spectra of every test "
            f"environment (FEFF ran {tier} on two sites per element and supercell, too few to give every environment its spectra), "
            f"as the encoder learned them; the seed method trains on the same {tier} spectra of the training environments "
            "(`gnnspec.models.environment_table.simulated_set`).",
        )
        if r.get("scf_queries"):
            from gnnspec.bench.scf_queries import section

            lines += section(r["scf_queries"], f"## 2-3c. The encoder on FEFF's own {tier} spectra (test environments with FEFF {tier})")
    lines += ["![multimodal AUROC](multimodal_auroc.png)", "", f"*Figure: {caption}.*", ""]
    lines += claim(r["inverse_tier"]["table"] if tier else r["inverse"])
    f, t = r["feff_vs_gnn"], r["training"]
    b, w = r["build"], r["worker_scaling"]
    lines += [
        "## 4. Speed",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| FEFF10 (preset fast, one core) per spectrum | {_f(f['feff_s_per_spectrum'], 2)} s ({f['feff_spectra']} spectra, {f['sites']} sites) |",
        f"| gnnspec batch inference per spectrum, same structure and sites | {_f(f['gnn_s_per_spectrum'] * 1e3, 2)} ms |",
        f"| speed-up | {_f(f['speedup'], 0)}x |",
        f"| training throughput ({t['device']}) | {_f(t['structures_per_s'], 2)} supercells/s, {_f(t['environments_per_s'], 1)} environments/s |",
        f"| dataset build: median FEFF run | {_f(b['median_s_per_run'], 2)} s; {_f(b['runs_per_core_hour'], 0)} runs per core-hour; {_f(b['spectra_per_run'], 2)} spectra per run |",
        f"| dataset build: 1 vs 2 workers ({w['runs']} runs) | {_f(w['wall_s_1_worker'], 1)} s vs {_f(w['wall_s_2_workers'], 1)} s: speed-up {_f(w['speedup'], 2)} |",
        *scf_cost_rows(r.get("scf_cost"), f["gnn_s_per_spectrum"]),
        *inference_rows(r.get("inference")),
        "",
        "## 5. Retrieval",
        "",
        f"Label match (library: structure embeddings of {r['retrieval']['library']} train+val environments; queries: FEFF "
        f"spectra of {r['retrieval']['queries']} test environments; a match has the same defect labels and element content within 0.05): "
        f"hit@1 = {_f(r['retrieval']['hit@1'])}, hit@5 = {_f(r['retrieval']['hit@5'])} (cosine ranking); "
        f"hit@1 = {_f(r['retrieval']['consensus']['hit@1'])}, hit@5 = {_f(r['retrieval']['consensus']['hit@5'])} "
        f"(consensus ranking, pool {r['retrieval']['consensus']['pool']}: the best-supported label class first, distinct alternatives after).",
        "",
    ]
    quantified_queries = (
        ("quantified", "each with its exact elemental quantification (the model reads one; `gnnspec.quantification`)"),
        (
            "intensity_quantified",
            "each with the quantification its own FEFF spectra hold in their intensities (integrated raw "
            "intensity summed over the environment's atoms / the shipped per-atom k-factors; `gnnspec.quantification.intensities`, no "
            "label used)",
        ),
    )
    for key, queries in quantified_queries:
        qr = r["retrieval"].get(key)
        if qr:
            lines += [
                f"The same queries, {queries}: hit@1 = {_f(qr['hit@1'])}, hit@5 = {_f(qr['hit@5'])} (cosine); "
                f"hit@1 = {_f(qr['consensus']['hit@1'])}, hit@5 = {_f(qr['consensus']['hit@5'])} (consensus).",
                "",
            ]
    rt = r.get("retrieval_tier")
    if rt:
        line = (
            f"At {tier} fidelity (queries: the forward model's {tier}-tier spectra of the test environments, which the encoder learned): "
            f"hit@1 = {_f(rt['hit@1'])}, hit@5 = {_f(rt['hit@5'])} (cosine); hit@1 = {_f(rt['consensus']['hit@1'])} (consensus)"
        )
        if rt.get("quantified"):
            line += f"; with the exact quantification hit@1 = {_f(rt['quantified']['hit@1'])} (cosine), {_f(rt['quantified']['consensus']['hit@1'])} (consensus)"
        lines += [line + ".", ""]
    lines += [
        "Scale (random unit vectors, dimension 128, not embeddings: `uniform` on the sphere, the worst case for "
        "approximate search, and `clustered` around one random centre per 100 vectors; queries are library vectors "
        "with 5 % noise; single-query latency on this machine; IVF-PQ candidates re-scored exactly as a library does). "
        "recall@1: the query's source vector comes first; recall@10: overlap with exact search's top 10.",
        "",
        "| vectors | entries | index | parameters | build (s) | p50 (ms) | p99 (ms) | recall@1 | recall@10 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in r["scale"]:
        params = ", ".join(f"{k} {v}" for k, v in row.get("params", {}).items()) or "-"
        lines.append(
            f"| {row.get('distribution', 'uniform')} | {row['entries']:,} | {row['index']} | {params} | {_f(row['build_s'], 2)} "
            f"| {_f(row['p50_ms'], 3)} | {_f(row['p99_ms'], 3)} | {_f(row.get('recall@1', float('nan')))} | {_f(row['recall@10'])} |"
        )
    lines.append("")
    from gnnspec.bench.rerun import rerun_section

    lines += rerun_section(r.get("rerun"))
    return "\n".join(lines) + "\n"


def page_caption(caption: str, data: str, model_path, model) -> str:
    """The caption of a standalone page that ``make bench`` writes: the command, data and model."""
    from gnnspec.bench.fidelity import _data_label, _members_note

    return f"`{caption}`; {_data_label(data)}; model {os.path.relpath(model_path)}{_members_note(model)}"


def write_tier_pages(forward_tier: dict, model, out: Path, caption: str) -> None:
    """The standalone pages of report sections 1b-1d (``tier_baselines.md``, ``error_groups.md``,
    ``edge_shifts.md``, each with its JSON), from the same tables as the report, so that the pages
    and the report never disagree. Each page's module also writes it alone (``python -m
    gnnspec.bench.error_groups`` and so on)."""
    from gnnspec.bench import edge_shifts, error_groups, tier_baselines, write_table_page

    for key, module in (("baselines", tier_baselines), ("groups", error_groups), ("edge_shifts", edge_shifts)):
        if forward_tier.get(key):
            write_table_page(out / f"{module.__name__.rsplit('.', 1)[1]}.md", module.describe(model, forward_tier[key]), forward_tier[key], caption)


def claim(inverse: dict) -> list[str]:
    """State plainly what the multimodal table shows, from the numbers themselves."""
    from gnnspec.channels import CHANNEL_NAMES
    from gnnspec.labels import DEFECTS

    lines = ["### What the multimodal table shows", ""]
    for method in ("gnnspec", "seed (XGBoost)"):
        for d in DEFECTS:
            singles = {c: inverse[c][method][f"auroc_{d}"] for c in CHANNEL_NAMES if c in inverse and method in inverse[c]}
            singles = {c: v for c, v in singles.items() if v == v}
            if "all channels" not in inverse or method not in inverse["all channels"] or not singles:
                continue
            best_c = max(singles, key=singles.get)
            allv = inverse["all channels"][method][f"auroc_{d}"]
            verdict = "higher than" if allv > singles[best_c] + 0.01 else ("about equal to" if abs(allv - singles[best_c]) <= 0.01 else "lower than")
            lines.append(f"- {method}, {d}: all channels AUROC {allv:.3f} is {verdict} the best single channel ({best_c}, {singles[best_c]:.3f}).")
    return lines + [""]


def inference_rows(inf: dict | None) -> list[str]:
    """Table rows of :func:`gnnspec.bench.gpu.inference_throughput`: per device, one call per structure against batched."""
    from gnnspec.bench.report import _f

    if not inf:
        return []
    return [
        f"| inference, {dev} ({d['threads']} threads), {inf['structures']} test supercells, every site | "
        f"{_f(d['per_structure_spectra_per_s'], 0)} spectra/s one structure per call; {_f(d['batched_spectra_per_s'], 0)} spectra/s "
        f"batched ({inf['batch_size']} per pass, `predict_many`): {_f(d['batched_speedup'], 2)}x |"
        for dev, d in inf["devices"].items()
    ]


def scf_cost_rows(cost: dict | None, gnn_s_per_spectrum: float | None = None) -> list[str]:
    """Table rows of the scf tier's cost (:func:`gnnspec.bench.speed.scf_cost`); none for a quick run.
    ``gnn_s_per_spectrum``: the surrogate's time per spectrum, for the speed-up over FEFF scf (one
    spectrum per scf run: an L2,3 spectrum takes an L3 and an L2 run, a K spectrum one run)."""
    from gnnspec.bench.report import _f

    if not cost:
        return []
    runs = ", ".join(f"{r['run']} {_f(r['seconds'], 0)} s" for r in cost["runs"])
    rows = [
        f"| FEFF10 tier scf (one core): runs | {runs} |",
        f"| FEFF10 tier scf: per run, SCF share | {_f(cost['seconds_per_run'], 1)} s; {_f(100 * cost['pot_share'], 0)} % in FEFF's pot stage (the SCF) |",
    ]
    shared = cost.get("shared")
    if shared:  # one SCF per site (gnnspec.simulate.ground_state)
        rows.append(
            f"| FEFF10 tier scf: runs per core-hour (CPU time of FEFF) | {_f(shared['runs_per_core_hour_before'], 0)} with an SCF per run -> "
            f"{_f(shared['runs_per_core_hour_after'], 0)} with one SCF per site (these sites); {_f(cost['recipe_runs_per_core_hour'], 0)} for the recipe's mix "
            f"(Li K, O K, TM K + L3 + L2); shared-SCF spectra against own-SCF ones: smallest cosine {_f(shared['min_cosine'], 6)} |"
        )
    else:
        rows.append(f"| FEFF10 tier scf: runs per core-hour | {_f(cost['runs_per_core_hour'], 0)} (an SCF per run) |")
    if gnn_s_per_spectrum:
        rows.append(
            f"| gnnspec against FEFF scf, per spectrum | {_f(gnn_s_per_spectrum * 1e3, 2)} ms against {_f(cost['seconds_per_run'], 1)} s or more: "
            f"{_f(cost['seconds_per_run'] / gnn_s_per_spectrum, 0)}x or more |"
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
