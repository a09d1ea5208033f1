"""``gnnspec nmc``: write a generated NMC supercell to a file."""

from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nmc",
        help="generate an NMC supercell with defects",
        description="Generate layered Li(Ni,Mn,Co)O2 (R-3m) as a 3x3x1 supercell (108 sites) with delithiation, O vacancies and Li/Ni antisites.",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of every draw")
    p.add_argument("--ratio", default="NMC111", help="NMC111, NMC532, NMC622, NMC811 or Ni:Mn:Co fractions like 0.5:0.3:0.2")
    p.add_argument("--li", type=float, default=1.0, help="Li content 0.5-1.0 (delithiation as Li vacancies)")
    p.add_argument(
        "--li-ordering",
        default="random",
        help="how Li vacancies are placed: random, clustered (one Li-poor domain), layers (staged) or rows (in-plane rows)",
    )
    p.add_argument("--lattice", nargs=2, type=float, metavar=("A", "C"), help="hexagonal lattice parameters in Angstrom (default 2.87 14.2)")
    p.add_argument("--o-vacancies", type=int, default=0, help="number of O vacancies")
    p.add_argument("--antisites", type=int, default=0, help="number of Li/Ni antisite pairs")
    p.add_argument("--relax", action="store_true", help="relax positions with CHGNet (fmax 0.1 eV/A)")
    p.add_argument("--thermal-sigma", type=float, default=0.0, help="random displacement, Angstrom")
    p.add_argument("--out", required=True, help="output file: .cif, .json (pymatgen, with site types and vacancies) or POSCAR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gnnspec.errors import InputError
    from gnnspec.structures.nmc import A_HEX, C_HEX, LI_ORDERINGS, TM_RATIOS, NMCParams, generate_nmc

    if args.ratio in TM_RATIOS:
        ratio = TM_RATIOS[args.ratio]
    else:
        try:
            ratio = tuple(float(x) for x in args.ratio.split(":"))
            assert len(ratio) == 3 and min(ratio) >= 0 and sum(ratio) > 0
        except (ValueError, AssertionError):
            raise InputError(f"--ratio {args.ratio!r}: expected one of {', '.join(TM_RATIOS)} or three Ni:Mn:Co fractions") from None
    if not 0.0 <= args.li <= 1.0:
        raise InputError(f"--li must be within 0-1, got {args.li}")
    if args.li_ordering not in LI_ORDERINGS:
        raise InputError(f"--li-ordering {args.li_ordering!r}: expected one of {', '.join(LI_ORDERINGS)}")
    a, c = args.lattice or (A_HEX, C_HEX)
    if not (2.0 < a < 4.0 and 10.0 < c < 20.0):
        raise InputError(f"--lattice {a} {c}: a layered oxide has a of about 2.8-2.9 A and c of about 14-14.6 A")
    params = NMCParams(
        seed=args.seed,
        tm_ratio=ratio,
        tm_ratio_name=args.ratio,
        li_content=args.li,
        li_ordering=args.li_ordering,
        a=a,
        c=c,
        n_o_vacancies=args.o_vacancies,
        n_antisites=args.antisites,
        thermal_sigma=args.thermal_sigma,
        relax=args.relax,
    )
    sample = generate_nmc(params)
    if args.out.endswith(".json"):
        with open(args.out, "w") as f:
            json.dump(sample.as_dict(), f)
    else:
        fmt = "poscar" if "POSCAR" in args.out.upper() or args.out.endswith(".vasp") else None
        sample.structure.to(filename=args.out, fmt=fmt) if fmt else sample.structure.to(filename=args.out)
    print(f"wrote {args.out}: {sample.structure.composition.reduced_formula} ({len(sample.structure)} sites, {len(sample.vacancies)} vacancies)")
    return 0
