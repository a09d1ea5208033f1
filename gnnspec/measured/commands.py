"""The ``gnnspec convert`` command: measured spectra files in, one ``gnnspec.spectra/1`` file out.

``gnnspec.cli`` calls :func:`add_parsers` with its sub-parsers; the chosen sub-command's
``func(args)`` runs it and returns the exit code. :class:`~gnnspec.errors.InputError` propagates
to the CLI, which prints it on one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from gnnspec.channels import CHANNEL_NAMES
from gnnspec.measured.background import BACKGROUNDS, NORMALISATIONS
from gnnspec.measured.convert import convert_measured, parse_input, plot_converted
from gnnspec.spectra import quantification_argument

_DESCRIPTION = textwrap.fill(
    "Convert measured spectra into a gnnspec.spectra/1 file: EELS from .msa or .dm3/.dm4, XAS from "
    "two-column text/CSV (energy in eV, intensity). Each FILE:CHANNEL names the channel it holds "
    f"({', '.join(CHANNEL_NAMES)}); FILE:survey (or FILE with --survey) cuts every edge the spectrum "
    "holds (O K, Mn/Co/Ni L3). Per channel: zero-loss calibration (--zero-loss), power-law background "
    "removal (fitted 50 to 5 eV before the edge), alignment of the onset to the channel's expected "
    "onset or, with --reference, by cross-correlation, cut to the channel window and normalisation. "
    "Energies written are aligned absolute eV; the shifts (eV) are recorded in the file's meta.",
    width=92,
)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "convert",
        help="measured EELS/XAS files -> gnnspec.spectra/1 (calibrate, remove background, align, cut)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE[:CHANNEL]", help="measured spectrum file and the channel it holds")
    p.add_argument(
        "--zero-loss", type=Path, metavar="ZLP.msa", help="EELS file with the zero-loss peak; its centre (eV) is set to 0"
    )
    p.add_argument("--survey", action="store_true", help="files given without a channel are surveys holding several edges")
    p.add_argument("--out", type=Path, required=True, metavar="SPECTRA.json", help="output gnnspec.spectra/1 file")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also plot each channel on its grid with its shift (PNG)")
    p.add_argument(
        "--reference",
        type=Path,
        metavar="REF.json",
        help="gnnspec.spectra/1 file to align each channel against (cross-correlation)",
    )
    p.add_argument("--background", choices=BACKGROUNDS, default="auto", help="pre-edge background removal (default: auto)")
    p.add_argument(
        "--normalisation",
        choices=NORMALISATIONS,
        default="area",
        help="intensity normalisation (default: area, unit mean on the grid)",
    )
    p.add_argument(
        "--search",
        type=float,
        default=30.0,
        metavar="EV",
        help="look for each edge within this many eV of its expected onset (default 30)",
    )
    p.add_argument(
        "--quantification",
        type=quantification_argument,
        metavar="EL=AMOUNT,...",
        help="elemental quantification of the same area (for example Ni=0.2,Mn=0.07,O=0.55; ratios matter), "
        "written into SPECTRA.json for models that read one",
    )
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Run ``gnnspec convert``; prints one line per channel (shift in eV) and returns 0."""
    inputs = [parse_input(text, survey=args.survey) for text in args.inputs]
    spectra, meta = convert_measured(
        inputs,
        zero_loss=args.zero_loss,
        out=args.out,
        references=args.reference,
        background=args.background,
        normalisation=args.normalisation,
        search=args.search,
        quantification=args.quantification,
    )
    if meta["zero_loss"]:
        z = meta["zero_loss"]
        print(
            f"zero-loss peak at {z['centre_eV']:+.2f} eV (FWHM {z['fwhm_eV']:.2f} eV): EELS energies shifted by {z['shift_eV']:+.2f} eV"
        )
    for name, info in meta["channels"].items():
        align = info["alignment"]
        print(
            f"{name:11s} from {Path(info['file']).name}: {align['method']} alignment shift {align['shift_eV']:+.2f} eV, {len(spectra[name].energy)} points"
        )
    for name, reason in meta["skipped"].items():
        print(f"{name:11s} skipped: {reason}")
    print(f"wrote {args.out}")
    if args.plot:
        plot_converted(spectra, meta, args.plot)
        print(f"wrote {args.plot}")
    return 0
