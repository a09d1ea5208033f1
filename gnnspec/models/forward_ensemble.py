"""An ensemble of forward models inside one checkpoint: member-mean spectra, contributions and spread.

The scf tier has about 80 training sites per channel, and one trained forward model fits them
(train R^2 0.89-0.97) far better than sites it never saw (test 0.0-0.84): the error on a new
site is mostly the variance of one training run. Averaging the spectra of several
independently trained forward models cuts that variance, and the spread of their spectra says
where they disagree (``docs/2026-12-06-scf-accuracy.md``, ``benchmarks/fidelity.md``).

A member is the forward side (:data:`FORWARD`: the backbone and the spectra head) of another
trained checkpoint, with that checkpoint's own model config: members may differ in training
settings and seed. Every member must predict the model's channels and tiers on the same graph
and readout pairs (same ``backbone.cutoff``, ``spectra.r_readout`` and energy grids), so that
its per-atom contributions line up with the model's, pair by pair. The model itself is member 0.

What a prediction is, with an ensemble attached:

* spectrum: the mean of the members' spectra;
* per-atom contributions: the mean of the members' contributions of each (absorber, atom) pair,
  which sums to the mean spectrum exactly (every member's contributions sum to its spectrum);
* spread: ``k`` times the members' standard deviation at each energy (``ddof=1``), ``k`` per
  (tier, channel) fitted on the validation sites of that tier so that FEFF's spectrum lies
  within the spread at 68 % of the energies (:func:`calibrate_spread`). It says how much the
  answer depends on the training run; it does not cover what every member shares (the FEFF
  tier's own convergence, the training structures).

In a tier above the base, each forward model may also carry a linear tier head
(:mod:`gnnspec.models.linear_tier_heads`: a ridge map from its base-tier output to that tier);
the mean and the spread then run over the trained tier heads and the linear heads together: in
the mean the linear heads share a weight ``w`` per channel and the trained heads ``1 - w``, ``w``
chosen on the validation sites (:func:`gnnspec.models.linear_tier_heads.fit_mix`; equal weights
where none was chosen); the spread is their plain standard deviation, calibrated as above against
the weighted mean.

Stored as the checkpoint entry ``forward_ensemble`` (:data:`ENTRY`): ``members`` (each with its
``source`` name, ``model_config``, forward ``weights`` and what it was trained with), ``spread_k``,
``coverage`` and, when fitted, ``linear_heads``. :func:`gnnspec.models.factory.load_checkpoint` attaches the members as
``model.forward_members``; ``gnnspec ensemble MODEL --forward-from RUN.pt ... [--linear-heads]``
writes the entry.
Training, the encoder's alignment in ``gnnspec train`` and the structure embeddings use the model's
own forward side only: the ensemble serves predictions (``predict``, ``explain``, the benchmarks)
and, after ``gnnspec ensemble --realign`` (:mod:`gnnspec.train.realign`), simulates the spectra
the encoders learn and are calibrated and scored on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gnnspec.errors import InputError

ENTRY = "forward_ensemble"
FORWARD = ("backbone", "spectra_head")
COVERAGE = 0.68
NOT_COVERED = "errors every member shares: the FEFF tier's own convergence and the structures all members learned from"
#: Output tensors that must be identical across members (the readout pairs and masks).
SHARED = ("spectra_mask", "contribution_absorber", "contribution_atom", "contribution_channel", "absorber_index")


def forward_side(model: nn.Module) -> dict[str, torch.Tensor]:
    """The forward model's weights (backbone and spectra head), on the CPU, portable."""
    from gnnspec.models.factory import portable_state_dict

    return {k: v for k, v in portable_state_dict(model).items() if k.split(".")[0] in FORWARD}


