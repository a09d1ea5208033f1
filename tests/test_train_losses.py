"""Loss terms, AUROC, spectral augmentation (with and without the instrument model), channel dropout and
the learning-rate schedule."""

import math

import numpy as np
import pytest
import torch

from gnnspec.channels import CHANNEL_NAMES, DEFAULT_CHANNELS
from gnnspec.scoring import auroc, spectrum_metrics
from gnnspec.train.augment import (
    augment_spectra,
    broaden_spectra,
    channel_dropout,
    eels_channels,
    grid_steps,
    shift_spectra,
)
from gnnspec.train.config import AugmentConfig, InstrumentAugmentConfig
from gnnspec.train.loop import lr_factor
from gnnspec.train.losses import content_loss, defect_loss, info_nce, spectra_loss

torch.set_num_threads(1)


def test_spectra_loss_masks_and_derivative():
    pred = torch.zeros(3, 2, 5)
    target = torch.zeros(3, 2, 5)
    target[0, 0] = 1.0  # labelled, error 1 everywhere, no derivative error
    target[1, 1] = torch.arange(5.0)  # not labelled: ignored
    mask = torch.tensor([[True, False], [True, False], [False, False]])
    loss, mse_c, counts = spectra_loss(pred, target, mask, derivative=1.0)
    assert counts.tolist() == [2, 0]
    assert mse_c.tolist() == [0.5, 0.0]
    assert float(loss) == pytest.approx(0.5)
    mask[1, 1] = True
    loss, _, _ = spectra_loss(pred, target, mask, derivative=2.0)
    # channel 1: intensity mse (0+1+4+9+16)/5 = 6, derivative mse 1 -> 6 + 2; mean with channel 0
    assert float(loss) == pytest.approx((0.5 + 8.0) / 2)


def test_info_nce_prefers_matching_pairs():
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    good = info_nce(z, z, 0.1)
    bad = info_nce(z, z.roll(1, 0), 0.1)
    assert float(good) < 0.1 < float(bad)
    assert float(info_nce(z, z.roll(1, 0), 0.1)) == pytest.approx(float(info_nce(z.roll(1, 0), z, 0.1)))  # symmetric


