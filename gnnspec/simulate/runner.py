"""Running FEFF10 for one absorbing site and parsing its spectra.

Each run gets its own temporary working folder (about 6 MB), deleted after parsing. FEFF's
console output goes to a log file, never to the user's terminal. Only the stages a run needs
are passed to FEFF: rdinp atomic pot xsph fms mkgtr path genfmt ff2x (plus eels for ELNES).
Raw FEFF energies (absolute, eV) and intensities are kept: ``xmu.dat`` column ``mu`` for XAS,
``eels.dat`` total column for EELS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from gnnspec.channels import Channel, get_channel
from gnnspec.errors import InputError
from gnnspec.simulate.feff_input import build_feff_input, run_kind
from gnnspec.simulate.presets import Preset, feff_version, get_preset, preset_hash

_XANES_STAGES = ["rdinp", "atomic", "pot", "xsph", "fms", "mkgtr", "path", "genfmt", "ff2x"]
_ELNES_STAGES = [*_XANES_STAGES, "eels"]


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


class FeffRunError(RuntimeError):
    """A FEFF run that failed or timed out, with FEFF's message."""


@contextlib.contextmanager
def _redirect_fds(log_path: Path):
    """Send file descriptors 1 and 2 (FEFF's console, also from its worker processes) to a log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


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
        result, seconds = _run_text(text, kind, preset, log_path, workdir_root, keep_workdir)
        for ch in group:
            energy, intensity = result[ch.modality]
            out[ch.name] = SiteSpectrum(ch.name, energy, intensity, preset.name, preset_hash(preset), feff_version(), seconds)
    return out


def _run_text(text: str, kind: str, preset: Preset, log_path, workdir_root, keep: bool):
    import feff10

    workdir = Path(tempfile.mkdtemp(prefix="gnnspec_feff_", dir=workdir_root))
    log = Path(log_path) if log_path else workdir / "feff_console.log"
    if log_path:
        log.parent.mkdir(parents=True, exist_ok=True)
    try:
        inp = feff10.FeffInput.parse(text)
        stages = [feff10.Stage.from_name(n) for n in (_ELNES_STAGES if kind == "elnes" else _XANES_STAGES)]
        (workdir / "feff.inp").write_text(text)
        config = feff10.FeffConfig(str(workdir), inp, stages=stages, stage_timeout=preset.stage_timeout_s)
        t0 = time.perf_counter()
        try:
            with _redirect_fds(log):
                result = feff10.FeffPipeline(config).run()
            seconds = time.perf_counter() - t0
            if kind == "elnes":
                # an ELNES run writes the edge's XAS to xmu10.dat (unnormalised) beside eels.dat
                xmu = feff10.FeffTable.from_file(str(workdir / "xmu10.dat"))
                spectra = {
                    "xas": _table_xy(xmu, "xmu10.dat", mu_col=3),
                    "eels": _table_xy(result.read_eels(), "eels.dat", mu_col=1),
                }
            else:
                spectra = {"xas": _table_xy(result.read_xmu(), "xmu.dat", mu_col=3)}
        except feff10.FeffError as exc:
            raise FeffRunError(f"FEFF10 failed: {type(exc).__name__}: {str(exc).strip()[:500]}") from None
        return spectra, seconds
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _table_xy(table, name: str, mu_col: int) -> tuple[np.ndarray, np.ndarray]:
    cols = table.columns
    if len(cols) <= mu_col or len(cols[0]) < 2:
        raise FeffRunError(f"FEFF10 output {name} has no spectrum ({len(cols)} columns)")
    energy = np.asarray(cols[0], dtype=np.float64)
    intensity = np.asarray(cols[mu_col], dtype=np.float64)
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(intensity))):
        raise FeffRunError(f"FEFF10 output {name} holds non-finite values")
    return energy, intensity
