"""Elemental quantification of an EELS spectrum by edge integration (Egerton's ratio method).

For edges recorded in one spectrum (one acquisition: same dose, thickness and optics), the
number of atoms of element A per atom of element B is

    N_A / N_B = [I_A(Delta) / sigma_A(beta, Delta)] / [I_B(Delta) / sigma_B(beta, Delta)]

where ``I(Delta)`` is the edge's signal (counts above the extrapolated pre-edge background)
integrated over ``Delta`` eV from the edge onset and ``sigma(beta, Delta)`` is the partial
ionisation cross-section for collection semi-angle ``beta`` over the same window
(:mod:`gnnspec.measured.cross_sections`, hydrogenic K and L2,3). The low-loss intensity, the
thickness and the dose cancel in the ratio; plural scattering does too, to first order, when
every edge uses the same window (Egerton, *Electron Energy-Loss Spectroscopy in the Electron
Microscope*, sec. 4.5). Each element's amount is ``I / sigma``; gnnspec writes them as atom
fractions of the quantified elements (:mod:`gnnspec.quantification`).

What is stated, per edge: the integration start (the located onset, eV, on the calibrated
energy scale of the input), the window actually used (``DEFAULT_WINDOW_EV`` unless the next edge
or the end of the data comes first; it stops ``EDGE_GAP_EV`` before the next onset), the signal
integral, the cross-section (barn) and the Poisson counting error of the integral (a lower
bound: the cross-section model's 5-20 % dominates).

**k-factors from a standard.** The hydrogenic L2,3 cross-sections lack the white lines of the 3d
metals, so where accuracy matters the cross-section ratios are calibrated on a standard of known
composition recorded with the same optics (the k-factor method of EELS and EDX practice): with
``standard`` (its atom amounts), ``k_el = (I_el / sigma_el) / N_el``, scaled to a geometric mean
of 1, is written to a ``gnnspec.eels_k_factors/1`` file (:mod:`gnnspec.quantification.k_factors`); quantifying a sample with those
k-factors divides each ``I / sigma`` by its element's factor.

The optics come from the file when it records them (EMSA ``#BEAMKV``, ``#COLLANGLE``,
``#CONVANGLE``; Digital Micrograph metadata) or from the user, who wins. Without a beam energy
and a collection angle there is no quantification, only a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from ase.data import atomic_numbers

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.measured.cross_sections import partial_cross_section
from gnnspec.measured.edges import ProcessedEdge

#: Default integration window above each onset (eV); 50 eV holds the L2 edge of Mn, Co and Ni.
DEFAULT_WINDOW_EV = 50.0
#: A window stops this many eV before the next edge's onset.
EDGE_GAP_EV = 5.0
#: Shortest window (eV) worth quantifying.
MIN_WINDOW_EV = 20.0
#: Shell whose cross-section a channel's edge window holds (an L3 window also holds L2).
SHELL_OF_EDGE = {"K": "K", "L3": "L23", "L23": "L23"}
#: Elements with an EELS channel: the ones a survey can quantify.


@dataclass(frozen=True)
class Optics:
    """Beam energy (keV) and the collection / convergence semi-angles (mrad) of an EELS acquisition."""

    beam_energy_kev: float
    collection_mrad: float
    convergence_mrad: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_optics(
    recorded: Mapping[str, float],
    source: str,
    beam_energy_kev: float | None = None,
    collection_mrad: float | None = None,
    convergence_mrad: float | None = None,
) -> tuple[Optics, list[str]]:
    """Optics from the user's values, else the file's (``recorded``); returns (optics, notes)."""
    notes = []
    values = {}
    for key, given, option, words in (
        ("beam_energy_kev", beam_energy_kev, "--beam-energy KEV", "beam energy"),
        ("collection_mrad", collection_mrad, "--collection-angle MRAD", "collection semi-angle"),
        ("convergence_mrad", convergence_mrad, "--convergence-angle MRAD", "convergence semi-angle"),
    ):
        if given is not None:
            values[key] = float(given)
            notes.append(f"{key} {given:g} given by the user")
        elif key in recorded:
            values[key] = float(recorded[key])
            notes.append(f"{key} {recorded[key]:g} read from the file")
        elif key == "convergence_mrad":
            values[key] = 0.0
            notes.append("convergence angle not recorded nor given: parallel illumination assumed")
        else:
            raise InputError(f"{source}: quantification needs the {words}, which the file does not record: give {option}")
    if not 1.0 <= values["beam_energy_kev"] <= 2000.0:
        raise InputError(f"{source}: beam energy {values['beam_energy_kev']:g} keV is outside 1..2000 keV")
    if not 0.1 <= values["collection_mrad"] <= 500.0:
        raise InputError(f"{source}: collection semi-angle {values['collection_mrad']:g} mrad is outside 0.1..500 mrad")
    if not 0.0 <= values["convergence_mrad"] <= 500.0:
        raise InputError(f"{source}: convergence semi-angle {values['convergence_mrad']:g} mrad is outside 0..500 mrad")
    return Optics(**values), notes


@dataclass(frozen=True)
class QuantifyRequest:
    """A user's request to quantify: optics that override the file's (None: read them) and the window (eV)."""

    beam_energy_kev: float | None = None
    collection_mrad: float | None = None
    convergence_mrad: float | None = None
    window_ev: float = DEFAULT_WINDOW_EV
    standard: Mapping[str, float] | None = None  # known atom amounts: derive k-factors from this spectrum
    k_factors: Mapping[str, float] | None = None  # element -> factor on the hydrogenic cross-section


@dataclass
class EdgeIntegral:
    """One edge's signal integral and partial cross-section; ``amount`` = integral / (cross-section x k-factor)."""

    channel: str
    element: str
    shell: str
    start_ev: float
    window_ev: float
    integral: float  # background-subtracted counts x eV
    counting_error: float  # relative, Poisson, lower bound
    cross_section_barn: float
    k_factor: float = 1.0

    @property
    def amount(self) -> float:
        return self.integral / (self.cross_section_barn * self.k_factor)

    def as_dict(self) -> dict:
        return {**asdict(self), "amount": self.amount}


