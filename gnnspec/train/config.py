"""Typed training configuration: one YAML file -> :class:`TrainConfig` (unknown keys rejected).

Sections: ``model`` (:class:`gnnspec.models.config.ModelConfig`), ``optim``, ``loss``,
``augment``, ``generated``, ``align`` and ``log``. The resolved config (with neighbour counts measured on
the training data) is written to ``<run_dir>/config.yaml``. Energies in eV, lengths in Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gnnspec.config import load_config
from gnnspec.instrument import InstrumentRanges
from gnnspec.models.config import ModelConfig
from gnnspec.structures.environments import CONTENT_TOL


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (per optimizer step), gradient clipping, EMA."""

    lr: float = 2e-3
    encoder_lr_scale: float = 1.0  # the spectrum encoder learns at lr * encoder_lr_scale
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # final learning rate / lr
    grad_clip: float = 5.0  # max global gradient norm; 0 disables
    ema_decay: float = 0.0  # 0 disables the exponential moving average of the weights

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.encoder_lr_scale <= 0 or not 0 <= self.ema_decay < 1 or len(self.betas) != 2:
            raise ValueError("optim needs lr > 0, encoder_lr_scale > 0, 0 <= ema_decay < 1 and two betas")


@dataclass
class LossConfig:
    """Weights of the loss terms (a weight of 0 switches a term off)."""

    spectra: float = 1.0  # forward site spectra: MSE per channel, masked, mean over channels
    derivative: float = 1.0  # relative weight of the first-derivative MSE inside the spectra term
    tier_weight: float = 1.0  # relative weight of each further FEFF tier's spectra term (multi-fidelity models)
    # per-channel weights of a further tier's spectra term: "own" (1 / that tier's spread per
    # channel, gnnspec.train.data.channel_scales) or "base" (the base tier's, as runs before 2026-12-05)
    tier_scales: str = "base"
    contrastive: float = 0.5  # symmetric InfoNCE between structure and spectrum embeddings
    content: float = 1.0  # element content (KL divergence of fractions), both sides
    defects: float = 0.5  # defect BCE, both sides
    max_envs: int = 256  # environments per step in the embedding losses (random subset)

    def __post_init__(self) -> None:
        if self.tier_scales not in ("own", "base"):
            raise ValueError(f"loss.tier_scales must be 'own' or 'base', got {self.tier_scales!r}")


@dataclass
class InstrumentAugmentConfig(InstrumentRanges):
    """The instrument-and-sample model on the encoder's input (:mod:`gnnspec.instrument`); off by default.

    When on, each augmented spectrum gets its own resolution FWHM (eV), t/lambda (EELS channels
    only), counts, background residual and, with probability ``partial``, a partial window, drawn
    from the ranges of :class:`gnnspec.instrument.InstrumentRanges` (the fields besides ``enabled``).
    """

    enabled: bool = False


@dataclass
class AugmentConfig:
    """Spectral augmentation of the encoder's input spectra (training only)."""

    enabled: bool = True
    shift_ev: float = 0.3  # energy shift, uniform in [-shift_ev, shift_ev] eV
    # per-channel shift amplitudes (eV) replacing shift_ev for the channels named: the residual
    # offset a calibrated measurement keeps after gnnspec.edge_offsets (its leave-one-compound-out RMS)
    edge_shift_ev: dict[str, float] = field(default_factory=dict)
    broaden_ev: float = 0.3  # extra Gaussian broadening sigma, uniform in [0, broaden_ev] eV
    noise: float = 0.005  # Gaussian noise std (spectra have unit mean; they differ by a few per cent)
    scale: float = 0.02  # intensity scale, uniform in [1 - scale, 1 + scale]
    channel_dropout: float = 0.3  # probability to drop each present channel (one is always kept)
    # elemental quantification input (models with encoder.quantification; gnnspec.quantification):
    quantification_error: float = 0.1  # log-normal relative error drawn per element
    quantification_dropout: float = 0.25  # probability that a spectrum set comes without it
    instrument: InstrumentAugmentConfig = field(default_factory=InstrumentAugmentConfig)  # off unless enabled

    def __post_init__(self) -> None:
        from gnnspec.channels import CHANNELS

        for name, v in self.edge_shift_ev.items():
            if name not in CHANNELS:
                raise ValueError(f"augment.edge_shift_ev: unknown channel {name!r}")
            if not float(v) >= 0:
                raise ValueError(f"augment.edge_shift_ev: {name} needs a shift >= 0 eV, got {v!r}")