def test_content_and_defect_losses():
    t = torch.tensor([[0.25, 0.25, 0.0, 0.0, 0.5]])
    assert float(content_loss(torch.log(t.clamp(min=1e-30)), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(content_loss(torch.zeros(1, 5), t)) > 0
    assert float(defect_loss(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-6


def test_auroc_against_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.integers(0, 2, 40)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(scores, labels) == pytest.approx(pairwise)
    assert auroc([0.1, 0.9], [0, 1]) == 1.0 and auroc([0.9, 0.1], [0, 1]) == 0.0
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_spectrum_metrics():
    t = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    m = spectrum_metrics(t.copy(), t)
    assert m["mse"] == 0 and m["r2"] == 1 and m["cosine"] == pytest.approx(1.0) and m["n"] == 2
    mean_pred = np.repeat(t.mean(0, keepdims=True), 2, 0)
    assert spectrum_metrics(mean_pred, t)["r2"] == pytest.approx(0.0)
    # per-spectrum R^2 around each spectrum's own mean: a flat prediction at that mean scores 0
    t3 = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [0.0, 1.0, 5.0]])
    flat = np.repeat(t3.mean(1, keepdims=True), 3, 1)
    assert spectrum_metrics(t3.copy(), t3)["r2_median"] == pytest.approx(1.0)
    assert spectrum_metrics(flat, t3)["r2_median"] == pytest.approx(0.0)
    half = t3.copy()
    half[:, 0] += 1.0  # one spectrum perfect would not change the median of three bad ones
    assert spectrum_metrics(half, t3)["r2_median"] < 1.0


def test_shift_and_broaden():
    x = torch.zeros(2, 21)
    x[:, 10] = 1.0
    shifted = shift_spectra(x, torch.tensor([2.0, -1.5]))
    assert shifted[0, 12] == 1.0 and shifted[1, 8] == pytest.approx(0.5) and shifted[1, 9] == pytest.approx(0.5)
    b = broaden_spectra(x, torch.tensor([1.0, 2.0]), 2.0)
    assert torch.allclose(b.sum(1), torch.ones(2), atol=1e-5)
    assert b[1, 10] < b[0, 10] < 1.0
    flat = torch.ones(3, 21)
    assert torch.allclose(broaden_spectra(flat, torch.tensor([0.5, 1.0, 2.0]), 2.0), flat)


def test_augment_changes_only_present_channels():
    torch.manual_seed(0)
    x = torch.rand(4, 12, 121) + 0.5
    mask = torch.zeros(4, 12, dtype=torch.bool)
    mask[:, 2] = True
    out = augment_spectra(x, mask, grid_steps(list(CHANNEL_NAMES)), AugmentConfig())
    assert not torch.equal(out[:, 2], x[:, 2])
    assert torch.equal(out[:, 3:], x[:, 3:])
    off = AugmentConfig(shift_ev=0, broaden_ev=0, noise=0, scale=0)
    assert torch.equal(augment_spectra(x, mask, grid_steps(["Ni-K-xas"] * 12), off), x)


def test_channel_dropout_keeps_one_present_channel():
    torch.manual_seed(1)
    mask = torch.rand(200, 12) < 0.5
    mask[:, 0] = True
    kept = channel_dropout(mask, 0.99)
    assert kept.any(1).all()
    assert not (kept & ~mask).any()
    assert kept.sum() < mask.sum()


def test_lr_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert 0.1 < lr_factor(55, 10, 100, 0.1) < 1.0


def test_spectra_loss_channel_scale():
    pred, target = torch.zeros(2, 2, 4), torch.ones(2, 2, 4)
    mask = torch.ones(2, 2, dtype=torch.bool)
    plain, _, _ = spectra_loss(pred, target, mask, derivative=0.0)
    scaled, mse_c, _ = spectra_loss(pred, target, mask, derivative=0.0, scale=torch.tensor([2.0, 4.0]))
    assert float(plain) == pytest.approx(1.0) and float(scaled) == pytest.approx(3.0)
    assert mse_c.tolist() == [1.0, 1.0]  # reported MSE stays unscaled


def test_channel_scales_are_inverse_variances():
    from torch_geometric.data import Data

    from gnnspec.train.data import channel_scales

    y = torch.zeros(3, 2, 4)
    y[:, 0] = torch.tensor([[1.0], [2.0], [3.0]])  # channel 0: variance 2/3 at every energy
    mask = torch.tensor([[True, False]] * 3)
    scale = channel_scales([Data(site_y=y, site_y_mask=mask, num_nodes=3)], 2)
    assert scale[0] == pytest.approx(1.5) and scale[1] == 1.0


def test_ema_warm_up_and_param_groups():
    from gnnspec.train.ema import EMA
    from gnnspec.train.loop import param_groups

    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    ema = EMA(net, 0.99)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema.update(net)  # first update copies
    assert torch.equal(ema.module[0].weight, net[0].weight)
    with torch.no_grad():
        net[0].weight.fill_(2.0)
    ema.update(net)  # warm-up decay (1 + 1) / (10 + 1)
    assert float(ema.module[0].weight[0, 0]) == pytest.approx(2.0 - 2.0 / 11.0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 2)

    groups = param_groups(Model(), 1e-2, 1e-4, encoder_lr_scale=0.2)
    by_lr = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in groups}
    assert by_lr == {(1e-2, 0.0): 1, (1e-2, 1e-4): 1, (2e-3, 0.0): 1, (2e-3, 1e-4): 1}


def _augment_before_the_instrument(x, mask, step_ev, cfg):
    """augment_spectra as it was before the instrument model (global generator), for comparison."""
    b, c = mask.nonzero(as_tuple=True)
    if b.numel() == 0:
        return x
    rows = x[b, c]
    step = step_ev.to(x.device, x.dtype)[c]
    n = rows.shape[0]

    def uniform(lo, hi):
        return (torch.rand(n) * (hi - lo) + lo).to(x.device, x.dtype)

    if cfg.shift_ev > 0:
        rows = shift_spectra(rows, uniform(-cfg.shift_ev, cfg.shift_ev) / step)
    if cfg.broaden_ev > 0:
        sigma = uniform(0.0, cfg.broaden_ev) / step
        rows = broaden_spectra(rows, sigma, float(cfg.broaden_ev / step.min()))
    if cfg.noise > 0:
        rows = rows + cfg.noise * torch.randn(rows.shape).to(x.device, x.dtype)
    if cfg.scale > 0:
        rows = rows * uniform(1.0 - cfg.scale, 1.0 + cfg.scale).unsqueeze(-1)
    out = x.clone()
    out[b, c] = rows
    return out


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, len(DEFAULT_CHANNELS), 121, generator=g) + 0.5
    mask = torch.rand(6, len(DEFAULT_CHANNELS), generator=g) < 0.7
    return x / x.mean(-1, keepdim=True), mask, grid_steps(list(DEFAULT_CHANNELS)), eels_channels(list(DEFAULT_CHANNELS))


def test_instrument_off_reproduces_the_old_augmentation_exactly():
    x, mask, steps, eels = _batch()
    cfg = AugmentConfig()
    assert not cfg.instrument.enabled
    torch.manual_seed(11)
    old = _augment_before_the_instrument(x, mask, steps, cfg)
    torch.manual_seed(11)
    assert torch.equal(augment_spectra(x, mask, steps, cfg), old)
    torch.manual_seed(11)
    assert torch.equal(augment_spectra(x, mask, steps, cfg, eels=eels), old)
    # a generator seeded alike draws the same stream as the seeded global generator
    assert torch.equal(augment_spectra(x, mask, steps, cfg, generator=torch.Generator().manual_seed(11)), old)


