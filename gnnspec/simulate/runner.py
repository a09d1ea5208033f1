"""Running FEFF10 for one absorbing site of a structure (see :mod:`gnnspec.simulate.engine`).

Each run gets its own temporary working folder (about 6 MB), deleted after parsing. FEFF's
console output goes to a log file, never to the user's terminal. Only the stages a run needs
are passed to FEFF: rdinp atomic pot xsph fms mkgtr path genfmt ff2x (plus eels for ELNES).
Raw FEFF energies (absolute, eV) and intensities are kept: ``xmu.dat`` column ``mu`` for XAS,
``eels.dat`` total column for EELS. A run's spectra are named like channels but with the run's
edge (``Ni-L2-eels``): an L2,3 channel is assembled from its L3 and L2 runs. In a tier whose SCF
is the ground state's (``scf``), the runs of one site share one SCF: the first computes it, the
others reuse it (:mod:`gnnspec.simulate.ground_state`) and record which run it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from gnnspec.channels import Channel, assemble_channels, get_channel
from gnnspec.errors import InputError
from gnnspec.simulate.engine import FeffRunError, run_feff_text
from gnnspec.simulate.feff_input import build_feff_input, site_runs
from gnnspec.simulate.ground_state import GroundState
from gnnspec.simulate.presets import Preset, feff_version, get_preset, preset_hash

__all__ = ["FeffRunError", "SiteSpectrum", "assemble_site", "run_feff_site", "site_runs"]


@dataclass
class SiteSpectrum:
    """The raw spectrum of one FEFF run at one site (``run`` such as ``Ni-L2-eels``; energies absolute, eV)."""

    run: str
    energy: np.ndarray
    intensity: np.ndarray
    preset: str
    preset_hash: str
    feff_version: str
    seconds: float
    potentials_from: str | None = None
    core_hole_screening: float | None = None  # RPA runs: gnnspec.simulate.engine.core_hole_screening

    @property
    def tier(self) -> str:
        return self.preset


def run_feff_site(
    structure: Structure,
    site: int,
    channels: list[str] | list[Channel],
    preset: str | Preset = "fast",
    log_path: str | Path | None = None,
    workdir_root: str | Path | None = None,
    keep_workdir: bool = False,
    runs: list[str] | None = None,
    ground_state: GroundState | None = None,
) -> dict[str, SiteSpectrum]:
    """Raw FEFF10 run spectra that ``channels`` need at absorbing ``site``: ``{run spectrum: SiteSpectrum}``.

    All channels must share the site's element. One ELNES run serves the EELS and XAS of its
    edge; an L2,3 channel needs an L3 and an L2 run (:func:`site_runs`); :func:`assemble_site`
    turns the result into channels. ``runs`` limits the FEFF runs to those named (such as
    ``["Ni-L2-elnes"]``). Raises :class:`InputError` for bad input and :class:`FeffRunError`
    when FEFF fails. ``ground_state``: the site's shared SCF, for callers that run a site's
    edges one call at a time (a new one per call by default, when the preset shares it).
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    chans = [get_channel(c) if isinstance(c, str) else c for c in channels]
    if not 0 <= site < len(structure):
        raise InputError(f"site {site} is out of range: the structure has {len(structure)} sites (0-{len(structure) - 1})")
    element = structure[site].specie.symbol
    for ch in chans:
        if ch.element != element:
            raise InputError(f"channel {ch.name} needs a {ch.element} absorber, but site {site} is {element}")
    ground_state = (ground_state or GroundState()) if preset.shares_ground_state else None
    out: dict[str, SiteSpectrum] = {}
    for run, spectra in site_runs(element, [c.name for c in chans]).items():
        if runs is not None and run not in runs:
            continue
        el, edge, kind = run.split("-")
        text = build_feff_input(structure, site, edge, kind, preset, title=f"gnnspec {el} {edge} site {site}")
        reused = ground_state.ready_from if ground_state is not None else None
        diagnostics: dict = {}
        result, seconds = run_feff_text(
            text,
            kind,
            preset.stage_timeout_s,
            log_path,
            workdir_root,
            keep_workdir,
            preset.screened_core_hole,
            ground_state=ground_state,
            run_name=run,
            diagnostics=diagnostics,
        )
        for name in spectra:
            energy, intensity = result[name.rsplit("-", 1)[1]]
            out[name] = SiteSpectrum(
                name, energy, intensity, preset.name, preset_hash(preset), feff_version(), seconds, reused, diagnostics.get("core_hole_screening")
            )
    return out


def assemble_site(channels: list[str], spectra: dict[str, SiteSpectrum]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Channels from a site's raw run spectra: ``{channel: (energy eV, raw intensity)}``
    (:func:`gnnspec.channels.assemble_channels`: an L2,3 channel is its L3 + L2 runs on its grid)."""
    return assemble_channels({name: (s.energy, s.intensity) for name, s in spectra.items()}, channels)