def check_compatible(cfg, member_cfg, source: str) -> None:
    """Refuse a member whose spectra or contributions would not line up with the model's."""
    checks = {
        "channels": (list(cfg.channels), list(member_cfg.channels)),
        "tiers": (list(cfg.tiers), list(member_cfg.tiers)),
        "backbone.cutoff": (cfg.backbone.cutoff, member_cfg.backbone.cutoff),
        "spectra.r_readout": (cfg.spectra.r_readout, member_cfg.spectra.r_readout),
        "n_energy": (cfg.n_energy, member_cfg.n_energy),
    }
    for name, (own, theirs) in checks.items():
        if own != theirs:
            raise InputError(f"{source}: its {name} is {theirs}, the model's is {own}; a forward member must match it")


def member_record(path: str | Path) -> dict:
    """The forward side of the checkpoint at ``path`` as an ensemble member: its run folder and file
    name as ``source``, model config, forward weights and its training record (the whole training
    config, so ``gnnspec train`` can make the member again, and the epoch)."""
    from gnnspec.models.factory import load_checkpoint, read_checkpoint, trained_config

    ckpt = read_checkpoint(path)
    return {
        "source": Path(path).parent.name + "/" + Path(path).name,
        "model_config": ckpt["model_config"],
        "weights": forward_side(load_checkpoint(path, forward_ensemble=False)),
        "trained": {"train_config": trained_config(ckpt), "epoch": (ckpt.get("trained") or ckpt).get("epoch")},
    }


def member_configs(model: nn.Module, record: dict, where: str) -> list[tuple[str, object]]:
    """``(source name, ModelConfig)`` of every member of ``record``, each checked to line up with
    ``model`` (:func:`check_compatible`)."""
    from gnnspec.config import from_dict
    from gnnspec.models.config import ModelConfig

    out = []
    for i, m in enumerate(record.get("members", [])):
        source = f"{where}: member {i + 1} ({m.get('source', '?')})"
        cfg = from_dict(ModelConfig, m["model_config"], f"{source}: model_config")
        cfg.compile = False
        check_compatible(model.cfg, cfg, source)
        out.append((source, cfg))
    return out


def build_members(model: nn.Module, record: dict, where: str = "forward_ensemble") -> list[nn.Module]:
    """The members of ``record`` (beyond the model itself) as models in eval mode, on the model's
    device and dtype; each holds only its forward side's trained weights."""
    from gnnspec.models.factory import build_model, load_portable_state_dict

    param = next(model.parameters())
    members = []
    for (source, cfg), m in zip(member_configs(model, record, where), record.get("members", [])):
        member = build_model(cfg)
        own = forward_side(member)
        if set(m["weights"]) != set(own):
            lacking = sorted(set(own) ^ set(m["weights"]))
            raise InputError(
                f"{source}: its forward weights do not fit its config ({len(lacking)} entries differ, first {lacking[0]})"
            )
        state = {k: v.detach().cpu() for k, v in member.state_dict().items()}
        state.update(m["weights"])
        load_portable_state_dict(member, state)
        members.append(member.to(param.device, param.dtype).eval())
    return members


class LazyMembers(Sequence):
    """The forward members of a checkpoint, built (:func:`build_members`) the first time one is
    needed: loading a model for the encoder side only (``infer``, ``query``, ``map``) then costs
    no member construction (about 0.45 s each). Their configs are checked at once
    (:func:`member_configs`), so a member that cannot line up is still refused at load."""

    def __init__(self, model: nn.Module, record: dict, where: str):
        member_configs(model, record, where)  # refuse at load what cannot line up
        self._model, self._record, self._where = model, record, where
        self._members: list[nn.Module] | None = None

    def _built(self) -> list[nn.Module]:
        if self._members is None:
            self._members = build_members(self._model, self._record, self._where)
            self._record = None  # the weights now live in the members
        return self._members

    def __len__(self) -> int:
        return len(self._members) if self._members is not None else len(self._record.get("members", []))

    def __getitem__(self, i):
        return self._built()[i]


def ensemble_pass(model: nn.Module, data, absorbers: torch.Tensor, tier: int) -> dict[str, torch.Tensor]:
    """The forward head's output for ``absorbers`` of ``data`` in tier row ``tier``: with members
    attached (``model.forward_members``), the member mean of spectra and contributions, plus
    ``spectra_spread [A, C, K]`` (calibrated spread, zero without a calibration),
    ``spectra_std`` (the members' raw standard deviation) and ``forward_model_spectra [M, A, C, K]``
    (each forward model's own spectrum, the model's first); without, the model's own output."""
    return ensemble_passes(model, data, [(absorbers, tier)])[0]


