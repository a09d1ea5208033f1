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
from gnnspec.errors import InputError
from gnnspec.measured.background import BACKGROUNDS, NORMALISATIONS
from gnnspec.measured.convert import ENERGY_CHOICES, convert_measured, parse_input, plot_converted
from gnnspec.measured.quantify import DEFAULT_WINDOW_EV, QuantifyRequest
from gnnspec.quantification.k_factors import read_eels_k_factors, write_eels_k_factors
from gnnspec.spectra import quantification_argument

_DESCRIPTION = textwrap.fill(
    "Convert measured spectra into a gnnspec.spectra/1 file: EELS from .msa or .dm3/.dm4, XAS from "
    "two-column text/CSV (energy in eV, intensity). Each FILE:CHANNEL names the channel it holds "
    f"({', '.join(CHANNEL_NAMES)}); FILE:survey (or FILE with --survey) cuts every edge the spectrum "
    "holds (O K, Mn/Co/Ni L2,3). Per channel: zero-loss calibration (--zero-loss), power-law background "
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
    p.add_argument(
        "--low-loss",
        type=Path,
        metavar="LL.msa",
        help="EELS low-loss spectrum of the same area: its zero-loss FWHM (the resolution infer compares at) and log-ratio "
        "t/lambda (exspy) are recorded for every EELS channel; plural scattering is recorded, not removed (see --deconvolve)",
    )
    p.add_argument(
        "--deconvolve",
        action="store_true",
        help="remove plural scattering from every EELS edge by Fourier-ratio deconvolution with the --low-loss spectrum "
        "(exspy; the zero-loss resolution is kept; --quantify still integrates the recorded spectra)",
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
    p.add_argument(
        "--energy",
        choices=ENERGY_CHOICES,
        default=None,
        help="absolute: keep the file's calibrated energies (default for XAS: edge positions carry the oxidation state); "
        "reference: calibrate first against the reference measured with the sample (an XDI file's foil channel; "
        "for EELS the zero-loss peak); onset: align each onset to the channel's expected one (default for EELS)",
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
    q = p.add_argument_group(
        "quantification from the spectrum",
        "--quantify measures the elemental quantification from the EELS edges of one survey spectrum: each edge's "
        "background-subtracted counts over a window above its onset, divided by the hydrogenic partial cross-section "
        "(K or L2,3) for the beam energy and collection angle. The optics come from the file when it records them; "
        "the options below override it.",
    )
    q.add_argument("--quantify", action="store_true", help="measure the quantification and write it into SPECTRA.json")
    q.add_argument("--beam-energy", type=float, metavar="KEV", help="incident beam energy (keV)")
    q.add_argument("--collection-angle", type=float, metavar="MRAD", help="spectrometer collection semi-angle (mrad)")
    q.add_argument("--convergence-angle", type=float, metavar="MRAD", help="probe convergence semi-angle (mrad; default 0)")
    q.add_argument(
        "--quantify-window",
        type=float,
        default=DEFAULT_WINDOW_EV,
        metavar="EV",
        help=f"integration window above each onset (eV, default {DEFAULT_WINDOW_EV:g}; shortened before the next edge)",
    )
    q.add_argument(
        "--standard",
        type=quantification_argument,
        metavar="EL=AMOUNT,...",
        help="the spectrum is of a standard of this known composition: derive k-factors (cross-section corrections) from it",
    )
    q.add_argument("--write-k-factors", type=Path, metavar="K.json", help="with --standard: write the k-factors here")
    q.add_argument("--k-factors", type=Path, metavar="K.json", help="k-factors from a standard (--write-k-factors) to apply")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Run ``gnnspec convert``; prints one line per channel (shift in eV) and returns 0."""
    inputs = [parse_input(text, survey=args.survey) for text in args.inputs]
    quantify = None
    if args.quantify:
        if args.write_k_factors is not None and args.standard is None:
            raise InputError("--write-k-factors needs --standard (the composition of the standard the spectrum is of)")
        k_factors = read_eels_k_factors(args.k_factors) if args.k_factors is not None else None
        quantify = QuantifyRequest(
            args.beam_energy, args.collection_angle, args.convergence_angle, args.quantify_window, args.standard, k_factors
        )
    elif any(v is not None for v in (args.beam_energy, args.collection_angle, args.convergence_angle, args.standard, args.k_factors)):
        raise InputError("--beam-energy, --collection-angle, --convergence-angle, --standard and --k-factors set up --quantify; add --quantify")
    spectra, meta = convert_measured(
        inputs,
        zero_loss=args.zero_loss,
        out=args.out,
        references=args.reference,
        background=args.background,
        normalisation=args.normalisation,
        search=args.search,
        quantification=args.quantification,
        quantify=quantify,
        energy=args.energy,
        low_loss=args.low_loss,
        deconvolve=args.deconvolve,
    )
    if meta.get("low_loss"):
        ll = meta["low_loss"]
        print(f"low loss {ll['file']}: zero-loss FWHM {ll['zero_loss_fwhm_eV']:.2f} eV, t/lambda {ll['thickness_t_over_lambda']:.2f} (log-ratio)"
              + ("; plural scattering removed by Fourier-ratio deconvolution" if ll.get("deconvolved") else ""))
    if meta["zero_loss"]:
        z = meta["zero_loss"]
        print(
            f"zero-loss peak at {z['centre_eV']:+.2f} eV (FWHM {z['fwhm_eV']:.2f} eV): EELS energies shifted by {z['shift_eV']:+.2f} eV"
        )
    for name, info in meta["channels"].items():
        align, treatment = info["alignment"], info["energy"]
        calibration = f"calibrated {treatment['shift_eV']:+.2f} eV by the reference foil; " if "shift_eV" in treatment else ""
        print(
            f"{name:11s} from {Path(info['file']).name}: {calibration}{align['method']} energies, shift {align['shift_eV']:+.2f} eV, "
            f"{len(spectra[name].energy)} points"
        )
    for name, reason in meta["skipped"].items():
        print(f"{name:11s} skipped: {reason}")
    if "quantification" in meta:
        record = meta["quantification"]
        optics = record["optics"]
        print(
            f"quantification ({optics['beam_energy_kev']:g} keV, collection {optics['collection_mrad']:g} mrad, "
            f"convergence {optics['convergence_mrad']:g} mrad):"
        )
        for name, edge in record["edges"].items():
            print(
                f"  {edge['element']:2s} {edge['shell']:3s} from {name}: {edge['start_ev']:.1f} eV + {edge['window_ev']:.1f} eV, "
                f"cross-section {edge['cross_section_barn']:.0f} barn, atom fraction {record['fractions'][edge['element']]:.3f} "
                f"(counting error {100 * edge['counting_error']:.2f} %)"
                + (f", k-factor {edge['k_factor']:.3f}" if edge["k_factor"] != 1.0 else "")
            )
        if "standard" in record:
            factors = ", ".join(f"{el} {k:.3f}" for el, k in record["standard"]["k_factors"].items())
            print(f"k-factors from the standard: {factors}")
            if args.write_k_factors is not None:
                write_eels_k_factors(args.write_k_factors, record)
                print(f"wrote {args.write_k_factors}")
    print(f"wrote {args.out}")
    if args.plot:
        plot_converted(spectra, meta, args.plot)
        print(f"wrote {args.plot}")
    return 0
