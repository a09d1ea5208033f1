"""``gnnspec predict``: forward-model spectra of the sites of one or many structures.

One structure with ``--site N`` and a ``.json`` output: a ``gnnspec.spectra/1`` file, as
:func:`gnnspec.spectra.write_spectra` writes it. Several structures, a folder of them, or no
``--site``: a ``.jsonl`` file with one ``gnnspec.spectra/1`` record per (structure, site), id
``"{file stem}:{site}"``, predicted ``--batch-size`` structures per forward pass
(:meth:`gnnspec.models.api.ModelAPI.predict_many`; on the CPU one structure per pass measured as
fast as batches, see ``make bench``, on a GPU batches are what keep it busy); :func:`gnnspec.spectra.read_spectra_records`
(and so ``gnnspec query``) reads it back. Energies are absolute eV on each channel's grid
(:mod:`gnnspec.channels`), intensities normalised to unit mean over the grid. Every record's
``meta.structure_support`` holds its site's structure-side verdict
(:mod:`gnnspec.models.structure_support`); sites outside the training distribution also get a
one-line warning on stderr (their spectra are still written, exit code 0). A model with a
forward ensemble (:mod:`gnnspec.models.forward_ensemble`) writes the member mean and, in each
record's ``meta.spread``, the calibrated spread per channel and energy; ``--own-forward`` predicts
with the checkpoint's own forward model only (one backbone pass instead of seven, no spread).
Sites with a step-edge channel (the transition metals' K edges) get ``meta.edges``: each such
channel's half-step edge energy, the forward models' spread of it and its measured-scale
estimate (:mod:`gnnspec.models.predicted_edges`). Where the checkpoint holds it, every record's
``meta.channel_skill`` states how well each of its channels matched FEFF on held-out sites, and
channels below R^2 0.5 are named once on stderr (:mod:`gnnspec.models.channel_skill`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gnnspec.errors import InputError
from gnnspec.models.channel_skill import MEANING as SKILL_MEANING
from gnnspec.models.channel_skill import weak_channel_lines
from gnnspec.models.predicted_edges import MEANING as EDGE_MEANING
from gnnspec.models.predicted_edges import edge_warning_lines

SPREAD_MEANING = (
    "meta.spread: per channel and energy, the forward ensemble's calibrated spread (k times the members' "
    "standard deviation; FEFF's spectrum inside it at 68 % of validation energies); spectra are the member mean "
    "(with linear_heads > 0: of the forward models' tier heads and their linear tier heads)"
)


def add_parsers(subparsers) -> None:
    """Add ``predict`` to ``subparsers``."""
    from gnnspec.assets import DEFAULT_MODEL

    p = subparsers.add_parser(
        "predict",
        help="spectra of the sites of one or many structures (every channel of each site's element)",
        description="Forward model. One structure and --site: gnnspec.spectra/1 JSON. Many structures, folders "
        "or every site: JSON lines, one gnnspec.spectra/1 record per site (readable by gnnspec query). "
        "Energies in absolute eV.",
    )
    p.add_argument("structures", nargs="+", help="structure files (CIF, POSCAR, pymatgen JSON, any ase format) or folders of them")
    p.add_argument("--site", type=int, default=None, help="index of the absorbing site (0-based); default: every site with a channel")
    p.add_argument("--model", help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("--tier", default=None, help="FEFF tier to predict (fast or scf; default: the model's highest fidelity)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when there is one; default auto)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="structures per forward pass (default: 1 on the CPU, where batching measured no faster, 16 on CUDA)",
    )
    p.add_argument(
        "--own-forward",
        action="store_true",
        help="the checkpoint's own forward model only (its trained heads and its own linear tier heads), not its "
        "forward ensemble (faster; no meta.spread)",
    )
    p.add_argument("--out", required=True, help="output: .json for one structure and --site, else .jsonl")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    """Predict and write the spectra (see the module docstring)."""
    from gnnspec.models.factory import load_model, model_path
    from gnnspec.models.forward_ensemble import member_count
    from gnnspec.models.linear_tier_heads import head_count
    from gnnspec.models.structure_support import warning_lines
    from gnnspec.spectra import Spectrum, write_spectra, write_spectra_batch
    from gnnspec.structures.io import read_structure, structure_files

    out = Path(args.out)
    if not out.parent.exists():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    files = structure_files(args.structures)
    single = len(files) == 1 and args.site is not None and all(Path(s).is_file() for s in args.structures)
    if single and out.suffix == ".jsonl":
        single = False
    if not single and out.suffix != ".jsonl":
        raise InputError(f"{out}: many structures or sites are written as JSON lines; name the output *.jsonl")
    structures = [read_structure(f) for f in files]
    if args.site is not None:
        for f, s in zip(files, structures):
            if not 0 <= args.site < len(s):
                raise InputError(f"{f}: site {args.site} is out of range (the structure has {len(s)} sites)")
    device = _device(args.device)
    model = load_model(args.model, device, forward_ensemble=not args.own_forward)
    batch_size = args.batch_size or (16 if device.type == "cuda" else 1)
    sites = None if args.site is None else [[args.site]] * len(structures)
    predicted, spreads, edges = model.predict_many(structures, sites, batch_size=batch_size, tier=args.tier, return_spread=True, return_edges=True)
    tier = model.cfg.tiers[model.cfg.tier_index(args.tier)]
    base = {
        "source": "gnnspec predict",
        "tier": tier,
        "model": str(model_path(args.model)),
        "energy_unit": "eV (absolute)",
        "normalisation": "unit mean over the channel grid",
        "forward_models": member_count(model),
        "linear_heads": head_count(model, tier),
    }
    if any(spreads):  # a calibrated spread (a forward ensemble; not the own forward side)
        base["spread_meaning"] = SPREAD_MEANING
    if any(any(by_site.values()) for by_site in edges):
        base["edge_meaning"] = EDGE_MEANING
    skill = model.channel_skill(tier)
    if skill:
        base["skill_meaning"] = SKILL_MEANING
    predicted_channels: set[str] = set()
    records, flagged = [], 0
    for f, s, by_site, spread, edge in zip(files, structures, predicted, spreads, edges):
        report = model.structure_support(s, sorted(by_site)) if by_site else {"sites": []}
        verdicts = {r["site"]: r for r in report["sites"]}
        for site, spectra in by_site.items():
            support = {**report, "sites": [verdicts[site]]}  # the report's shape, this site only
            for line in warning_lines(support, str(f)):
                flagged += 1
                print(line, file=sys.stderr)
            meta = {"structure": str(f), "site": site, "element": s[site].specie.symbol, "structure_support": support}
            if skill:
                meta["channel_skill"] = {name: skill[name] for name in spectra if name in skill}
            predicted_channels.update(spectra)
            if site in spread:
                meta["spread"] = {name: [round(float(v), 6) for v in values] for name, values in spread[site].items()}
            if edge.get(site):
                meta["edges"] = edge[site]
                for line in edge_warning_lines(edge[site], f"{f} site {site}"):
                    print(line, file=sys.stderr)
            records.append((f"{f.stem}:{site}", [Spectrum(name, e, y) for name, (e, y) in spectra.items()], meta))
    for line in weak_channel_lines(skill, tier, sorted(predicted_channels, key=model.cfg.channels.index)):
        print(line, file=sys.stderr)
    if single:
        _, spectra, meta = records[0]
        write_spectra(out, spectra, {**base, **meta})
        return 0
    if not records:
        raise InputError(f"{', '.join(map(str, args.structures))}: no site has an element the model predicts")
    write_spectra_batch(out, records, base)
    print(
        f"{len(records)} site spectra sets of {len(files)} structures written to {out}"
        + (f" ({flagged} sites outside the training distribution)" if flagged else "")
    )
    return 0


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"--device {name!r}: use cpu, cuda, cuda:N or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this machine has no CUDA device")
    return torch.device(name)