@dataclass
class GeneratedConfig:
    """Extra encoder training on generated environments whose spectra come from the forward model."""

    enabled: bool = False
    n_structures: int = 16  # pool generated once (no relaxation)
    supercell: list[int] = field(default_factory=lambda: [3, 3, 1])
    thermal_sigma: float = 0.03  # Angstrom (the shipped recipe's draws; wide draws their own)
    # draw the pool across the whole TM composition triangle, Li orderings and lattice parameters
    # (gnnspec.structures.nmc.draw_wide_params) instead of the shipped recipe's draws
    wide: bool = False
    seed: int = 12345
    batch_size: int = 1
    every: int = 1  # add a generated batch every N optimizer steps
    weight: float = 0.5  # weight of the generated-batch encoder losses


@dataclass
class AlignConfig:
    """Alignment stage after the joint epochs (:mod:`gnnspec.train.align`); ``epochs: 0`` skips it.

    The backbone and forward head are frozen; the structure-embedding projection, the spectrum
    encoder and the property heads train on every training environment, in i.i.d. batches.
    """

    epochs: int = 0
    batch_size: int = 256  # environments per step
    lr: float = 2e-3  # one-cycle peak learning rate
    weight_decay: float = 1e-4
    temperature: float = 0.1  # of the label-aware contrastive loss
    contrastive: float = 1.0  # spectrum-structure contrastive alignment, positives by labels
    content: float = 1.0  # element content (KL divergence), both sides
    defects: float = 0.5  # defect BCE, both sides
    content_tol: float = CONTENT_TOL  # two environments share labels: same defects, content MAE <= this
    # the encoder's input spectra: None, the FEFF environment spectra of the dataset's base tier;
    # a tier of the model (such as scf), the forward model's environment spectra in that tier for
    # every environment (training and validation), as the encoder's simulator
    spectra_tier: str | None = None
    # with spectra_tier: the environments of the joint stage's generated pool (``generated``, no
    # FEFF spectra) join the training environments, with the forward model's spectra in that tier
    generated: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("align needs epochs >= 0, batch_size >= 2, lr > 0 and temperature > 0")
        if self.generated and self.spectra_tier is None:
            raise ValueError("align.generated needs align.spectra_tier: generated structures have no FEFF spectra, only the forward model's")


@dataclass
class LogConfig:
    """TensorBoard and console output."""

    every_steps: int = 10  # scalars every N steps
    figures_every: int = 10  # predicted-vs-FEFF figure every N epochs (0: only at the end)
    embeddings_every: int = 0  # embedding projector every N epochs (0: only at the end)
    n_embeddings: int = 500  # environments shown in the projector (per side)
    progress: bool = True  # tqdm bars


@dataclass
class TrainConfig:
    """One training run."""

    name: str = "gnnspec"
    data: str = "datasets/nmc_feff10_fast"  # gnnspec LMDB folder
    run_dir: str | None = None  # default runs/<config file stem>
    seed: int = 0
    epochs: int = 100
    batch_size: int = 2  # supercells per optimizer step (per process), when batch_atoms is None
    # atoms per optimizer step (per process): as many whole supercells as fit, at least one, the
    # same number of steps on every process (gnnspec.train.batching); None: batch_size supercells
    batch_atoms: int | None = None
    loader_workers: int = 0  # DataLoader worker processes collating training batches (0: in the training process)
    eval_batch_size: int = 4
    eval_every: int = 1  # epochs
    max_minutes: float | None = None  # stop (saving and evaluating) after this wall time
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    monitor: str = "val/loss"  # metric for best.pt (lower is better)
    # after training a model of several FEFF tiers on an LMDB: fit its own linear tier heads into
    # the delivered checkpoint (gnnspec.models.linear_tier_heads; ridge, alpha on validation)
    linear_heads: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    generated: GeneratedConfig = field(default_factory=GeneratedConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be at least 1")
        if self.batch_atoms is not None and self.batch_atoms < 1:
            raise ValueError(f"batch_atoms must be at least 1 atom (or null for batch_size supercells), got {self.batch_atoms}")
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers must be 0 or more, got {self.loader_workers}")


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training YAML into :class:`TrainConfig` (``overrides``: ``KEY=VALUE`` strings,
    :func:`gnnspec.config.apply_overrides`); the run folder defaults to ``runs/<stem>``."""
    cfg = load_config(path, TrainConfig, overrides)
    if cfg.run_dir is None:
        cfg.run_dir = str(Path("runs") / Path(path).stem)
    return cfg