def integrate_edge(
    energy: np.ndarray,
    intensity: np.ndarray,
    edge: ProcessedEdge,
    optics: Optics,
    window: float,
    stop: float | None,
    source: str,
) -> EdgeIntegral:
    """Integrate one processed edge's background-subtracted signal and compute its cross-section.

    ``energy``/``intensity``: the spectrum the edge was processed from (calibrated eV, counts);
    ``stop``: where the window must end at the latest (the next edge, eV), or None.
    """
    channel = CHANNELS[edge.channel]
    where = f"{source} ({edge.channel})"
    if channel.modality != "eels":
        raise InputError(f"{where}: quantification by edge integration is for EELS channels")
    start = float(edge.alignment.onset)
    end = min(start + window, float(energy[-1]))
    if stop is not None:
        end = min(end, stop - EDGE_GAP_EV)
    if end - start < MIN_WINDOW_EV:
        raise InputError(
            f"{where}: only {end - start:.1f} eV above the onset at {start:.1f} eV are free for integration "
            f"(the next edge or the end of the data); quantification needs at least {MIN_WINDOW_EV:g} eV"
        )
    keep = (energy >= start) & (energy <= end)
    background = edge.background(energy[keep]) if edge.background is not None else np.zeros(int(keep.sum()))
    signal = intensity[keep] - background
    integral = float(np.trapezoid(signal, energy[keep]))
    if not integral > 0:
        raise InputError(
            f"{where}: the background-subtracted signal over {start:.1f}..{end:.1f} eV is not positive: no edge to quantify"
        )
    counts = float(signal.sum())
    total = float(np.clip(intensity[keep], 0, None).sum())
    counting_error = float(np.sqrt(total) / counts) if counts > 0 else float("inf")
    shell = SHELL_OF_EDGE[channel.edge]
    sigma = partial_cross_section(
        atomic_numbers[channel.element],
        shell,
        channel.edge_energy,
        end - start,
        optics.beam_energy_kev * 1e3,
        optics.collection_mrad * 1e-3,
        optics.convergence_mrad * 1e-3,
    )
    return EdgeIntegral(edge.channel, channel.element, shell, start, end - start, integral, counting_error, sigma)


