"""``gnnspec quantify``: the elemental quantification a region's raw spectra hold in their intensities.

The method is :func:`gnnspec.quantification.intensities.quantify_region` (integrated intensity per
channel over the region's atoms, divided by per-atom k-factors of
:mod:`gnnspec.quantification.k_factors`); this module only reads the files and writes the result.
"""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "quantify",
        help="elemental quantification from the intensities of raw spectra",
        description="Sum the raw spectra of every absorbing atom of a region (gnnspec.spectra/1 files with their intensities "
        "intact, such as gnnspec simulate writes) per channel, divide each channel's integrated intensity by its k-factor "
        "and write the summed spectra (on the channel grids) with the elemental quantification they hold, for gnnspec infer "
        "and gnnspec query.",
    )
    q.add_argument("spectra", nargs="+", metavar="SPECTRA.json", help="raw spectra, one file per absorbing atom (or group)")
    q.add_argument(
        "--k-factors",
        default=None,
        metavar="K.json",
        help="k-factors (gnnspec data k-factors); default: the shipped ones, for FEFF10 spectra of gnnspec's presets",
    )
    q.add_argument("--out", required=True, metavar="OUT.json", help="output gnnspec.spectra/1 file")
    q.set_defaults(func=_quantify)


def _quantify(args: argparse.Namespace) -> int:
    from gnnspec.quantification.intensities import quantify_region
    from gnnspec.quantification.k_factors import SHIPPED_K_FACTORS, read_k_factors
    from gnnspec.spectra import read_spectra, write_spectra

    k_factors = read_k_factors(args.k_factors)
    sets = [read_spectra(path)[0] for path in args.spectra]
    summed, amounts, per_channel = quantify_region(sets, k_factors, where=", ".join(args.spectra))
    meta = {
        "source": "gnnspec quantify: raw spectra summed per channel",
        "inputs": list(args.spectra),
        "k_factors": str(args.k_factors or SHIPPED_K_FACTORS.name),
        "channels": per_channel,
    }
    write_spectra(args.out, summed, meta, amounts)
    total = sum(amounts.values())
    for name, record in per_channel.items():
        print(f"{name:11s} {record['spectra']} spectra, integrated intensity {record['integral']:.4g}: {record['amount']:.2f} atoms")
    print("atom fractions: " + ", ".join(f"{el} {v / total:.3f}" for el, v in amounts.items()))
    print(f"wrote {args.out}")
    return 0
