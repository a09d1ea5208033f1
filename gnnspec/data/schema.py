"""The gnnspec LMDB schema: keys, record contents and the pickle-free value codec.

Keys are ASCII:

* ``__metadata__``: schema version, channel definitions, presets, build config, timings.
* ``structure/{sid:06d}``: one generated or imported structure: ``structure`` (pymatgen dict
  with site properties ``site_type`` and ``ideal_frac``), ``params`` (generator parameters),
  ``vacancies`` (ideal positions of removed sites), ``relax_info``, ``split``
  (train/val/test; a supercell is never split), ``sites`` (the absorbing sites and the run keys
  to compute).
* ``spectrum/{sid:06d}/{site:04d}/{tier}/{run}``: the raw spectrum of one FEFF run
  (:data:`gnnspec.channels.RUN_NAMES`, such as ``Mn-L2-eels``) at one site in one tier
  (:mod:`gnnspec.simulate.presets`): ``energy`` and ``intensity`` (raw FEFF, absolute eV;
  float32, :data:`SPECTRUM_DTYPE`),
  ``tier``, ``preset``, ``preset_hash``, ``feff_version``, ``seconds``, and ``potentials_from``
  (the run of the same site whose SCF it reused, :mod:`gnnspec.simulate.ground_state`) where it
  did not compute its own, and ``core_hole_screening`` for runs with an RPA-screened core hole
  computed since 2026-12-07 (:func:`gnnspec.simulate.engine.core_hole_screening`). Channels (an L2,3 channel
  sums two runs) are assembled when the data are read (:func:`gnnspec.channels.assemble`).
* ``failure/{sid:06d}/{site:04d}/{tier}/{run}``: a FEFF run that failed, with FEFF's message.

Schema v1 (before tiers) had ``spectrum/{sid}/{site}/{channel}``, every record of one preset;
:func:`gnnspec.data.store.migrate` rewrites such a file in place.

Values are msgpack maps; numpy arrays are stored as ``{"__nd__": dtype, "shape", "data"}``
(raw little-endian bytes). Nothing is pickled: reading a dataset never runs code from it.
"""

from __future__ import annotations

import numpy as np

from gnnspec.codec import decode, encode
from gnnspec.errors import InputError

__all__ = ["decode", "encode"]

SCHEMA_NAME = "gnnspec.lmdb"
SCHEMA_VERSION = 2
METADATA_KEY = b"__metadata__"
SPLITS = ("train", "val", "test")
#: Stored precision of a run's ``energy`` and ``intensity``: float32, 7 significant digits (0.001 eV
#: at the Ni K edge, against channel grids of 0.5 eV; FEFF prints 6 digits in ``eels.dat``). Half
#: the bytes of float64, which made up 80 % of the shipped LMDB file. Records written before
#: 2026-12-07 hold float64 until ``gnnspec data compact --float32`` rewrites them.
SPECTRUM_DTYPE = np.float32


def check_split(split: str | None) -> None:
    """An :class:`InputError` unless ``split`` is None (every split) or one of :data:`SPLITS`."""
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def structure_key(sid: int) -> bytes:
    return f"structure/{sid:06d}".encode()


def spectrum_key(sid: int, site: int, run: str, tier: str) -> bytes:
    """Key of the raw spectrum ``run`` (such as ``Ni-L2-eels``) of ``site`` in ``tier``."""
    return f"spectrum/{sid:06d}/{site:04d}/{tier}/{run}".encode()


def spectrum_record(
    energy,
    intensity,
    tier: str,
    preset_hash: str,
    feff_version: str,
    seconds: float,
    potentials_from: str | None = None,
    core_hole_screening: float | None = None,
) -> dict:
    """The record of one run spectrum (module docstring); ``potentials_from`` only where the run
    took another run's SCF, ``core_hole_screening`` only for a run with an RPA-screened core hole."""
    energy, intensity = (np.asarray(a, SPECTRUM_DTYPE) for a in (energy, intensity))
    record = {"energy": energy, "intensity": intensity, "tier": tier, "preset": tier, "preset_hash": preset_hash, "feff_version": feff_version, "seconds": seconds}
    if potentials_from:
        record["potentials_from"] = potentials_from
    if core_hole_screening is not None:
        record["core_hole_screening"] = float(core_hole_screening)
    return record


#: Per edge (``{element}-{edge}``), the ``core_hole_screening`` below which FEFF's RPA response has
#: over-screened the core hole: such a run is not a target (:func:`over_screened`). Measured for
#: Li K only: 0.948-0.984 at 33 runs of NMC Li sites with an ordinary spectrum, 0.69-0.90 at the 7
#: over-screened ones (their main peak collapsed, or they jump from an ordinary run of the site
#: under a 0.01 A move); the limit lies in the gap
#: (``docs/2026-12-07-li-k-over-screened-core-holes.md``). Other edges keep every run.
OVER_SCREENED_BELOW = {"Li-K": 0.93}


def screening_limit(run: str) -> float | None:
    """The over-screening limit of run spectrum ``run``'s edge (:data:`OVER_SCREENED_BELOW`), None
    for an edge without one."""
    return OVER_SCREENED_BELOW.get("-".join(run.split("-")[:2]))


def over_screened(run: str, record: dict) -> bool:
    """Whether the record of run spectrum ``run`` (such as ``Li-K-xas``) holds an over-screened core hole; False
    where the record has no ``core_hole_screening`` (runs made before it was recorded, unscreened tiers)."""
    limit = screening_limit(run)
    value = record.get("core_hole_screening")
    return limit is not None and value is not None and value < limit


def failure_key(sid: int, site: int, run: str, tier: str) -> bytes:
    """Key of a failed FEFF run (``run`` such as ``Ni-L2-elnes``) of ``site`` in ``tier``."""
    return f"failure/{sid:06d}/{site:04d}/{tier}/{run}".encode()


def parse_key(key: bytes) -> tuple[str, ...]:
    """``b"spectrum/000001/0003/fast/Ni-K-xas"`` -> ``("spectrum", "000001", "0003", "fast", "Ni-K-xas")``."""
    return tuple(key.decode().split("/"))