def quantify_edges(
    energy: np.ndarray,
    intensity: np.ndarray,
    edges: Mapping[str, ProcessedEdge],
    optics: Optics,
    window: float = DEFAULT_WINDOW_EV,
    source: str = "<spectrum>",
    k_factors: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], list[EdgeIntegral]]:
    """Atom fractions ``{element: fraction}`` of the elements whose edges one spectrum holds.

    ``edges``: the channels processed from this spectrum (:func:`~gnnspec.measured.edges.cut_survey`);
    ``k_factors``: element -> factor on its cross-section (from a standard). Returns (fractions
    summing to 1, the per-edge integrals).
    """
    if len(edges) < 2:
        raise InputError(f"{source}: quantification needs at least two edges in one spectrum (found {len(edges)})")
    if window <= 0:
        raise InputError(f"{source}: the integration window must be > 0 eV, not {window:g}")
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    ordered = sorted(edges.values(), key=lambda e: e.alignment.onset)
    integrals = []
    for i, edge in enumerate(ordered):
        stop = ordered[i + 1].alignment.onset if i + 1 < len(ordered) else None
        integrals.append(integrate_edge(energy, intensity, edge, optics, window, stop, source))
    elements = [e.element for e in integrals]
    if len(set(elements)) != len(elements):
        raise InputError(f"{source}: two edges of one element ({', '.join(elements)}); quantify each element once")
    if k_factors is not None:
        lacking = [el for el in elements if el not in k_factors]
        if lacking:
            raise InputError(f"{source}: the k-factors hold no factor for {', '.join(lacking)} (they cover {', '.join(k_factors)})")
        for e in integrals:
            e.k_factor = float(k_factors[e.element])
    total = sum(e.amount for e in integrals)
    return {e.element: e.amount / total for e in integrals}, integrals


def quantify_spectrum(
    energy: np.ndarray,
    intensity: np.ndarray,
    edges: Mapping[str, ProcessedEdge],
    recorded_optics: Mapping[str, float],
    request: QuantifyRequest,
    source: str,
) -> tuple[dict[str, float], dict]:
    """Quantify one spectrum's edges as ``request`` asks; returns (fractions, JSON-ready record)."""
    optics, notes = resolve_optics(
        recorded_optics, source, request.beam_energy_kev, request.collection_mrad, request.convergence_mrad
    )
    if request.standard is not None and request.k_factors is not None:
        raise InputError(f"{source}: a standard yields k-factors; it is quantified without them")
    fractions, integrals = quantify_edges(energy, intensity, edges, optics, request.window_ev, source, request.k_factors)
    record = {
        "method": "edge integration over hydrogenic partial cross-sections (Egerton SIGMAK3/SIGMAL3)"
        + (", times k-factors from a standard" if request.k_factors is not None else ""),
        "file": source,
        "optics": optics.as_dict(),
        "optics_notes": notes,
        "window_eV": request.window_ev,
        "fractions": fractions,
        "edges": {e.channel: e.as_dict() for e in integrals},
    }
    if request.standard is not None:
        record["standard"] = {"composition": dict(request.standard), "k_factors": standard_k_factors(integrals, request.standard, source)}
    return fractions, record


def standard_k_factors(integrals: list[EdgeIntegral], composition: Mapping[str, float], source: str) -> dict[str, float]:
    """k-factors ``(I / sigma) / N`` per element of a standard, scaled to a geometric mean of 1."""
    lacking = [e.element for e in integrals if not composition.get(e.element, 0) > 0]
    if lacking:
        raise InputError(f"{source}: the standard's composition gives no amount for {', '.join(lacking)}, whose edges it holds")
    raw = {e.element: e.integral / e.cross_section_barn / float(composition[e.element]) for e in integrals}
    scale = float(np.exp(np.mean(np.log(list(raw.values())))))
    return {el: v / scale for el, v in raw.items()}