def test_instrument_augmentation_draws_from_the_generator_it_is_given():
    x, mask, steps, eels = _batch()
    cfg = AugmentConfig(instrument=InstrumentAugmentConfig(enabled=True, partial=0.3))
    state = torch.get_rng_state()
    a = augment_spectra(x, mask, steps, cfg, generator=torch.Generator().manual_seed(1), eels=eels)
    b = augment_spectra(x, mask, steps, cfg, generator=torch.Generator().manual_seed(1), eels=eels)
    c = augment_spectra(x, mask, steps, cfg, generator=torch.Generator().manual_seed(2), eels=eels)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.allclose(a[mask], c[mask])
    assert torch.equal(a[~mask], x[~mask])  # only present channels change
    off = augment_spectra(x, mask, steps, AugmentConfig(), generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a[mask], off[mask], atol=1e-2)  # the instrument model acts on top of the rest
    # without a generator: seeded from torch's global generator, so a seeded run repeats
    torch.manual_seed(5)
    d = augment_spectra(x, mask, steps, cfg, eels=eels)
    torch.manual_seed(5)
    assert torch.equal(augment_spectra(x, mask, steps, cfg, eels=eels), d)
    with pytest.raises(ValueError, match="eels"):
        augment_spectra(x, mask, steps, cfg)


def test_edge_shift_moves_named_channels_by_their_own_amplitude():
    """augment.edge_shift_ev: a channel named there is shifted within its own amplitude, the others
    within shift_ev; the onset of a step moves accordingly."""
    from gnnspec.train.augment import augment_spectra, grid_steps
    from gnnspec.train.config import AugmentConfig

    channels = ["Mn-K-xas", "O-K-eels"]
    k = 121
    step = grid_steps(channels)
    x = torch.zeros(400, 2, k, dtype=torch.float64)
    x[:, :, 60:] = 1.0
    mask = torch.ones(400, 2, dtype=torch.bool)
    cfg = AugmentConfig(shift_ev=0.3, broaden_ev=0.0, noise=0.0, scale=0.0, edge_shift_ev={"Mn-K-xas": 2.7})
    y = augment_spectra(x, mask, step, cfg, generator=torch.Generator().manual_seed(1), channels=channels)
    moved = (x - y).sum(-1) * step.to(torch.float64)  # shift in eV of each step (area moved / height)
    assert moved[:, 0].abs().max() <= 2.7 + 1e-9 and moved[:, 0].abs().max() > 2.0
    assert moved[:, 1].abs().max() <= 0.3 + 1e-9
    assert float(moved[:, 0].std()) == pytest.approx(2.7 / 3**0.5, rel=0.15)
    with pytest.raises(ValueError, match="channels="):
        augment_spectra(x, mask, step, cfg)
    with pytest.raises(ValueError, match="unknown channel"):
        AugmentConfig(edge_shift_ev={"Mn-K-eels": 1.0})


def test_each_tier_can_weigh_its_channels_by_its_own_spread(tmp_path):
    """loss.tier_scales: own gives a further tier per-channel weights from its own spectra (1 / their
    spread), base the base tier's; an unknown value is refused."""
    from model_fixtures import smoke_config, tiny_model_config, write_synthetic_lmdb

    from gnnspec.channels import DEFAULT_CHANNELS
    from gnnspec.data import keys as K
    from gnnspec.errors import InputError
    from gnnspec.models.factory import build_model
    from gnnspec.train.data import channel_scales, load_split
    from gnnspec.train.objective import Objective

    data = write_synthetic_lmdb(tmp_path / "d", splits=("train",) * 3, extra_tier="scf")
    graphs = load_split(str(data), "train", 4.0, DEFAULT_CHANNELS, False, ("scf",))
    own = channel_scales(graphs, len(DEFAULT_CHANNELS), 0)
    rows = torch.cat([g[K.SITE_Y_TIERS][:, 0] for g in graphs]).double()
    mask = torch.cat([g[K.SITE_Y_TIERS_MASK][:, 0] for g in graphs])
    c = DEFAULT_CHANNELS.index("O-K-eels")
    o = rows[mask[:, c], c]
    assert float(own[c]) == pytest.approx(1.0 / float(o.var(0, unbiased=False).mean()), rel=1e-5)
    assert not torch.allclose(own, channel_scales(graphs, len(DEFAULT_CHANNELS)))
    model = build_model(tiny_model_config(tiers=["synthetic", "scf"]))
    cfg = smoke_config(data, tmp_path / "run")
    base = torch.ones(len(DEFAULT_CHANNELS))
    assert torch.equal(Objective(model, cfg, base).tier_channel_scale, base[None])  # default: the base tier's
    assert torch.equal(Objective(model, cfg, base, own[None]).tier_channel_scale, own[None])
    from gnnspec.config import from_dict
    from gnnspec.train.config import LossConfig

    with pytest.raises(InputError, match="tier_scales"):
        from_dict(LossConfig, {"tier_scales": "mine"})
