"""FEFF10 presets (tiers): the exact cards of every calculation level, as data.

A preset is a list of card lines shared by all runs plus the spectroscopy card block, which
depends on the run kind:

* ``xanes`` runs (K-edge XAS: Li K, Mn/Co/Ni K) use ``XANES``;
* ``elnes`` runs (O K and the TM L3 and L2 edges) use ``ELNES``; one ELNES run gives the EELS
  spectrum (``eels.dat``) and the same edge's XAS (``xmu10.dat``) at once.

``EDGE`` is written per run (``K``, ``L3`` or ``L2``). The cluster radius is 6.0 Angstrom, with
one potential per element present. The tiers:

=========  ===============================================================================
``fast``   no SCF, final-state-rule core hole (``COREHOLE FSR``): about 3.5-5 s a run.
           No TM L3 white line; the O K pre-edge merges into the main peak.
``scf``    self-consistent potentials within 4.0 A (``SCF 4.0 0 30 0.1 1``) and an RPA-
           screened core hole (``COREHOLE RPA``): white lines, the L3-L2 splitting and the
           O K pre-edge where measurements have them. The SCF (FEFF's ``pot`` stage) takes
           about 95 % of a run; it converges the ground state, so the K, L3 and L2 runs of one
           site share it (:mod:`gnnspec.simulate.ground_state`): one SCF per site.
``scf6``   the ``scf`` cards with the SCF over 5.0 A (``SCF 5.0 0 30 0.1 1``) and full
           multiple scattering over 6.0 A (``FMS 6.0 0``): the largest settings of the
           convergence table (``benchmarks/convergence.json``), against which ``scf`` still
           changes by 2-68 % (relative L2, per edge). About 4-9 times the cost of ``scf``; not
           in the shipped dataset. Measured against real NMC EELS in
           ``benchmarks/measured_eels.md``.
=========  ===============================================================================

A tier's name is stored with every spectrum as its ``tier`` (and ``preset``), with
:func:`preset_hash` of its cards and the FEFF version, so spectra computed at different times
and on different machines are comparable. The ``scf`` cards are fixed: a better-converged
level goes beside it under a new name, never into it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

#: Radius (Angstrom) of the atom cluster written to feff.inp around the absorber.
CLUSTER_RADIUS = 6.0

#: Closest allowed interatomic distance (Angstrom) in a FEFF cluster. FEFF runs on and returns
#: garbage for atoms about 1 A apart, so anything under this is refused before running.
MIN_FEFF_DISTANCE = 0.5

_COMMON = [
    "S02 1.0",
    "CONTROL 1 1 1 1 1 1",
    "PRINT 0 0 0 0 0 0",
    "FMS 4.0 0",
    "EXCHANGE 0 0 0",
]
_FAST = [*_COMMON, "COREHOLE FSR"]
_SCF = [*_COMMON, "COREHOLE RPA", "SCF 4.0 0 30 0.1 1"]

_XANES = ["XANES 4.0 0.07 0.0"]

# ELNES block. Line by line: beam energy 300 keV, orientation averaged (aver = 1; then no
# beam-direction line may follow), cross terms off, relativistic; collection and convergence
# semi-angles (mrad); q-mesh (radial, angular); detector position.
_ELNES = [
    "ELNES 4.0 0.07 0.0",
    " 300 1 0 1",
    " 2.4 0.0",
    " 5 3",
    " 0 0",
]


@dataclass(frozen=True)
class Preset:
    """A named FEFF10 calculation level."""

    name: str
    common: tuple[str, ...]
    xanes: tuple[str, ...]
    elnes: tuple[str, ...]
    description: str = ""
    stage_timeout_s: float = 600.0
    extra: dict = field(default_factory=dict)

    @property
    def screened_core_hole(self) -> bool:
        """True for ``COREHOLE RPA``: the run needs FEFF's ``screen`` stage."""
        return "COREHOLE RPA" in self.common

    @property
    def shares_ground_state(self) -> bool:
        """True when the runs of one site may share one SCF (:mod:`gnnspec.simulate.ground_state`):
        self-consistent potentials (an ``SCF`` card) of the ground state (``COREHOLE RPA``)."""
        return self.screened_core_hole and any(c.split()[:1] == ["SCF"] for c in self.common)

    def with_cards(self, name: str, replaced: dict[str, str], **changes) -> Preset:
        """This preset as ``name`` with each shared card that is a key of ``replaced`` swapped for its
        value (in place, so the card order stays) and any other field from ``changes``."""
        missing = [card for card in replaced if card not in self.common]
        if missing:
            raise ValueError(f"preset {self.name!r} has no card {missing[0]!r} to replace")
        return replace(self, name=name, common=tuple(replaced.get(c, c) for c in self.common), **changes)

    def cards(self, edge: str, kind: str) -> list[str]:
        """All card lines (without POTENTIALS/ATOMS) for a run of ``kind`` (xanes|elnes)."""
        if kind not in ("xanes", "elnes"):
            raise ValueError(f"unknown FEFF run kind {kind!r}")
        block = self.xanes if kind == "xanes" else self.elnes
        return [f"EDGE {edge}", *self.common, *block]


_SCF_PRESET = Preset(
    name="scf",
    common=tuple(_SCF),
    xanes=tuple(_XANES),
    elnes=tuple(_ELNES),
    description="SCF 4.0 A and an RPA core hole: about 85-100 s a run on one core (the SCF is ~95 %). Sampled sites.",
    stage_timeout_s=1200.0,
)

PRESETS: dict[str, Preset] = {
    "fast": Preset(
        name="fast",
        common=tuple(_FAST),
        xanes=tuple(_XANES),
        elnes=tuple(_ELNES),
        description="No SCF, FSR core hole: about 3.5-5 s a run on one core. Every site of the shipped dataset.",
    ),
    "scf": _SCF_PRESET,
    "scf6": _SCF_PRESET.with_cards(
        "scf6",
        {"FMS 4.0 0": "FMS 6.0 0", "SCF 4.0 0 30 0.1 1": "SCF 5.0 0 30 0.1 1"},
        description="SCF 5.0 A, FMS 6.0 A and an RPA core hole: the converged reference of the scf tier, about 4-9 times its cost.",
        stage_timeout_s=3600.0,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown FEFF preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def preset_hash(preset: Preset) -> str:
    """Short SHA-256 of every card of the preset (both run kinds), to record with each spectrum."""
    text = "\n".join([*preset.common, "#xanes", *preset.xanes, "#elnes", *preset.elnes])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def feff_version() -> str:
    import feff10

    return f"feff10-rs {feff10.__version__}"
