"""A measured benchmark: reference oxides' measured K edges against FEFF (both tiers) and the forward model.

The references (``shared/data/experimental_reference``): Mn K spectra of MnO, Mn3O4, Mn2O3 and
beta-MnO2 (XDI files, SSRL 4-3, three scans each, calibrated with their Mn foil channel) and of
MnO, Mn3O4, Mn2O3, Li2MnO3 and pyrolusite (Athena, APS 10-ID, with Athena's energy shifts);
the Ni K edge of NiO (Athena, NSLS X23A2). Their structures are built from published
crystallographic parameters (:mod:`gnnspec.structures.references`).

For every compound the simulated spectrum is the multiplicity-weighted mean over its
symmetry-inequivalent absorbing sites, from FEFF ``fast``, FEFF ``scf`` and the forward model.
Each spectrum is put on the channel grid (:mod:`gnnspec.channels`) and compared with the
measured one:

* **edge position**: the half-step energy (:func:`gnnspec.edge_position.half_step_energy`), the
  same rule for every spectrum; the error is simulated minus measured (eV). FEFF's absolute edge
  energies are off by a few eV per edge: the mean error over the compounds is that offset, and
  the spread around it is what an offset per channel and tier cannot remove;
* **shape**: Spearman rank correlation and cosine similarity on the channel grid after the
  simulated spectrum is shifted onto the measured edge position (no extra broadening);
* **valence order**: whether the edge positions of the Mn oxides rise with the Mn valence.

FEFF ``scf`` is the ceiling a surrogate of it can reach. The FEFF rows also fit the edge offset
of each channel and tier (:mod:`gnnspec.edge_offsets`), which ``--write-offsets`` stores as the
shipped table. Run alone: ``python -m gnnspec.bench.measured --out benchmarks/measured.md``
(about 15 minutes: the scf runs); ``--from-json benchmarks/measured.json`` re-renders a previous
run's rows (and refits the offsets) without running FEFF, and with ``--model`` recomputes only the
forward model's rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from gnnspec.channels import CHANNELS
from gnnspec.edge_position import half_step_energy

REFERENCE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "experimental_reference"

#: Measured spectra: compound -> [(channel, source label, file spec read by gnnspec.measured.readers)].
MEASURED = {
    "MnO": [("Mn-K-xas", "SSRL XDI", "xdi/MnO_rt_0{}.xdi"), ("Mn-K-xas", "APS Athena", "athena/Mn.prj@MnO")],
    "Mn3O4": [("Mn-K-xas", "SSRL XDI", "xdi/Mn3O4_rt_0{}.xdi"), ("Mn-K-xas", "APS Athena", "athena/Mn.prj@Mn3O4")],
    "Mn2O3": [("Mn-K-xas", "SSRL XDI", "xdi/Mn2O3_rt_0{}.xdi"), ("Mn-K-xas", "APS Athena", "athena/Mn.prj@Mn2O3x")],
    "beta-MnO2": [("Mn-K-xas", "SSRL XDI", "xdi/MnO2_rt_0{}.xdi"), ("Mn-K-xas", "APS Athena", "athena/Mn.prj@Pyrolusite")],
    "Li2MnO3": [("Mn-K-xas", "APS Athena", "athena/Mn.prj@Li2MnO3")],
    "NiO": [("Ni-K-xas", "NSLS Athena", "athena/NiO.prj@NiO")],
}
VALENCE = {"MnO": 2.0, "Mn3O4": 8.0 / 3.0, "Mn2O3": 3.0, "beta-MnO2": 4.0, "Li2MnO3": 4.0}


def measured_on_grid(channel: str, spec: str) -> tuple[np.ndarray, dict]:
    """The measured spectrum (mean of the scans a ``{}`` spec expands to) on the channel grid, calibrated
    (XDI: reference foil; Athena: the record's energy shift), pre-edge line removed."""
    from gnnspec.measured.readers import read_measured
    from gnnspec.measured.xdi import calibrate_to_reference, read_xdi

    ch = CHANNELS[channel]
    files = [spec.format(i) for i in (1, 2, 3)] if "{}" in spec else [spec]
    rows, shifts = [], []
    for f in files:
        path = REFERENCE_DIR / f
        m = read_measured(path)
        shift = calibrate_to_reference(read_xdi(path)).shift if m.meta.get("format") == "XDI" else 0.0
        shifts.append(shift + m.meta.get("athena_energy_shift_eV", 0.0))
        e = m.energy + shift
        pre = (e >= ch.edge_energy - 30.0) & (e <= ch.edge_energy - 10.0)
        line = np.polyfit(e[pre], m.intensity[pre], 1)
        rows.append(np.interp(ch.grid, e, m.intensity - np.polyval(line, e)))
    return np.mean(rows, axis=0), {"scans": len(files), "calibration_shift_eV": float(np.mean(shifts))}


def inequivalent_sites(structure, element: str) -> list[tuple[int, int]]:
    """(site index, multiplicity) of each symmetry-inequivalent ``element`` site."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sym = SpacegroupAnalyzer(structure, symprec=0.01).get_symmetrized_structure()
    return [(structure.index(group[0]), len(group)) for group in sym.equivalent_sites if group[0].specie.symbol == element]


def simulated_on_grid(structure, channel: str) -> dict[str, np.ndarray]:
    """Multiplicity-weighted mean FEFF spectra on the channel grid: ``fast`` and ``scf`` (the
    model's: :func:`model_on_grid`)."""
    from gnnspec.simulate.runner import run_feff_site

    ch = CHANNELS[channel]
    sites = inequivalent_sites(structure, ch.element)
    weights = np.array([m for _, m in sites], dtype=float) / sum(m for _, m in sites)
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tier in ("fast", "scf"):
            rows = []
            for site, _ in sites:
                sp = run_feff_site(structure, site, [channel], preset=tier, log_path=Path(tmp) / "feff.log")[channel]
                rows.append(np.interp(ch.grid, sp.energy, sp.intensity))
            out[f"FEFF {tier}"] = np.tensordot(weights, np.array(rows), axes=1)
    return out


def model_label(model) -> str:
    """The method name of the forward model's rows: with its tier when it predicts several."""
    return "forward model" if len(model.cfg.tiers) == 1 else f"forward model ({model.cfg.tiers[-1]})"


def model_on_grid(structure, channel: str, model) -> tuple[dict[str, np.ndarray], float | None]:
    """One prediction of the compound's inequivalent sites in the model's highest tier:
    ``({model_label: spectrum}, edge spread)``, both multiplicity-weighted over the sites. The
    spectrum is on the channel grid; the edge spread (eV) is the forward models' calibrated spread
    of the edge (``gnnspec predict``'s ``edge_spread_eV``), None without a forward ensemble and
    its edge calibration."""
    sites = inequivalent_sites(structure, CHANNELS[channel].element)
    weights = np.array([m for _, m in sites], dtype=float) / sum(m for _, m in sites)
    (pred,), (edges,) = model.predict_many([structure], [[s for s, _ in sites]], return_edges=True)
    spectrum = np.tensordot(weights, np.array([pred[s][channel][1] for s, _ in sites]), axes=1)
    spreads = [(edges.get(s, {}).get(channel) or {}).get("edge_spread_eV") for s, _ in sites]
    spread = None if any(x is None for x in spreads) else float(np.average(spreads, weights=weights))
    return {model_label(model): spectrum}, spread


def compare(grid: np.ndarray, measured: np.ndarray, simulated: np.ndarray, edge_energy: float) -> dict:
    """Edge-position error and shape similarity (after moving the simulated edge onto the measured one)."""
    e_meas, e_sim = half_step_energy(grid, measured, edge_energy), half_step_energy(grid, simulated, edge_energy)
    moved = np.interp(grid, grid + (e_meas - e_sim), simulated)
    return {
        "edge_measured_eV": e_meas,
        "edge_simulated_eV": e_sim,
        "edge_error_eV": e_sim - e_meas,
        "spearman": float(spearmanr(moved, measured).statistic),
        "cosine": float(moved @ measured / (np.linalg.norm(moved) * np.linalg.norm(measured))),
    }


def measured_benchmark(model=None) -> dict:
    """Every reference compound against every simulation: rows of :func:`compare`, and the valence order."""
    from gnnspec.structures.references import reference_structure

    rows, spreads = [], {}
    for compound, entries in MEASURED.items():
        structure = reference_structure(compound)
        channel = entries[0][0]
        ch = CHANNELS[channel]
        simulated = simulated_on_grid(structure, channel)
        if model is not None and channel in model.cfg.channels:
            predicted, spreads[compound] = model_on_grid(structure, channel, model)
            simulated.update(predicted)
        for _, source, spec in entries:
            measured, info = measured_on_grid(channel, spec)
            for method, y in simulated.items():
                rows.append({"compound": compound, "channel": channel, "measured": source, "method": method, **info, **compare(ch.grid, measured, y, ch.edge_energy)})
    return summarise(rows) | ({"model_edge_spread_eV": {model_label(model): spreads}} if model is not None else {})


def with_model_rows(result: dict, model) -> dict:
    """``result`` (a previous run's, FEFF rows kept) with the forward-model rows of ``model`` in place
    of any earlier model's: a new model is scored without rerunning FEFF."""
    from gnnspec.structures.references import reference_structure

    rows = [r for r in result["rows"] if r["method"].startswith("FEFF ")]
    out, spreads = [], {}
    for compound, entries in MEASURED.items():
        channel = entries[0][0]
        ch = CHANNELS[channel]
        structure = reference_structure(compound)
        simulated, spreads[compound] = model_on_grid(structure, channel, model)
        out += [r for r in rows if r["compound"] == compound]
        for _, source, spec in entries:
            measured, info = measured_on_grid(channel, spec)
            for method, y in simulated.items():
                out.append({"compound": compound, "channel": channel, "measured": source, "method": method, **info, **compare(ch.grid, measured, y, ch.edge_energy)})
    return summarise(out) | {"model_edge_spread_eV": {model_label(model): spreads}}


def summarise(rows: list[dict]) -> dict:
    """The benchmark result of comparison ``rows``: the rows, the valence order per method and the measured edges."""
    order = {}
    for method in sorted({r["method"] for r in rows}):
        mn = {r["compound"]: r["edge_simulated_eV"] for r in rows if r["method"] == method and r["compound"] in VALENCE}
        pairs = [(a, b) for a in mn for b in mn if VALENCE[a] < VALENCE[b]]
        order[method] = {"edges_eV": mn, "pairs_in_valence_order": sum(mn[a] < mn[b] for a, b in pairs), "pairs": len(pairs)}
    meas = {}
    for r in rows:
        if r["compound"] in VALENCE:
            meas.setdefault(r["measured"], {})[r["compound"]] = r["edge_measured_eV"]
    return {"rows": rows, "valence_order": order, "measured_edges_eV": meas}


def edge_offset_rows(result: dict) -> list[dict]:
    """The FEFF rows of a benchmark result, with their tier, for :func:`gnnspec.edge_offsets.fit_edge_offsets`."""
    return [{**r, "tier": r["method"].removeprefix("FEFF ")} for r in result["rows"] if r["method"].startswith("FEFF ")]


def render_offsets(result: dict) -> list[str]:
    """The offset table's lines for ``benchmarks/measured.md``."""
    from gnnspec.edge_offsets import fit_edge_offsets

    def num(x) -> str:
        return "-" if x is None or x != x else f"{x:.2f}"

    lines = [
        "",
        "Edge offsets, measured - FEFF (eV), one per channel and tier (`gnnspec/edge_offsets.py`; compounds weigh equally; "
        "leave-one-compound-out RMS: each compound's edge error after the offset fitted on the others):",
        "",
        "| channel | tier | offset | spread | RMS without offset | leave-one-out RMS | compounds (spectra) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (channel, tier), o in fit_edge_offsets(edge_offset_rows(result)).items():
        lines.append(f"| {channel} | {tier} | {o.offset_eV:+.2f} | {num(o.spread_eV)} | {num(o.raw_rms_eV)} | {num(o.loco_rms_eV)} | {o.n_compounds} ({o.n_spectra}) |")
    return lines


def render(result: dict, caption: str) -> str:
    """``benchmarks/measured.md``."""
    from gnnspec.bench.measured_findings import findings

    lines = ["# Measured reference spectra against FEFF and the forward model", "", f"*{caption}. Method: `gnnspec/bench/measured.py`.*", ""]
    lines += findings(result)
    lines += ["| compound | measured | method | edge error (eV) | Spearman | cosine |", "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['compound']} | {r['measured']} | {r['method']} | {r['edge_error_eV']:+.2f} | {r['spearman']:.3f} | {r['cosine']:.4f} |")
    lines += ["", "Edge positions of the Mn compounds (eV) and how many valence-ordered pairs they keep:", ""]
    spreads = result.get("model_edge_spread_eV") or {}
    for method, o in result["valence_order"].items():
        spread = spreads.get(method) or {}
        edges = ", ".join(f"{k} {v:.1f}" + (f" ± {spread[k]:.1f}" if spread.get(k) is not None else "") for k, v in o["edges_eV"].items())
        lines.append(f"- {method}: {edges}; {o['pairs_in_valence_order']} of {o['pairs']} pairs in valence order")
    if any(v is not None for by_compound in spreads.values() for v in by_compound.values()):
        lines += [
            "",
            "± : the forward models' calibrated edge spread (`gnnspec predict`'s `edge_spread_eV`, "
            "`gnnspec.models.predicted_edges`; k times their standard deviation, FEFF's edge inside it at 68 % of "
            "validation sites), multiplicity-weighted over each compound's sites.",
        ]
    for source, edges in result["measured_edges_eV"].items():
        lines.append(f"- measured ({source}): " + ", ".join(f"{k} {v:.1f}" for k, v in edges.items()))
    lines += render_offsets(result)
    lines += render_reference_edges(result.get("reference_edges"))
    lines += render_eels(result.get("shared_eels"))
    return "\n".join(lines) + "\n"


#: The shared NMC STEM-EELS (beside the references): edge files and the zero-loss spectrum.
EELS_DIR = REFERENCE_DIR.parent / "experimental_eels_nmc"
EELS_INPUTS = (("oxygen_edge.msa", "O-K-eels"), ("Mn_edge.msa", "Mn-L23-eels"), ("Ni_edge.msa", "Ni-L23-eels"))


def shared_eels_answer(model_path) -> dict | None:
    """The shared NMC EELS through ``gnnspec convert`` (zero-loss calibrated; its low loss, for the
    resolution and t/lambda) and ``gnnspec infer`` with the model at ``model_path``, as a user runs
    them (the command line in a child process: the bench sits below the CLI): the answer's support
    verdict, per-channel similarities, defects and spreads. None when the shared data are absent."""
    if not EELS_DIR.is_dir():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        converted, answer = Path(tmp) / "nmc.json", Path(tmp) / "answer.json"
        inputs = [f"{EELS_DIR / name}:{channel}" for name, channel in EELS_INPUTS]
        zlp = str(EELS_DIR / "zero_loss.msa")
        run_cli("convert", *inputs, "--zero-loss", zlp, "--low-loss", zlp, "--out", str(converted))
        run_cli("infer", str(converted), "--model", str(model_path), "--out", str(answer))
        return json.loads(answer.read_text())


def run_cli(*args: str) -> None:
    """``gnnspec ARGS`` in a child process with this interpreter; its error message when it fails."""
    done = subprocess.run([sys.executable, "-m", "gnnspec", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"gnnspec {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")


#: What an edge record of ``gnnspec infer`` gives the reference table.
EDGE_FIELDS = ("edge_as_given_eV", "edge_eV", "training_p01_eV", "training_p99_eV", "energy_scale_tolerance_eV", "inside_training_range")


def reference_edge_answers(model_path, compounds: list[str] | None = None) -> list[dict] | None:
    """Each measured reference spectrum (the first scan of an XDI set) through ``gnnspec convert
    --energy reference`` (the XDI foil calibration, or Athena's energy shift) and ``gnnspec infer``
    with the model at ``model_path``, as a user runs them: the edge infer places against the
    training edges (:func:`gnnspec.models.predicted_edges.measured_edges`) and the support verdict.
    ``compounds``: only these (default every one). None when the references are absent."""
    if not REFERENCE_DIR.is_dir():
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        converted, answer = Path(tmp) / "reference.json", Path(tmp) / "answer.json"
        for compound, entries in MEASURED.items():
            if compounds is not None and compound not in compounds:
                continue
            for channel, source, spec in entries:
                name = spec.format(1) if "{}" in spec else spec
                run_cli("convert", f"{REFERENCE_DIR / name}:{channel}", "--energy", "reference", "--out", str(converted))
                run_cli("infer", str(converted), "--model", str(model_path), "--out", str(answer))
                result = json.loads(answer.read_text())
                edge = result.get("edges", {}).get(channel) or {}
                rows.append(
                    {"compound": compound, "measured": source, "file": name, "channel": channel, "in_distribution": result["support"]["in_distribution"]}
                    | {k: edge.get(k) for k in EDGE_FIELDS}
                )
    return rows


def render_reference_edges(rows: list[dict] | None) -> list[str]:
    """The reference-edge section of ``benchmarks/measured.md``."""
    if not rows:
        return []

    def num(x) -> str:
        return "-" if x is None else f"{x:.1f}"

    lines = [
        "",
        "## The reference spectra through convert and infer: where their K edge lies",
        "",
        "Each measured reference (first scan) through `gnnspec convert --energy reference` and `gnnspec infer`: the "
        "half-step edge on its calibrated scale and on the encoder tier's FEFF scale, against the 1st-99th percentile of "
        "FEFF's edges over the training split, give or take the energy scale's error (`gnnspec.models.predicted_edges`); "
        "and the support verdict (shapes and embedding).",
        "",
        "| compound | measured | edge as measured (eV) | FEFF scale (eV) | training edges (eV) | scale error (eV) | edge verdict | support |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["edge_eV"] is None or r["training_p01_eV"] is None:
            verdict = "-"
        elif r["inside_training_range"]:
            verdict = "inside"
        else:
            below = r["training_p01_eV"] - r["edge_eV"]
            verdict = f"{below:.1f} eV below" if below > 0 else f"{r['edge_eV'] - r['training_p99_eV']:.1f} eV above"
        lines.append(
            f"| {r['compound']} | {r['measured']} | {num(r['edge_as_given_eV'])} | {num(r['edge_eV'])} | "
            f"{num(r['training_p01_eV'])}-{num(r['training_p99_eV'])} | {num(r['energy_scale_tolerance_eV'])} | {verdict} | "
            f"{'in distribution' if r['in_distribution'] else 'out of distribution'} |"
        )
    return lines


def render_eels(answer: dict | None) -> list[str]:
    """The shared-EELS section of ``benchmarks/measured.md``."""
    if answer is None:
        return []
    s = answer["support"]
    lines = [
        "",
        "## The shared NMC STEM-EELS through convert and infer",
        "",
        f"O K, Mn L2,3 and Ni L2,3 EELS of `shared/data/experimental_eels_nmc` (`gnnspec convert` with its zero-loss "
        f"spectrum as `--zero-loss` and `--low-loss`, then `gnnspec infer`; encoder tier {answer['energy_scale']['encoder_tier']}). "
        f"Verdict: **{'in distribution' if s['in_distribution'] else 'out of distribution'}**"
        + (f" ({s['why']})" if s.get("why") else "")
        + f". Embedding: nearest training cosine {s['nearest_training_cosine']:.3f} against a validation 1st percentile of "
        f"{s['validation_p01']:.3f}.",
        "",
        "| channel | noise-to-signal | nearest training correlation | threshold | reconstruction correlation | threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in s.get("channels", {}).items():
        r = (s.get("reconstruction") or {}).get(name) or {}
        rc = r.get("reconstruction_correlation")
        lines.append(
            f"| {name} | {c.get('noise_to_signal', float('nan')):.3f} | {c['nearest_training_correlation']:.3f} | {c['threshold']:.3f} | "
            + (f"{rc:.3f} | {r['threshold']:.3f} |" if rc is not None else "- | - |")
        )
    e = answer.get("encoder_ensemble") or {}
    lines += ["", "| defect | probability (calibrated heads) | head bootstrap spread | encoder ensemble mean | its calibrated spread |", "| --- | --- | --- | --- | --- |"]
    for d, p in answer["defects"].items():
        std = (answer.get("uncertainty") or {}).get("defects_std", {}).get(d, float("nan"))
        lines.append(f"| {d} | {p:.3f} | {std:.3f} | {e.get('defects', {}).get(d, float('nan')):.3f} | {e.get('defects_spread', {}).get(d, float('nan')):.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.measured", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--out", default="benchmarks/measured.md")
    p.add_argument("--from-json", default=None, metavar="RESULT.json", help="re-render a previous run's rows instead of running FEFF")
    p.add_argument("--caption", default=None, help="the report's caption (default: the command and commit)")
    p.add_argument("--write-offsets", default=None, metavar="OFFSETS.json", help="also write the fitted edge-offset table (the shipped one: gnnspec/assets/edge_offsets.json)")
    args = p.parse_args(argv)

    from gnnspec.bench import current_commit

    commit = current_commit()
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        caption = args.caption or f"rows of {args.from_json}, re-rendered at commit {commit}"
        if args.model:  # the FEFF rows kept, the forward model's recomputed
            from gnnspec.models.factory import load_model

            result = with_model_rows(result, load_model(args.model))
            result["shared_eels"] = shared_eels_answer(args.model)
            result["reference_edges"] = reference_edge_answers(args.model)
            caption = args.caption or f"FEFF rows of {args.from_json}; forward-model rows of {args.model} at commit {commit}"
            Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    else:
        if not REFERENCE_DIR.is_dir():
            print(f"no measured references at {REFERENCE_DIR}", file=sys.stderr)
            return 2
        from gnnspec.models.factory import load_model, model_path

        result = measured_benchmark(load_model(args.model))
        result["shared_eels"] = shared_eels_answer(model_path(args.model))
        result["reference_edges"] = reference_edge_answers(model_path(args.model))
        caption = args.caption or f"python -m gnnspec.bench.measured at commit {commit}"
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out).write_text(render(result, caption))
    if args.write_offsets:
        from gnnspec.edge_offsets import fit_edge_offsets, write_edge_offsets

        source = f"{len(edge_offset_rows(result))} FEFF rows of the measured benchmark ({caption})"
        write_edge_offsets(args.write_offsets, fit_edge_offsets(edge_offset_rows(result)), source)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

