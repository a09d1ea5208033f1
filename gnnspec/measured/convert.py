"""Converting measured spectra files into one ``gnnspec.spectra/1`` file (and a check plot).

:func:`convert_measured` reads each input file, calibrates EELS energies with the zero-loss
peak when a zero-loss file is given, processes each named channel (or every edge of a survey)
with :func:`~gnnspec.measured.edges.process_edge`, and writes the aligned, cut and normalised
spectra. The output's ``meta`` records per channel the input file, zero-loss shift, background
fit, alignment (method, onset, shift in eV), normalisation and notes, so every number written can
be traced back to the measured file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS
from gnnspec.errors import InputError
from gnnspec.measured.alignment import fit_zero_loss
from gnnspec.measured.edges import ProcessedEdge, cut_survey, process_edge
from gnnspec.measured.quantify import QuantifyRequest, quantify_spectrum
from gnnspec.measured.readers import read_measured
from gnnspec.spectra import SCHEMA, Spectrum, read_spectra, spectra_on_grids, write_spectra

SURVEY = "survey"
#: How ``convert`` treats energies (see :func:`convert_measured`).
ENERGY_CHOICES = ("absolute", "reference", "onset")


def edge_modality(channel: str) -> str:
    return CHANNELS[channel].modality


def _energy_treatment(choice: str | None, measured, path, have_zero_loss: bool) -> tuple[str, dict]:
    """(the edge processing's energy mode, the calibration record) for one input file."""
    choice = choice or ("absolute" if measured.modality == "xas" else "onset")
    if choice == "onset":
        return "onset", {"source": "onset aligned to the channel's expected onset"}
    if measured.meta.get("format") == "Athena":  # the record's Athena calibration, applied when it was read
        return "absolute", {"source": "the Athena record's energy shift", "athena_energy_shift_eV": measured.meta["athena_energy_shift_eV"]}
    if choice == "absolute":
        return "absolute", {"source": "the file's energies" + (" after the zero-loss calibration" if measured.modality == "eels" else "")}
    if measured.modality == "eels":
        if not have_zero_loss:
            raise InputError(f"{path}: --energy reference for EELS calibrates with the zero-loss peak: give --zero-loss")
        return "absolute", {"source": "zero-loss peak"}
    if measured.meta.get("format") != "XDI" or not measured.meta.get("reference_channel"):
        raise InputError(f"{path}: --energy reference needs the reference foil measured with the sample (an XDI file with irefer)")
    from gnnspec.measured.xdi import calibrate_to_reference, read_xdi

    return "absolute", calibrate_to_reference(read_xdi(path)).as_dict()


def parse_input(text: str, survey: bool = False) -> tuple[Path, str]:
    """Split a ``FILE[:CHANNEL]`` argument into (path, channel or ``"survey"``).

    Without a channel the file is a survey when ``survey`` is true, else an error. A colon that is
    not followed by a channel name (as in ``C:\\data\\x.msa``) belongs to the path.
    """
    head, sep, tail = text.rpartition(":")
    if sep and (tail in CHANNELS or tail == SURVEY):
        return Path(head), tail
    if sep and tail and "/" not in tail and "\\" not in tail and "." not in tail:
        raise InputError(f"{text}: unknown channel {tail!r}; valid: {', '.join(CHANNEL_NAMES)} or {SURVEY!r}")
    if survey:
        return Path(text), SURVEY
    raise InputError(f"{text}: name the channel as FILE:CHANNEL (one of {', '.join(CHANNEL_NAMES)}) or pass --survey")


def convert_measured(
    inputs: Sequence[tuple[str | Path, str]],
    zero_loss: str | Path | None = None,
    out: str | Path | None = None,
    *,
    references: str | Path | Mapping[str, Spectrum] | None = None,
    background: str = "auto",
    normalisation: str = "area",
    search: float = 30.0,
    max_shift: float = 10.0,
    quantification: Mapping[str, float] | None = None,
    quantify: QuantifyRequest | None = None,
    energy: str | None = None,
    low_loss: str | Path | None = None,
    deconvolve: bool = False,
) -> tuple[dict[str, Spectrum], dict]:
    """Convert measured files into channel spectra; writes ``out`` (``gnnspec.spectra/1``) if given.

    ``inputs``: (path, channel name or ``"survey"``) pairs. ``zero_loss``: an EELS file holding
    the zero-loss peak; its fitted centre (eV) is subtracted from every EELS input's energies.
    ``references``: spectra (or a ``gnnspec.spectra/1`` file) to align each channel against by
    cross-correlation; otherwise each onset is aligned to the channel's expected onset.
    ``low_loss``: the EELS low-loss spectrum recorded with the sample; its zero-loss FWHM and
    log-ratio t/lambda go into ``meta["low_loss"]`` and each EELS channel's ``instrument``;
    with ``deconvolve`` plural scattering is removed from every EELS edge by Fourier-ratio
    deconvolution with it (:mod:`gnnspec.measured.low_loss`; quantification stays on the recorded spectra).
    ``quantification``: the sample's elemental quantification ``{element: amount}`` (from the
    user's own EELS/XAS quantification), written into ``out`` (:mod:`gnnspec.quantification`).
    ``quantify``: instead, quantify the EELS edges of the one input file that holds them
    (:mod:`gnnspec.measured.quantify`); the record goes to ``meta["quantification"]``.
    ``search``: eV around the expected onset in which an edge is looked for; ``max_shift``: eV
    around the onset alignment the cross-correlation scans. ``energy``: how energies are treated
    (:data:`ENERGY_CHOICES`; default ``absolute`` for XAS files, ``onset`` for EELS): ``absolute``
    keeps the file's calibrated energies, so edge positions (oxidation states) survive;
    ``reference`` first calibrates against the reference measured with the sample (an XDI
    file's foil channel; for EELS the zero-loss peak, which must then be given) and then keeps
    the energies; ``onset`` aligns each onset to the channel's expected one. The shift applied
    and its source go into ``meta["channels"][name]["energy"]``. Returns (spectra by channel, meta).
    """
    if energy is not None and energy not in ENERGY_CHOICES:
        raise InputError(f"unknown energy treatment {energy!r}; valid: {', '.join(ENERGY_CHOICES)}")
    if not inputs:
        raise InputError("no input files to convert")
    if quantify is not None and quantification is not None:
        raise InputError("give a quantification or ask for one to be measured from the spectra, not both")
    if deconvolve and low_loss is None:
        raise InputError("Fourier-ratio deconvolution needs the sample's low-loss spectrum: give --low-loss")
    refs: Mapping[str, Spectrum] = {}
    if references is not None:
        refs = references if isinstance(references, Mapping) else read_spectra(references)[0]
    meta: dict = {"source": "gnnspec convert: measured spectra", "zero_loss": None, "channels": {}, "skipped": {}}
    zlp_shift = 0.0
    if zero_loss is not None:
        zlp = read_measured(zero_loss)
        fit = fit_zero_loss(zlp.energy, zlp.intensity, source=str(zero_loss))
        zlp_shift = -fit.centre
        meta["zero_loss"] = {"file": str(zero_loss), "centre_eV": fit.centre, "fwhm_eV": fit.fwhm, "shift_eV": zlp_shift}
    if low_loss is not None:  # resolution and thickness, recorded per EELS channel (gnnspec.measured.low_loss)
        from gnnspec.measured.low_loss import measure_low_loss, read_low_loss

        meta["low_loss"] = measure_low_loss(low_loss)
        meta["low_loss"]["deconvolved"] = bool(deconvolve)
    processed: dict[str, tuple[ProcessedEdge, str, float]] = {}
    sources: dict[str, tuple[np.ndarray, np.ndarray, dict, dict[str, ProcessedEdge]]] = {}
    options = {"background": background, "normalisation": normalisation, "max_shift": max_shift}
    eels_options = {"low_loss": read_low_loss(low_loss)} if deconvolve else {}
    for path, channel in inputs:
        measured = read_measured(path)
        shift = zlp_shift if measured.modality == "eels" else 0.0
        mode, calibration = _energy_treatment(energy, measured, path, zero_loss is not None)
        shift += calibration.get("shift_eV", 0.0) if measured.modality == "xas" else 0.0
        options["energy_mode"] = mode
        energies = measured.energy + shift
        if channel == SURVEY:
            edges, skipped = cut_survey(
                energies,
                measured.intensity,
                source=str(path),
                modality=measured.modality,
                references=dict(refs),
                search=search,
                **options,
                **(eels_options if measured.modality == "eels" else {}),
            )
            meta["skipped"].update({name: reason for name, reason in skipped.items() if name not in processed})
        else:
            if channel not in CHANNELS:
                raise InputError(f"{path}: unknown channel {channel!r}; valid: {', '.join(CHANNEL_NAMES)} or {SURVEY!r}")
            edges = {
                channel: process_edge(
                    energies,
                    measured.intensity,
                    channel,
                    source=str(path),
                    reference=refs.get(channel),
                    search=search,
                    **options,
                    **(eels_options if measured.modality == "eels" else {}),
                )
            }
        if measured.modality == "eels":
            sources.setdefault(str(path), (energies, measured.intensity, measured.meta.get("optics", {}), {}))[3].update(edges)
        for name, edge in edges.items():
            if name in processed:
                raise InputError(f"{path}: channel {name} was already taken from {processed[name][1]}; give each channel once")
            processed[name] = (edge, str(path), shift, {"mode": mode, **calibration})
            meta["skipped"].pop(name, None)
    spectra: dict[str, Spectrum] = {}
    for name in CHANNEL_NAMES:
        if name not in processed:
            continue
        edge, path, shift, treatment = processed[name]
        spectra[name] = edge.spectrum()
        meta["channels"][name] = {
            "file": path,
            "zero_loss_shift_eV": shift if edge_modality(name) == "eels" else 0.0,
            "total_shift_eV": shift + edge.alignment.shift,
            "energy": treatment,
            **edge.meta(),
        }
        if edge_modality(name) == "eels" and meta.get("low_loss"):
            ll = meta["low_loss"]
            meta["channels"][name]["instrument"] = {
                "zero_loss_fwhm_ev": ll["zero_loss_fwhm_eV"],
                "thickness_t_over_lambda": ll["thickness_t_over_lambda"],
                "plural_scattering": "removed by Fourier-ratio deconvolution" if ll.get("deconvolved") else "recorded, not removed",
            }
    spectra_on_grids(spectra, source=str(out or "<converted spectra>"))  # every written spectrum must map onto its grid
    if quantify is not None:
        quantification, meta["quantification"] = _measure_quantification(sources, spectra, quantify)
    if out is not None:
        write_spectra(out, spectra, meta, quantification)
    return spectra, meta


def _measure_quantification(
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, dict, dict[str, ProcessedEdge]]],
    spectra: Mapping[str, Spectrum],
    request: QuantifyRequest,
) -> tuple[dict[str, float], dict]:
    """Quantify the EELS edges of the single input file that holds them; every channel's element must be covered."""
    holding = {path: entry for path, entry in sources.items() if entry[3]}
    if not holding:
        raise InputError("quantification by edge integration needs an EELS spectrum holding at least two edges; none was given")
    if len(holding) > 1:
        found = "; ".join(f"{path}: {', '.join(entry[3])}" for path, entry in holding.items())
        raise InputError(
            f"quantification compares edges recorded in one spectrum (same dose and thickness), but the EELS edges come from "
            f"several files ({found}); pass the one survey spectrum that holds them all"
        )
    path, (energy, intensity, optics, edges) = next(iter(holding.items()))
    fractions, record = quantify_spectrum(energy, intensity, edges, optics, request, path)
    uncovered = sorted({CHANNELS[name].element for name in spectra} - set(fractions))
    if uncovered:
        raise InputError(
            f"{path}: the quantification covers {', '.join(fractions)} but channels of {', '.join(uncovered)} are also "
            "converted; their amounts are not measured in this spectrum (leave those channels out or give --quantification)"
        )
    return fractions, record


def plot_converted(spectra: Mapping[str, Spectrum], meta: Mapping, path: str | Path) -> Path:
    """Plot each channel's processed spectrum on its grid, with the alignment shift written in; PNG."""
    from matplotlib.figure import Figure

    names = [n for n in CHANNEL_NAMES if n in spectra]
    grids, _ = spectra_on_grids({n: spectra[n] for n in names})
    cols = min(2, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(5.5 * cols, 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        channel = CHANNELS[name]
        info = meta.get("channels", {}).get(name, {})
        align = info.get("alignment", {})
        ax.plot(channel.grid, grids[CHANNEL_NAMES.index(name)], lw=1.2)
        ax.axvline(channel.edge_energy, color="0.6", lw=0.6, ls="--")
        text = f"alignment shift {align.get('shift_eV', 0.0):+.2f} eV ({align.get('method', '?')})"
        if info.get("zero_loss_shift_eV"):
            text += f"\nzero-loss shift {info['zero_loss_shift_eV']:+.2f} eV"
        ax.text(0.98, 0.95, text, transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set_title(f"{name}  ({Path(info.get('file', '?')).name})", fontsize=9)
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("normalised intensity")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"{SCHEMA}: measured spectra on channel grids", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
