"""The encoder on FEFF's own spectra of a higher tier: what the simulator it learned from costs it.

The shipped encoder learns the scf tier from a forward model's spectra (FEFF computed scf on a
few sites per supercell only, :mod:`gnnspec.train.align`), and its inverse tables at scf
fidelity feed it that forward model's spectra again. A measured sample is closer to FEFF than
to any forward model, so the question that matters is how the encoder does on FEFF's own scf
spectra. Here, on the environments of a split whose member sites hold FEFF spectra in the tier,
each environment's query is the mean over those members (the data's definition of an
environment spectrum, :func:`gnnspec.nn.readout.environment_spectra`), from three sources with
the same members and channels:

* ``feff``: FEFF's spectra of the tier;
* ``ensemble``: the model's prediction (the forward ensemble and its linear tier heads, what
  ``gnnspec predict`` gives, :func:`gnnspec.models.forward_ensemble.ensemble_pass`);
* ``own``: the model's own trained tier head (what ``gnnspec train`` aligns the encoder on).

Each is scored as the alignment stage scores its validation split (:func:`gnnspec.train.align.score`):
label-match hit@1 of spectrum queries against the structure embeddings of the training split and
the queried environments, element-content MAE and defect AUROC of the spectrum side, also with
the exact elemental quantification for an encoder that reads one. Several models (say, before
and after ``gnnspec ensemble --realign``) are scored on the same environments.

Run: ``python -m gnnspec.bench.scf_queries --compare before=A.pt after=B.pt`` (writes
``benchmarks/scf_queries.md`` and its JSON).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from gnnspec.data import keys as K
from gnnspec.errors import InputError
from gnnspec.models.environment_table import SIMULATED

SOURCES = ("feff", "ensemble", "own")
#: Metrics in the order the table shows them.
COLUMNS = ("hit@1", "quantified_hit@1", "content_mae", "auroc_o_vacancy", "auroc_antisite")


@torch.no_grad()
def source_spectra(model, graphs, tier: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per source (:data:`SOURCES`), the environment spectra ``[n, C, K]`` and mask ``[n, C]`` of
    ``graphs`` (which hold ``tier`` as their only extra tier), each environment the mean over its
    members with FEFF spectra in ``tier``; environments without any: an all-False mask row."""
    from gnnspec.models.forward_ensemble import ensemble_pass

    row = model.cfg.tier_index(tier)
    dtype = next(model.parameters()).dtype
    parts: dict[str, list] = {s: [] for s in SOURCES}
    for i in range(len(graphs)):
        g = graphs[i].clone()
        g.pos, g.edge_shift = g.pos.to(dtype), g.edge_shift.to(dtype)
        have = g[K.SITE_Y_TIERS_MASK][:, 0]  # [n_nodes, C]
        absorbers = have.any(dim=1).nonzero(as_tuple=True)[0]
        outs = {
            "feff": {"spectra": g[K.SITE_Y_TIERS][absorbers, 0].to(dtype)},
            "ensemble": ensemble_pass(model, g, absorbers, row),
            "own": model.forward_structure(g, absorbers=absorbers, embed=False, tier=row),
        }
        use = have[absorbers] & outs["own"]["spectra_mask"]
        for source, out in outs.items():
            parts[source].append(model.environment_spectra({**out, "absorber_index": absorbers}, g, use_mask=use))
    return {s: (torch.cat([x for x, _ in p]), torch.cat([m for _, m in p])) for s, p in parts.items()}


def query_table(base, x: torch.Tensor, mask: torch.Tensor):
    """A copy of the environment table ``base`` with spectra ``x`` and ``mask``."""
    table = copy.copy(base)
    table.x, table.mask = x.to(base.x.dtype), mask
    table.with_spectra = mask.any(dim=1).nonzero(as_tuple=True)[0]
    return table


@torch.no_grad()
def outcomes(model, table, library: list, content_tol: float) -> dict[str, np.ndarray]:
    """Per query row of ``table`` (its environments with spectra), as the alignment stage scores
    them (:func:`gnnspec.train.align.embedding_outcomes`): label-match ``hit`` of the nearest
    structure embedding in ``library`` (tables), predicted ``content`` and defect probabilities
    ``prob``, each also ``quantified_`` (the exact quantification) for an encoder that reads one;
    with the rows' true ``content_true``, ``defects`` and ``sid``."""
    from gnnspec.train.align import embedding_outcomes

    q = table.with_spectra
    lib = (
        torch.cat([t.structure_embeddings(model) for t in library]),
        torch.cat([t.content for t in library]),
        torch.cat([t.defects for t in library]),
    )
    out = {"content_true": table.content[q].cpu().numpy(), "defects": table.defects[q].cpu().numpy(), "sid": table.sid[q].cpu().numpy()}
    for quantified in (False, True) if model.encoder.takes_quantification else (False,):
        prefix = "quantified_" if quantified else ""
        emb = table.spectrum_embeddings(model, q, quantified=quantified)
        out[prefix + "hit"], out[prefix + "content"], out[prefix + "prob"] = embedding_outcomes(model, table, q, emb, lib, content_tol)
    return out