def ensemble_passes(model: nn.Module, data, requests: list[tuple[torch.Tensor, int]]) -> list[dict[str, torch.Tensor]]:
    """:func:`ensemble_pass` for several ``(absorbers, tier row)`` requests on one graph or batch,
    with one backbone pass per member for all of them. In a tier with linear heads
    (:mod:`gnnspec.models.linear_tier_heads`), each forward model's linear head joins the mean
    beside its trained tier head."""
    from gnnspec.models.absorber_geometry import absorber_geometry
    from gnnspec.models.linear_tier_heads import KEY as LINEAR
    from gnnspec.models.linear_tier_heads import head_output, uses_geometry

    models = [model] + list(getattr(model, "forward_members", None) or [])
    linear = ((getattr(model, "forward_ensemble_record", None) or {}).get(LINEAR) or {}).get("tiers") or {}
    channels = list(model.cfg.channels)
    per_request: list[list[dict[str, torch.Tensor]]] = [[] for _ in requests]
    owners: list[list[int]] = [[] for _ in requests]  # the forward model behind each output
    linear_out: list[list[bool]] = [[] for _ in requests]  # whether each output is a linear head's
    geometry: dict[int, torch.Tensor] = {}  # the absorbers' geometry of each absorber set, for heads that read it
    for i, m in enumerate(models):
        backbone = m.forward_structure(data, embed=False, spectra=False)
        base: dict[int, dict[str, torch.Tensor]] = {}  # the base-tier readout of each absorber set
        for outs, owner, is_linear, (absorbers, tier) in zip(per_request, owners, linear_out, requests):
            out = m.tier_spectra(backbone, data, absorbers, tier)
            outs.append(out)
            owner.append(i)
            is_linear.append(False)
            if tier == 0:  # a base-tier request's readout serves a linear head of the same absorbers
                base[id(absorbers)] = out
            heads = linear.get(model.cfg.tiers[tier]) if tier > 0 else None
            if heads and i < len(heads):
                if id(absorbers) not in base:
                    base[id(absorbers)] = m.tier_spectra(backbone, data, absorbers, 0)
                if uses_geometry(heads[i]) and id(absorbers) not in geometry:
                    geometry[id(absorbers)] = absorber_geometry(data, base[id(absorbers)]["absorber_index"], model.cfg.backbone.cutoff)
                outs.append(head_output(heads[i], channels, base[id(absorbers)], backbone["node_scalars"], out, geometry.get(id(absorbers))))
                owner.append(i)
                is_linear.append(True)
    return [
        _member_mean(model, outs, owner, tier, is_linear)
        for outs, owner, is_linear, (_, tier) in zip(per_request, owners, linear_out, requests)
    ]


def output_weights(model: nn.Module, tier: int, is_linear: list[bool]) -> torch.Tensor:
    """``[n outputs, C]``: each output's weight in the mean of one request, per channel, summing to 1
    over the outputs. Equal weights, except in a tier whose linear heads carry a mix
    (:func:`gnnspec.models.linear_tier_heads.fit_mix`): there the linear heads share ``w`` of
    each channel and the trained heads ``1 - w``."""
    from gnnspec.models.linear_tier_heads import mix_weights

    channels = list(model.cfg.channels)
    n = len(is_linear)
    linear = torch.tensor(is_linear, dtype=torch.bool)
    mix = mix_weights(getattr(model, "forward_ensemble_record", None), model.cfg.tiers[tier]) if tier > 0 else None
    if not mix or linear.all() or not linear.any():
        return torch.full((n, len(channels)), 1.0 / n, dtype=torch.float64)
    w = torch.tensor([float(mix.get(c, 0.5)) for c in channels], dtype=torch.float64)
    n_linear = int(linear.sum())
    return torch.where(linear[:, None], w[None, :] / n_linear, (1.0 - w[None, :]) / (n - n_linear))


