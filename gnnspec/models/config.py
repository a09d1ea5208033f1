"""Typed model configuration (the ``model:`` section of a training YAML).

The resolved ``ModelConfig`` is stored in every checkpoint as a plain dict, so a saved model
rebuilds without its training config. Lengths in Angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, DEFAULT_CHANNELS
from gnnspec.labels import CONTENT_ELEMENTS, DEFECTS  # the property heads' labels (re-exported)

#: Atom density (atoms per cubic Angstrom) of layered NMC, used to estimate neighbour counts
#: when a config does not give them (training measures them on the data instead).
NMC_DENSITY = 0.085


def estimated_neighbors(r: float) -> float:
    """Expected number of neighbours within ``r`` Angstrom at NMC density."""
    return 4.0 / 3.0 * math.pi * r**3 * NMC_DENSITY


@dataclass
class BackboneConfig:
    """Structure encoder: element embedding, Bessel radial basis, equivariant interaction blocks."""

    cutoff: float = 5.0  # Angstrom: graph edges and radial cutoff
    n_basis: int = 8  # Bessel functions
    cutoff_p: float = 6.0  # polynomial envelope order
    lmax: int = 2  # spherical harmonics of edge directions, l = 0..lmax
    element_dim: int = 32  # element embedding width (Z = 0..118)
    hidden_irreps: str = "32x0e + 8x1o + 4x2e"
    n_layers: int = 3
    radial_hidden: int = 32
    radial_layers: int = 2
    scalar_dim: int = 64  # invariant (0e) node features read out by every head
    avg_num_neighbors: float | None = None  # None: estimated from NMC density; training measures it

    def __post_init__(self) -> None:
        if self.cutoff <= 0 or self.n_layers < 1 or self.lmax < 0:
            raise ValueError("backbone needs cutoff > 0, n_layers >= 1 and lmax >= 0")


@dataclass
class SpectraHeadConfig:
    """Forward head: spectra as sums of per-atom contributions."""

    r_readout: float = 5.0  # Angstrom: atoms of the absorber's edges closer than this contribute
    hidden: int = 64
    channel_dim: int = 16
    n_distance_basis: int = 32  # Gaussians on [0, r_readout]: fine distance resolution matters
    positive: bool = True  # softplus on every contribution (then every spectrum is positive)
    readout_norm: float | None = None  # mean pairs per absorber; None: estimated from density
    # multi-fidelity models: one fidelity embedding per (tier, channel) instead of one per tier, so
    # each edge learns its own correction (the scf tier changes TM L2,3 white lines, O K pre-edges
    # and K edges differently)
    tier_per_channel: bool = False


@dataclass
class EmbeddingConfig:
    """Structure embedding: backbone scalars pooled over an environment, projected to a unit vector."""

    dim: int = 128
    hidden: int = 128


@dataclass
class EncoderConfig:
    """Spectrum encoder: per-channel 1D CNN tokens, Transformer over channels, attention pooling."""

    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    kernel: int = 5
    token_dim: int = 64
    heads: int = 4
    layers: int = 1
    hidden: int = 128
    quantification: bool = False  # optional elemental-quantification input (gnnspec.quantification)
    coverage: bool = False  # per-energy coverage input: which grid energies a partial window measured


@dataclass
class ModelConfig:
    """The joint model: backbone + forward head + structure embedding + spectrum encoder + property heads."""

    name: str = "joint"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    spectra: SpectraHeadConfig = field(default_factory=SpectraHeadConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    property_hidden: int = 64
    temperature: float = 0.1  # InfoNCE temperature (initial value when learned)
    learn_temperature: bool = True
    compile: bool = False  # torch.compile the backbone (dynamic shapes)
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    # FEFF tiers the forward head predicts, lowest fidelity first: the first is the base tier (every
    # site computed), later ones are learned as corrections of it; predictions default to the last
    tiers: list[str] = field(default_factory=lambda: ["fast"])
    n_energy: int = 121
    content_elements: list[str] = field(default_factory=lambda: list(CONTENT_ELEMENTS))
    defects: list[str] = field(default_factory=lambda: list(DEFECTS))

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; known: {', '.join(CHANNEL_NAMES)}")
        grids = {CHANNELS[c].n_energy for c in self.channels}
        if grids != {self.n_energy}:
            raise ValueError(f"n_energy {self.n_energy} does not match the channel grids ({sorted(grids)})")
        if self.spectra.r_readout > self.backbone.cutoff:
            raise ValueError(f"spectra.r_readout {self.spectra.r_readout} exceeds backbone.cutoff {self.backbone.cutoff}")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if not self.tiers or len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers must name at least one FEFF tier, each once; got {self.tiers}")

    def tier_index(self, tier: str | None) -> int:
        """Row of ``tier`` among :attr:`tiers` (None: the last, highest-fidelity one); ValueError if unknown."""
        if tier is None:
            return len(self.tiers) - 1
        if tier not in self.tiers:
            raise ValueError(f"the model predicts tier(s) {', '.join(self.tiers)}, not {tier!r}")
        return self.tiers.index(tier)