def metrics(o: dict[str, np.ndarray], defects: tuple[str, ...], rows: np.ndarray | None = None) -> dict[str, float]:
    """The table's metrics (:data:`COLUMNS`, plus the quantified content MAE and AUROCs) of outcomes
    ``o`` on ``rows`` (default: all): :func:`gnnspec.scoring.property_metrics` and the hit rate."""
    from gnnspec.scoring import property_metrics

    rows = np.arange(len(o["sid"])) if rows is None else rows
    out = {}
    for prefix in ("", "quantified_"):
        if prefix + "hit" not in o:
            continue
        out[prefix + "hit@1"] = float(o[prefix + "hit"][rows].mean())
        found = property_metrics(o[prefix + "content"][rows], o["content_true"][rows], o[prefix + "prob"][rows], o["defects"][rows], defects)
        out.update({prefix + k: v for k, v in found.items()})
    return out


def supercell_intervals(a: dict, b: dict, defects: tuple[str, ...], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """``{metric: [b - a, low, high]}``: the difference of two models' metrics on the same query
    rows, with a percentile interval from resampling the supercells (the rows of one supercell share
    its composition and defects, so they are not independent draws)."""
    if not np.array_equal(a["sid"], b["sid"]):
        raise ValueError("the two models' outcomes are not on the same queries")
    sids = np.unique(a["sid"])
    rows_of = {sid: np.nonzero(a["sid"] == sid)[0] for sid in sids}
    rng = np.random.default_rng(seed)
    point = {k: metrics(b, defects)[k] - v for k, v in metrics(a, defects).items()}
    draws = {k: [] for k in point}
    for _ in range(n_boot):
        rows = np.concatenate([rows_of[sid] for sid in rng.choice(sids, size=len(sids))])
        ma, mb = metrics(a, defects, rows), metrics(b, defects, rows)
        for k in point:
            draws[k].append(mb[k] - ma[k])
    tail = 100 * (1 - level) / 2
    out = {}
    for k, v in point.items():
        d = np.asarray(draws[k], dtype=np.float64)
        d = d[np.isfinite(d)]  # an AUROC is undefined on a draw with one class only
        out[k] = [float(v), *map(float, np.percentile(d, [tail, 100 - tail]))] if np.isfinite(v) and d.size else [float("nan")] * 3
    return out


def score_model(model, train_graphs, graphs, tier: str, content_tol: float = 0.05) -> dict:
    """``{"environments": n, "sources": {source: metrics}, "outcomes": {source: per-row outcomes}}``
    of ``model`` on the environments of ``graphs`` with FEFF spectra in ``tier`` (module docstring)."""
    from gnnspec.models.environment_table import EnvironmentTable

    library = EnvironmentTable(model, train_graphs, features=True)  # FEFF base-tier tables: labels and structure features
    base = EnvironmentTable(model, graphs, features=True)
    spectra = source_spectra(model, graphs, tier)
    tables = {s: query_table(base, *spectra[s]) for s in SOURCES}
    n = int(tables["feff"].with_spectra.numel())
    if n == 0:
        raise InputError(f"no environment of these structures has {tier}-tier FEFF spectra")
    found = {s: outcomes(model, t, [library, t], content_tol) for s, t in tables.items()}
    defects = tuple(model.cfg.defects)
    return {"environments": n, "sources": {s: metrics(o, defects) for s, o in found.items()}, "outcomes": found, "defects": defects}


def section(result: dict, title: str) -> list[str]:
    """Markdown lines of one model's :func:`score_model` result (with ``simulator``), for ``make bench``."""
    lines = [
        title,
        "",
        f"Per test environment, the mean over its member sites where FEFF computed the tier ({result['environments']} environments), "
        "from FEFF (`feff`), from the model's prediction (`ensemble`: forward ensemble and linear heads) or from its own trained head "
        f"(`own`), same members and channels; the encoder learned the {SIMULATED[result['simulator']]}'s spectra. Scored as the alignment "
        "stage scores validation (`gnnspec.bench.scf_queries`): label-match hit@1 against the training and queried environments' "
        "structure embeddings, content MAE and defect AUROC of the spectrum side.",
        "",
        "| queries | " + " | ".join(COLUMNS) + " |",
        "| --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for source in SOURCES:
        m = result["sources"][source]
        lines.append(f"| {source} | " + " | ".join(f"{m[c]:.3f}" if m.get(c) is not None else "-" for c in COLUMNS) + " |")
    return lines + [""]


def render(results: dict) -> str:
    """Markdown table of :func:`score_model` results by model label."""
    first = next(iter(results.values()))
    lines = [
        f"# The encoder on FEFF's {first['tier']} spectra against the simulators' ({first['split']} environments with FEFF {first['tier']})",
        "",
        f"Data: `{first['data']}` (sha256 `{first['data_sha256'][:12]}`); commit `{first['commit']}`. "
        "Queries: per environment, the mean over its member sites where FEFF computed the tier, from FEFF (`feff`), "
        "the model's prediction (`ensemble`: forward ensemble and linear heads) or its own trained head (`own`), "
        "same members and channels. Scored as the alignment stage scores validation (`gnnspec.bench.scf_queries`).",
        "",
        "| model | encoder learned | environments | queries | " + " | ".join(COLUMNS) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for label, r in results.items():
        for source in SOURCES:
            m = r["sources"][source]
            cells = [f"{m[c]:.3f}" if m.get(c) is not None else "-" for c in COLUMNS]
            lines.append(f"| {label} | {r['simulator']} | {r['environments']} | {source} | " + " | ".join(cells) + " |")
    later = [(label, r) for label, r in results.items() if r.get("intervals")]
    if later:
        lines += [
            "",
            f"Differences against `{later[0][1]['against']}` on the same queries, with 95 % intervals from resampling the test "
            "supercells (1000 draws; the environments of one supercell share its composition and defects):",
            "",
            "| model | queries | " + " | ".join(COLUMNS) + " |",
            "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
        ]
        for label, r in later:
            for source in SOURCES:
                d = r["intervals"][source]
                cells = [f"{d[c][0]:+.3f} [{d[c][1]:+.3f}, {d[c][2]:+.3f}]" if c in d else "-" for c in COLUMNS]
                lines.append(f"| {label} | {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from gnnspec.bench import current_commit
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.store import SpectraStore
    from gnnspec.models.environment_table import encoder_simulator
    from gnnspec.models.factory import load_checkpoint

    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.scf_queries", description=__doc__.split("\n")[0])
    p.add_argument("--compare", nargs="+", metavar="LABEL=MODEL", required=True, help="models to score on the same environments")
    p.add_argument("--data", default="datasets/nmc_feff10_fast", help="dataset (default: the shipped one)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--tier", default="scf")
    p.add_argument("--out", default="benchmarks/scf_queries.md")
    p.add_argument("--threads", type=int, default=int(os.environ.get("GNNSPEC_THREADS", "2")))
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        pairs = [item.split("=", 1) for item in args.compare]
        if any(len(pair) != 2 or not pair[0] for pair in pairs):
            raise InputError("--compare takes LABEL=MODEL pairs")
        results = {}
        for label, path in pairs:
            model = load_checkpoint(path)
            if args.tier not in model.cfg.tiers:
                raise InputError(f"{path}: the model has no {args.tier} tier (its tiers: {', '.join(model.cfg.tiers)})")
            cutoff, channels = model.cfg.backbone.cutoff, model.cfg.channels
            train = LMDBStructureDataset(args.data, "train", cutoff=cutoff, channels=channels, tier=model.cfg.tiers[0])
            graphs = LMDBStructureDataset(args.data, args.split, cutoff=cutoff, channels=channels, tier=model.cfg.tiers[0], extra_tiers=(args.tier,))
            print(f"{label}: scoring ...", file=sys.stderr)
            results[label] = {
                **score_model(model, train, graphs, args.tier),
                "model": Path(path).name,
                "simulator": encoder_simulator(model),
                "tier": args.tier,
                "split": args.split,
                "data": args.data,
                "data_sha256": SpectraStore(args.data).fingerprint(),
                "commit": current_commit(),
            }
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = list(results)
    for label in labels[1:]:  # each model against the first, on the same queries
        first, this = results[labels[0]], results[label]
        this["against"] = labels[0]
        this["intervals"] = {s: supercell_intervals(first["outcomes"][s], this["outcomes"][s], this["defects"]) for s in SOURCES}
    for r in results.values():
        r.pop("outcomes")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
