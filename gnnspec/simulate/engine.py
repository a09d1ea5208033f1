"""The FEFF10 engine core: run one feff.inp text and parse its spectra (no pymatgen needed).

Each run gets its own temporary working folder (about 6 MB), deleted after parsing. FEFF's
console output (also from its per-stage worker processes) goes to a log file, never to the
user's terminal. Only the stages a run needs are passed to FEFF: rdinp atomic pot xsph fms
mkgtr path genfmt ff2x (plus screen after pot for an RPA-screened core hole, and eels for ELNES
runs), each with the preset's stage timeout. Given a :class:`GroundState` that already holds a
site's self-consistent ``pot.bin``, a run of another edge of that site skips the SCF
(:mod:`gnnspec.simulate.ground_state`): a non-SCF ``pot`` gives the edge's core hole, spliced into
the shared file, and the run goes on from ``screen``; its spectra equal a full run's.
Raw FEFF energies (absolute, eV) and intensities are kept: ``xmu.dat`` column ``mu`` for XANES
runs; for ELNES runs ``eels.dat`` (total) and the same edge's XAS from ``xmu10.dat`` (``mu``).

A run with an RPA-screened core hole also reports :func:`core_hole_screening`: the screened
core-hole potential at the nucleus over the bare one, from FEFF's ``wscrn.dat``. It tells an
ordinary screening (0.95-0.98 at NMC Li sites) from the over-screened solutions FEFF's linear
response finds at some Li sites (0.69-0.90), whose Li K spectra lose their main peak
(``docs/2026-12-07-li-k-over-screened-core-holes.md``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gnnspec.simulate.ground_state import GroundState, PotentialFileError, splice_core_hole

_XANES_STAGES = ["rdinp", "atomic", "pot", "xsph", "fms", "mkgtr", "path", "genfmt", "ff2x"]
_ELNES_STAGES = [*_XANES_STAGES, "eels"]


def stage_names(kind: str, screened: bool) -> list[str]:
    """FEFF stages of a run of ``kind`` (xanes|elnes); ``screened`` adds ``screen`` (COREHOLE RPA)."""
    names = list(_ELNES_STAGES if kind == "elnes" else _XANES_STAGES)
    if screened:
        names.insert(names.index("pot") + 1, "screen")
    return names


class FeffRunError(RuntimeError):
    """A FEFF run that failed or timed out, with FEFF's message."""


def without_scf(text: str) -> str:
    """``text`` without its ``SCF`` card: the same run with non-self-consistent potentials."""
    return "\n".join(line for line in text.splitlines() if line.split()[:1] != ["SCF"]) + "\n"


#: FEFF's screened core-hole potential (``screen`` stage): columns r (bohr), w_scrn(r), v_ch(r) (Hartree).
SCREENED_CORE_HOLE_FILE = "wscrn.dat"


def core_hole_screening(path: str | Path) -> float:
    """``w_scrn / v_ch`` at the innermost radius of FEFF's ``wscrn.dat`` at ``path``: the part of
    the bare core-hole potential that RPA screening leaves at the nucleus (1: unscreened there).
    Raises :class:`FeffRunError` for a file without that table."""
    try:
        table = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError) as exc:
        raise FeffRunError(f"FEFF10 output {Path(path).name}: no screened core-hole table ({exc})") from None
    if table.shape[1] < 3 or not table.shape[0] or table[0, 2] == 0 or not np.all(np.isfinite(table[0, 1:3])):
        raise FeffRunError(f"FEFF10 output {Path(path).name}: no screened core-hole table (shape {table.shape})")
    return float(table[0, 1] / table[0, 2])


def _pipeline(feff10, workdir: Path, text: str, names: list[str], timeout_s: float, log: Path) -> dict[str, float]:
    """Run FEFF stages ``names`` on ``text`` in ``workdir``: ``{stage: seconds}``."""
    (workdir / "feff.inp").write_text(text)
    config = feff10.FeffConfig(str(workdir), feff10.FeffInput.parse(text), stages=[feff10.Stage.from_name(n) for n in names], stage_timeout=timeout_s)
    with _redirect_fds(log):
        result = feff10.FeffPipeline(config).run()
    return {str(r.stage).split(".")[-1].lower(): float(r.duration_secs) for r in result.stages}


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


def run_feff_text(
    text: str,
    kind: str,
    stage_timeout_s: float,
    log_path=None,
    workdir_root=None,
    keep: bool = False,
    screened: bool | None = None,
    stage_seconds: dict | None = None,
    ground_state: GroundState | None = None,
    run_name: str | None = None,
    diagnostics: dict | None = None,
):
    """Run FEFF10 on ``text`` (kind ``xanes`` or ``elnes``): ``({"xas"|"eels": (energy, intensity)}, seconds)``.

    ``diagnostics``: a dict that receives ``core_hole_screening`` (:func:`core_hole_screening`)
    of a screened run.

    ``screened``: run FEFF's ``screen`` stage (needed by ``COREHOLE RPA``); by default it is
    run when the text holds that card. ``stage_seconds``: a dict that receives each stage's
    wall time (``{"pot": 81.7, ...}``), for cost accounting. ``ground_state``: the site's shared
    self-consistent potentials; when it holds them the run reuses them, else a full run fills
    it (``run_name`` recorded as its source)."""
    import feff10

    workdir = Path(tempfile.mkdtemp(prefix="gnnspec_feff_", dir=workdir_root))
    log = Path(log_path) if log_path else workdir / "feff_console.log"
    if log_path:
        log.parent.mkdir(parents=True, exist_ok=True)
    try:
        if screened is None:
            screened = any(line.split()[:2] == ["COREHOLE", "RPA"] for line in text.splitlines())
        names = stage_names(kind, screened)
        t0 = time.perf_counter()
        try:
            if ground_state is not None and ground_state.pot_bin is not None:
                seconds_of = _pipeline(feff10, workdir, without_scf(text), ["rdinp", "atomic", "pot"], stage_timeout_s, log)
                try:
                    spliced = splice_core_hole(ground_state.pot_bin, (workdir / "pot.bin").read_text())
                except PotentialFileError as exc:
                    raise FeffRunError(f"cannot reuse the potentials of {ground_state.source}: {exc}") from None
                seconds_of["rdinp"] += _pipeline(feff10, workdir, text, ["rdinp"], stage_timeout_s, log)["rdinp"]
                (workdir / "pot.bin").write_text(spliced)
                seconds_of.update(_pipeline(feff10, workdir, text, names[names.index("pot") + 1 :], stage_timeout_s, log))
            else:
                seconds_of = _pipeline(feff10, workdir, text, names, stage_timeout_s, log)
                if ground_state is not None:
                    ground_state.pot_bin, ground_state.source = (workdir / "pot.bin").read_text(), run_name
            seconds = time.perf_counter() - t0
            if stage_seconds is not None:
                stage_seconds.update(seconds_of)
            if diagnostics is not None and screened:
                diagnostics["core_hole_screening"] = core_hole_screening(workdir / SCREENED_CORE_HOLE_FILE)
            if kind == "elnes":
                # an ELNES run writes the edge's XAS to xmu10.dat (unnormalised) beside eels.dat
                spectra = {
                    "xas": _table_xy(feff10.FeffTable.from_file(str(workdir / "xmu10.dat")), "xmu10.dat", mu_col=3),
                    "eels": _table_xy(feff10.FeffTable.from_file(str(workdir / "eels.dat")), "eels.dat", mu_col=1),
                }
            else:
                spectra = {"xas": _table_xy(feff10.FeffTable.from_file(str(workdir / "xmu.dat")), "xmu.dat", mu_col=3)}
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
