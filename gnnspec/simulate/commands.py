"""``gnnspec simulate``: FEFF10 spectra of one site, in the gnnspec.spectra/1 format."""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnspec.errors import InputError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="FEFF10 spectra of one absorbing site",
        description="Run FEFF10 for one absorbing site and write its raw spectra (absolute eV) as gnnspec.spectra/1 JSON. "
        "Channels of one ELNES run (EELS and XAS of O K or a TM L3 or L2 edge) share one FEFF run; an L2,3 channel "
        "(Ni-L23-eels) is the sum of an L3 and an L2 run on the channel grid, in FEFF's raw units. In the scf tier the "
        "runs of the site share one SCF (the first computes it; meta.runs names where the others took it from).",
    )
    p.add_argument("structure", help="structure file (CIF, POSCAR, pymatgen JSON, anything ase reads)")
    p.add_argument("--site", type=int, required=True, help="index of the absorbing site (0-based)")
    p.add_argument("--channel", action="append", required=True, help="channel name, e.g. Ni-K-xas or Ni-L23-eels (repeatable)")
    p.add_argument(
        "--preset", "--tier", dest="preset", default="fast",
        help="FEFF10 tier: fast (no SCF, FSR core hole; default), scf (SCF 4.0 A, RPA core hole; about 20x slower a site) "
        "or scf6 (SCF 5.0 A, FMS 6.0 A: the converged reference of scf, 4-9x slower than scf)",
    )
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--log", default=None, help="file for FEFF's console output (default: next to --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gnnspec.channels import get_channel
    from gnnspec.simulate.presets import get_preset
    from gnnspec.simulate.runner import FeffRunError, assemble_site, run_feff_site
    from gnnspec.spectra import Spectrum, write_spectra
    from gnnspec.structures import read_structure

    structure = read_structure(args.structure)
    try:
        channels = [get_channel(c).name for c in args.channel]
        preset = get_preset(args.preset)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    out = Path(args.out)
    log = Path(args.log) if args.log else out.with_suffix(".feff.log")
    try:
        spectra = run_feff_site(structure, args.site, channels, preset=preset, log_path=log)
    except FeffRunError as exc:
        raise InputError(f"{args.structure} site {args.site}: {exc}") from None
    first = next(iter(spectra.values()))
    meta = {
        "source": "FEFF10 via gnnspec simulate",
        "structure": str(args.structure),
        "site": args.site,
        "element": structure[args.site].specie.symbol,
        "tier": first.tier,
        "preset": first.preset,
        "preset_hash": first.preset_hash,
        "feff_version": first.feff_version,
        "runs": {k: _run_meta(v) for k, v in spectra.items()},
        "units": {"energy": "eV (absolute, FEFF)", "intensity": "FEFF mu (xas) or eels.dat total (eels), unnormalised"},
    }
    channels_out = assemble_site(channels, spectra)
    write_spectra(out, {k: Spectrum(k, e, y) for k, (e, y) in channels_out.items()}, meta)
    print(f"wrote {out} ({', '.join(channels_out)}); FEFF log: {log}")
    return 0


def _run_meta(spectrum) -> dict:
    """One run's entry of ``meta.runs``: FEFF seconds, the run whose SCF it took (if any) and the
    core-hole screening of a screened run (:func:`gnnspec.simulate.engine.core_hole_screening`;
    Li K below 0.93 is over-screened, ``gnnspec.data.schema.OVER_SCREENED_BELOW``)."""
    out: dict = {"seconds": spectrum.seconds}
    if spectrum.potentials_from:
        out["potentials_from"] = spectrum.potentials_from
    if spectrum.core_hole_screening is not None:
        out["core_hole_screening"] = spectrum.core_hole_screening
    return out