def _member_mean(
    model: nn.Module, outs: list[dict[str, torch.Tensor]], owners: list[int], tier: int, is_linear: list[bool]
) -> dict[str, torch.Tensor]:
    """The members' outputs (the model's first) for one request merged as :func:`ensemble_pass`
    says; ``owners[j]``: the forward model whose trained or linear head gave ``outs[j]``;
    ``is_linear[j]``: whether it was the linear head. The mean is weighted by
    :func:`output_weights`; the spread is the outputs' plain standard deviation (``ddof=1``), which
    stays defined where the mix gives one kind of head all the weight, and is scaled by ``k``
    calibrated against the weighted mean's errors. Where both kinds of head answered,
    ``head_kind_spectra [2, A, C, K]`` holds the trained heads' and the linear heads' plain means."""
    out = outs[0]
    if len(outs) == 1:
        return out
    for name in SHARED:
        for i, o in enumerate(outs[1:], start=1):
            if not torch.equal(o[name], out[name]):
                raise RuntimeError(f"forward member {i} gave other {name} than the model: its readout does not line up")
    merged = dict(out)
    spectra = torch.stack([o["spectra"] for o in outs])
    a = output_weights(model, tier, is_linear).to(spectra.device, spectra.dtype)  # [n, C]
    mean = torch.einsum("jc,jack->ack", a, spectra).contiguous()
    merged["spectra"] = mean
    channel = out["contribution_channel"]
    merged["contributions"] = torch.einsum("jp,jpk->pk", a[:, channel], torch.stack([o["contributions"] for o in outs])).contiguous()
    std = spectra.std(0, unbiased=True) if spectra.numel() else spectra.sum(0)  # no absorbers: an empty spread
    merged["spectra_std"] = std
    kind = torch.tensor(is_linear, device=spectra.device)
    if kind.any() and not kind.all():  # the trained heads' and the linear heads' plain means, for fit_mix
        merged["head_kind_spectra"] = torch.stack([spectra[~kind].mean(0), spectra[kind].mean(0)])
    # each forward model's own spectrum: its heads in this tier (trained and linear) weighted as in the mean
    index = torch.tensor(owners, device=spectra.device)
    per_model = []
    for i in sorted(set(owners)):
        own = a[index == i]
        per_model.append(torch.einsum("jc,jack->ack", own / own.sum(0).clamp_min(1e-12), spectra[index == i]).contiguous())
    merged["forward_model_spectra"] = torch.stack(per_model)
    k = spread_factors(model, tier)
    if k is not None:
        merged["spectra_spread"] = std * k.to(std.device, std.dtype)[None, :, None]
    return merged


def spread_factors(model: nn.Module, tier: int) -> torch.Tensor | None:
    """``[C]``: the calibrated spread factor of each channel in tier row ``tier`` (0 where none was
    fitted); None where the model holds no calibration for that tier (no spread is given)."""
    record = getattr(model, "forward_ensemble_record", None) or {}
    by_channel = (record.get("spread_k") or {}).get(model.cfg.tiers[tier])
    if by_channel is None:
        return None
    return torch.tensor([float(by_channel.get(c, 0.0)) for c in model.cfg.channels], dtype=torch.float64)


def own_forward_record(record: dict) -> dict:
    """The part of a forward ensemble record that belongs to the model's own forward side: its own
    linear tier heads (member 0's) and its channel skill, without the members or a spread
    calibrated for all of them."""
    from gnnspec.models.channel_skill import KEY as SKILL
    from gnnspec.models.linear_tier_heads import KEY as LINEAR

    own: dict = {}
    linear = record.get(LINEAR)
    if linear:
        own[LINEAR] = {**linear, "tiers": {t: heads[:1] for t, heads in linear["tiers"].items()}}
    skill = record.get(SKILL)
    if skill and skill.get("own_forward") is not None:
        own[SKILL] = {k: v for k, v in skill.items() if k != "forward_ensemble"}
    return own


