"""Running FEFF10 for one absorbing site of a structure (see :mod:`gnnspec.simulate.engine`).

Each run gets its own temporary working folder (about 6 MB), deleted after parsing. FEFF's
console output goes to a log file, never to the user's terminal. Only the stages a run needs
are passed to FEFF: rdinp atomic pot xsph fms mkgtr path genfmt ff2x (plus eels for ELNES).
Raw FEFF energies (absolute, eV) and intensities are kept: ``xmu.dat`` column ``mu`` for XAS,
``eels.dat`` total column for EELS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from gnnspec.channels import Channel, get_channel
from gnnspec.errors import InputError
from gnnspec.simulate.engine import FeffRunError, run_feff_text
from gnnspec.simulate.feff_input import build_feff_input, run_kind
from gnnspec.simulate.presets import Preset, feff_version, get_preset, preset_hash

__all__ = ["FeffRunError", "SiteSpectrum", "channels_by_run", "run_feff_site"]


@dataclass
class SiteSpectrum:
    """A raw FEFF spectrum of one channel at one site (energies absolute, eV)."""

    channel: str
    energy: np.ndarray
    intensity: np.ndarray
    preset: str
    preset_hash: str
    feff_version: str
    seconds: float


def channels_by_run(channels: list[Channel]) -> dict[tuple[str, str, str], list[Channel]]:
    """Group channels into FEFF runs: key (element, edge, kind); ELNES runs serve two channels."""
    runs: dict[tuple[str, str, str], list[Channel]] = {}
    for ch in channels:
        runs.setdefault((ch.element, ch.edge, run_kind(ch)), []).append(ch)
    return runs


def run_feff_site(
    structure: Structure,
    site: int,
    channels: list[str] | list[Channel],
    preset: str | Preset = "fast",
    log_path: str | Path | None = None,
    workdir_root: str | Path | None = None,
    keep_workdir: bool = False,
) -> dict[str, SiteSpectrum]:
    """FEFF10 spectra of ``channels`` for absorbing ``site`` of ``structure``.

    All channels must share the site's element. Channels served by one ELNES run (EELS and XAS
    of O K or a TM L3 edge) are computed by a single run. Raises :class:`InputError` for bad
    input and :class:`FeffRunError` when FEFF fails.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    chans = [get_channel(c) if isinstance(c, str) else c for c in channels]
    if not 0 <= site < len(structure):
        raise InputError(f"site {site} is out of range: the structure has {len(structure)} sites (0-{len(structure) - 1})")
    element = structure[site].specie.symbol
    for ch in chans:
        if ch.element != element:
            raise InputError(f"channel {ch.name} needs a {ch.element} absorber, but site {site} is {element}")
    out: dict[str, SiteSpectrum] = {}
    for (el, edge, kind), group in channels_by_run(chans).items():
        text = build_feff_input(structure, site, edge, kind, preset, title=f"gnnspec {el} {edge} site {site}")
        result, seconds = run_feff_text(text, kind, preset.stage_timeout_s, log_path, workdir_root, keep_workdir)
        for ch in group:
            energy, intensity = result[ch.modality]
            out[ch.name] = SiteSpectrum(ch.name, energy, intensity, preset.name, preset_hash(preset), feff_version(), seconds)
    return out