def member_count(model: nn.Module) -> int:
    """How many forward models a prediction averages (1 without an ensemble)."""
    return 1 + len(getattr(model, "forward_members", None) or [])


def feff_site_passes(model: nn.Module, data: str, split: str, rows: set[int] | None = None):
    """Yield ``(tier row, out, target, ok)`` for every batch of ``split`` and every tier with FEFF
    spectra in it (only the tier rows ``rows`` when given): ``out`` the :func:`ensemble_passes`
    output for the sites FEFF computed in that tier, ``target [A, C, K]`` FEFF's spectra of those
    sites, ``ok [A, C]`` (numpy) where both FEFF and the model have the channel."""
    from gnnspec.data import keys as K
    from gnnspec.data.dataset import tier_batches

    tiers, channels = list(model.cfg.tiers), list(model.cfg.channels)
    dtype = next(model.parameters()).dtype
    for batch in tier_batches(data, split, model.cfg.backbone.cutoff, channels, tiers, dtype):
        targets = [(batch[K.SITE_Y], batch[K.SITE_Y_MASK])]
        targets += [(batch[K.SITE_Y_TIERS][:, t - 1], batch[K.SITE_Y_TIERS_MASK][:, t - 1]) for t in range(1, len(tiers))]
        wanted = [(t, have.any(dim=1).nonzero(as_tuple=True)[0]) for t, (_, have) in enumerate(targets)]
        wanted = [(t, sites) for t, sites in wanted if sites.numel() and (rows is None or t in rows)]
        for (t, sites), out in zip(wanted, ensemble_passes(model, batch, [(sites, t) for t, sites in wanted])):
            target, have = targets[t]
            yield t, out, target[sites], (have[sites] & out["spectra_mask"]).cpu().numpy()


@torch.no_grad()
def calibrate_spread(model: nn.Module, data: str, split: str = "val") -> dict:
    """Fit the spread factor ``k`` of every (tier, channel) on ``split``'s sites where FEFF computed
    that tier: the 68th percentile of ``|mean - FEFF| / std`` over their energies. Returns
    ``{"spread_k": {tier: {channel: k}}, "coverage_unscaled": {tier: {channel: fraction within
    one std}}, "n_spectra": {tier: {channel: n}}, "split": split}``."""
    from gnnspec.models.linear_tier_heads import head_count

    if member_count(model) < 2 and not any(head_count(model, t) for t in model.cfg.tiers[1:]):
        raise InputError("the model has no forward members to calibrate (attach some with gnnspec ensemble --forward-from)")
    tiers, channels = list(model.cfg.tiers), list(model.cfg.channels)
    ratios: dict[str, dict[str, list]] = {t: {c: [] for c in channels} for t in tiers}
    counts: dict[str, dict[str, int]] = {t: dict.fromkeys(channels, 0) for t in tiers}
    for t, out, target, ok in feff_site_passes(model, data, split):
        if "spectra_std" not in out:  # one prediction only in this tier (no members, no linear heads)
            continue
        err = (out["spectra"].double() - target.double()).abs().numpy()
        std = out["spectra_std"].double().numpy()
        for c, name in enumerate(channels):
            e, s = err[ok[:, c], c], std[ok[:, c], c]
            ratios[tiers[t]][name].append(e[s > 0] / s[s > 0])
            counts[tiers[t]][name] += int(ok[:, c].sum())
    result: dict = {
        "spread_k": {},
        "coverage_unscaled": {},
        "n_spectra": {},
        "split": split,
        "coverage": COVERAGE,
        "not_covered": NOT_COVERED,
    }
    for tier in tiers:
        for name in channels:
            if not ratios[tier][name]:
                continue
            z = np.concatenate(ratios[tier][name])
            if z.size == 0:
                continue
            result["spread_k"].setdefault(tier, {})[name] = float(np.quantile(z, COVERAGE))
            result["coverage_unscaled"].setdefault(tier, {})[name] = float(np.mean(z <= 1.0))
            result["n_spectra"].setdefault(tier, {})[name] = counts[tier][name]
    return result


def attach_members(
    model_path: str | Path,
    sources: list[str | Path],
    data: str | None = None,
    split: str = "val",
    linear_heads: bool = False,
    keep: bool = False,
    drop: list[str] | None = None,
) -> dict:
    """Write the forward ensemble of ``sources`` (trained checkpoints) into the checkpoint at
    ``model_path`` and calibrate its spread on ``split`` of ``data`` (default: the dataset the
    model was trained on); ``linear_heads``: fit every forward model's linear tier heads first
    (:mod:`gnnspec.models.linear_tier_heads`); ``keep``: the checkpoint's present forward members
    stay and ``sources`` join them (else they replace them); ``drop``: the present members with
    these source names leave and the others stay (``sources`` may then be empty; requires
    ``linear_heads``, so that the heads of the members left are refitted, not lost). Returns the
    written record (weights left out)."""
    from gnnspec.models.factory import load_checkpoint, read_checkpoint

    if not sources and not drop:
        raise InputError("name at least one trained checkpoint to add as a forward member")
    if drop and not linear_heads:
        raise InputError("dropping forward members changes the forward models: refit their heads and recalibrate the spread as well (--linear-heads)")
    data = _dataset_of(model_path, data)
    present = list((read_checkpoint(model_path).get(ENTRY) or {}).get("members", []))
    if drop:
        names, dropped = [m["source"] for m in present], set(drop)
        unknown = sorted(dropped - set(names))
        if unknown:
            raise InputError(f"{model_path}: no forward member named {', '.join(unknown)}; its members are {', '.join(names) or 'none'}")
        kept = [m for m in present if m["source"] not in dropped]
    else:
        kept = present if keep else []
    model = load_checkpoint(model_path, forward_ensemble=False)  # the members attached below replace any earlier ones
    record = {"members": kept + [member_record(p) for p in sources]}
    seen = [("the model's own (member 0)", forward_side(model))]
    for m in record["members"]:
        for name, weights in seen:
            if m["weights"].keys() == weights.keys() and all(torch.equal(m["weights"][k], weights[k]) for k in weights):
                raise InputError(
                    f"{m['source']}: its forward weights are those of {name}; each member must be another training run"
                )
        seen.append((m["source"], m["weights"]))
    model.forward_members = build_members(model, record, str(model_path))
    return _fit_and_write(model, model_path, record, data, split, linear_heads)


def attach_linear_heads(model_path: str | Path, data: str | None = None, split: str = "val") -> dict:
    """Fit linear tier heads for the forward models the checkpoint at ``model_path`` already holds
    (its own and any forward members), recalibrate the spread on ``split`` and write both."""
    from gnnspec.models.factory import load_checkpoint, read_checkpoint

    data = _dataset_of(model_path, data)
    record = dict(read_checkpoint(model_path).get(ENTRY) or {"members": []})
    model = load_checkpoint(model_path)
    model.forward_members = list(getattr(model, "forward_members", None) or [])
    return _fit_and_write(model, model_path, record, data, split, True)


def attach_edge_spread(model_path: str | Path, data: str | None = None, split: str = "val") -> dict:
    """Calibrate only the edge spread (:func:`gnnspec.models.predicted_edges.calibrate_edge_spread`)
    of the forward ensemble the checkpoint at ``model_path`` holds, every other part of its record
    kept, and write it; returns the calibration."""
    from gnnspec.models.factory import load_checkpoint, read_checkpoint, write_checkpoint_entry
    from gnnspec.models.linear_tier_heads import fitted_on
    from gnnspec.models.predicted_edges import KEY as EDGES
    from gnnspec.models.predicted_edges import calibrate_edge_spread

    record = read_checkpoint(model_path).get(ENTRY)
    if not record or not record.get("members"):
        raise InputError(f"{model_path}: it holds no forward members (attach some with gnnspec ensemble --forward-from)")
    if split in (fitted_on(record) or "").split("+"):
        raise InputError(
            f"{model_path}: its linear heads were fitted on the {split!r} split as well, so a spread calibrated there would be too narrow; "
            "run gnnspec ensemble MODEL --linear-heads, which calibrates on validation before that refit"
        )
    calibration = calibrate_edge_spread(load_checkpoint(model_path), _dataset_of(model_path, data), split)
    write_checkpoint_entry(model_path, ENTRY, {**record, EDGES: calibration})
    return calibration


def attach_channel_skill(model_path: str | Path, data: str | None = None) -> dict:
    """Score the channel skill (:mod:`gnnspec.models.channel_skill`) of the checkpoint at
    ``model_path`` on its dataset's test split, every other part of its forward-ensemble record
    kept (a checkpoint without one gets a record holding the skill only), and write it."""
    from gnnspec.models.channel_skill import KEY as SKILL
    from gnnspec.models.channel_skill import score_both
    from gnnspec.models.factory import load_checkpoint, read_checkpoint, write_checkpoint_entry

    data = _dataset_of(model_path, data)
    record = dict(read_checkpoint(model_path).get(ENTRY) or {"members": []})
    model = load_checkpoint(model_path)
    model.forward_members = list(getattr(model, "forward_members", None) or [])
    model.forward_ensemble_record = record
    record[SKILL] = score_both(model, data)
    write_checkpoint_entry(model_path, ENTRY, record)
    return record[SKILL]


def _dataset_of(model_path: str | Path, data: str | None) -> str:
    from gnnspec.models.factory import read_checkpoint, trained_config

    data = data or trained_config(read_checkpoint(model_path)).get("data")
    if not data:
        raise InputError(f"{model_path}: it records no training dataset; pass the dataset to calibrate the spread on")
    return str(data)


def _fit_and_write(model: nn.Module, model_path: str | Path, record: dict, data: str, split: str, linear_heads: bool) -> dict:
    """Fit the linear heads (when asked), calibrate the spread, write the record; its summary."""
    from gnnspec.data.store import SpectraStore
    from gnnspec.edge_position import STEP_EDGE_CHANNELS
    from gnnspec.models.channel_skill import KEY as SKILL
    from gnnspec.models.channel_skill import score_both
    from gnnspec.models.factory import write_checkpoint_entry
    from gnnspec.models.linear_tier_heads import KEY as LINEAR
    from gnnspec.models.linear_tier_heads import fit_linear_heads, fit_mix, head_sites, refit_with_validation
    from gnnspec.models.predicted_edges import KEY as EDGES
    from gnnspec.models.predicted_edges import calibrate_edge_spread

    record.pop(LINEAR, None)
    model.forward_ensemble_record = record
    if linear_heads:
        # the spreads are calibrated on validation with heads fitted without it; then the heads
        # are refitted with the validation sites as well, and the test split scores what is kept
        sites = head_sites([model, *model.forward_members], data)
        record[LINEAR] = fit_linear_heads([model, *model.forward_members], data, sites=sites)
        record[LINEAR]["mix"] = fit_mix(model, data, split)  # before the spread: it is calibrated on the weighted mean
    record.update(calibrate_spread(model, data, split), data=data, data_sha256=SpectraStore(data).fingerprint())
    record.pop(EDGES, None)
    if member_count(model) > 1 and any(c in STEP_EDGE_CHANNELS for c in model.cfg.channels):
        record[EDGES] = calibrate_edge_spread(model, data, split)
    if linear_heads:
        record[LINEAR] = refit_with_validation(record[LINEAR], sites)
    record[SKILL] = score_both(model, data)
    write_checkpoint_entry(model_path, ENTRY, record)
    summary = {k: v for k, v in record.items() if k not in ("members", LINEAR)} | {"members": [m["source"] for m in record["members"]]}
    if linear_heads:
        summary[LINEAR] = {
            tier: {c: [h[c]["val_r2"] for h in heads if c in h] for c in model.cfg.channels}
            for tier, heads in record[LINEAR]["tiers"].items()
        }
        summary["linear_heads_mix"] = record[LINEAR].get("mix", {})
    return summary
