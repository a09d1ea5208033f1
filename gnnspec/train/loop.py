"""The training loop: one config, one loop, single process or DDP under torchrun.

:func:`run_training` loads the data, resolves the model config (neighbour counts measured on the
training split), builds the model and runs :class:`Trainer`. Per optimizer step: a batch of
supercells (``batch_size`` of them, or as many as fit in ``batch_atoms`` atoms; plus a generated
batch when configured) through :class:`Objective`, AdamW, gradient clipping, warm-up + cosine
schedule over the run's exact number of steps, optional EMA. Per epoch (rank 0): validation loss and
metrics, ``last.pt`` and (when the monitored metric improves) ``best.pt``. At the end: test
metrics of the best model, ``metrics_test.json``, embedding projector and spectra figures.

Ctrl-C (or SIGTERM) stops after the current step, saves ``last.pt`` and returns; ``--resume``
continues exactly from there (same batches, same random draws).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from gnnspec.config import config_to_dict, save_config
from gnnspec.data import keys as K
from gnnspec.models.factory import build_model, load_checkpoint, portable_state_dict
from gnnspec.models.structure_support import element_record
from gnnspec.train import distributed as D
from gnnspec.train.batching import loader_total_steps, set_loader_epoch
from gnnspec.train.checkpoint import restore_training, rng_state, save_checkpoint
from gnnspec.train.config import TrainConfig
from gnnspec.train.data import channel_scales, close_loader, generated_batch, make_loader, spectra_statistics
from gnnspec.train.ema import EMA
from gnnspec.train.metrics import evaluate, flat_metrics, write_metrics
from gnnspec.train.objective import Objective
from gnnspec.train.tblog import Board, environment_embeddings, spectra_figure


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, encoder_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: weight decay on matrices only; the spectrum encoder at ``lr * encoder_lr_scale``."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith("encoder."), p.ndim >= 2), []).append(p)
    return [
        {"params": params, "lr": lr * (encoder_lr_scale if enc else 1.0), "weight_decay": weight_decay if decay else 0.0}
        for (enc, decay), params in sorted(groups.items())
    ]


class _StopFlag:
    """SIGINT/SIGTERM set a flag (the loop stops after the step); a second SIGINT raises."""

    def __init__(self):
        self.stop = False
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Runs the epochs of one training run; see the module docstring."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        model,
        splits: dict,
        generated=None,
        resume: bool = False,
        info: D.DistInfo | None = None,
        step_callback=None,
    ):
        self.cfg, self.run_dir, self.info = cfg, Path(run_dir), info or D.DistInfo()
        self.splits, self.generated = splits, generated
        self.step_callback = step_callback
        self.device = self.info.device
        if not resume:  # a resumed run loads them with the weights
            mean, std = spectra_statistics(splits["train"], len(model.cfg.channels), model.cfg.n_energy)
            model.encoder.set_input_statistics(mean, std)
        self.model = model.to(self.device)
        self.channel_scale = channel_scales(splits["train"], len(model.cfg.channels))
        n_ch = len(model.cfg.channels)
        # each further tier's loss weighed by its own spread per channel (loss.tier_scales: own), or by the base tier's
        self.tier_channel_scale = (
            torch.stack([channel_scales(splits["train"], n_ch, t) for t in range(len(model.cfg.tiers) - 1)])
            if cfg.loss.tier_scales == "own" and len(model.cfg.tiers) > 1
            else None
        )
        self.objective = Objective(self.model, cfg, self.channel_scale, self.tier_channel_scale).to(self.device)
        self.ddp = (
            DistributedDataParallel(
                self.objective,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
                broadcast_buffers=False,
            )
            if self.info.distributed
            else self.objective
        )
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, o.lr, o.weight_decay, o.encoder_lr_scale), lr=o.lr, betas=tuple(o.betas)
        )
        self.loader = make_loader(
            splits["train"], cfg.batch_size, True, cfg.seed, self.info.rank, self.info.world, cfg.batch_atoms, cfg.loader_workers
        )
        self.steps_per_epoch = len(self.loader)  # of the current epoch (with batch_atoms it varies per epoch)
        self.total_steps = loader_total_steps(self.loader, cfg.epochs)  # exact, also then
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, o.warmup_steps, self.total_steps, o.min_lr_ratio)
        )
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.eval_objective = Objective(self.eval_model, cfg, self.channel_scale, self.tier_channel_scale).to(self.device)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.epoch, self.step, self.batch_in_epoch, self.best = 0, 0, 0, None
        self.board = Board(self.run_dir / "tb", enabled=self.info.is_main)
        if resume:
            state = restore_training(
                self.run_dir / "last.pt", self.model, self.optimizer, self.scheduler, self.ema, self.info.rank
            )
            self.epoch, self.step = state["epoch"], state["step"]
            self.batch_in_epoch, self.best = state["batch_in_epoch"], state["best_metric"]

    # -- helpers -----------------------------------------------------------------------
    def _to_device(self, batch):
        batch = batch.to(self.device)
        dtype = next(self.model.parameters()).dtype
        batch.pos, batch.edge_shift = batch.pos.to(dtype), batch.edge_shift.to(dtype)
        return batch

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    def save(self, name: str) -> None:
        """Write ``name`` (collective: every rank contributes its RNG state, rank 0 writes)."""
        states = D.gather_objects(self.info, rng_state())
        if self.info.is_main:
            save_checkpoint(
                self.run_dir / name,
                self.model,
                self.optimizer,
                self.scheduler,
                self.ema,
                epoch=self.epoch,
                step=self.step,
                batch_in_epoch=self.batch_in_epoch,
                best_metric=self.best,
                train_config=config_to_dict(self.cfg),
                rng=states,
                structure_support=element_record(self.splits["train"], self.generated),
            )

    # -- one step ----------------------------------------------------------------------
    def train_step(self, batch) -> dict[str, torch.Tensor]:
        batch = self._to_device(batch)
        gen = None
        g = self.cfg.generated
        if self.generated is not None and g.enabled and self.step % g.every == 0:
            gen = self._to_device(
                generated_batch(self.generated, self.step * self.info.world + self.info.rank, g.batch_size, g.seed)
            )
        self.objective.train()
        with self._autocast():
            loss, logs = self.ddp(batch, gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip).detach()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        logs["n_graphs"] = torch.tensor(float(batch.num_graphs))
        logs["n_envs"] = torch.tensor(float(batch[K.ENV_CENTRE_INDEX].numel()))
        return logs

    # -- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss terms and metrics of the evaluated (EMA or raw) model; rank 0 only."""
        val = self.splits.get("val")
        if val is None or len(val) == 0:
            return {}
        self.eval_objective.eval()
        sums: dict[str, float] = {}
        n = 0
        for batch in make_loader(val, self.cfg.eval_batch_size, False, 0):
            _, logs = self.eval_objective(self._to_device(batch))
            for k, v in logs.items():
                if v.ndim == 0:
                    sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        out = {f"val/{k}": v / n for k, v in sums.items()}
        out.update(flat_metrics(evaluate(self.eval_model, val, self.cfg.eval_batch_size), "val/"))
        return out

    # -- the run ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until ``epochs`` (or ``max_minutes``, or a stop signal); returns a summary."""
        try:
            return self._fit()
        finally:
            close_loader(self.loader)  # loader workers end with the run, whatever ended it

    def _fit(self) -> dict:
        from tqdm import tqdm

        t_start = time.time()
        interrupted = timed_out = False
        seen_graphs = seen_envs = 0.0
        t_train = 0.0
        with _StopFlag() as flag:
            try:
                while self.epoch < self.cfg.epochs:
                    set_loader_epoch(self.loader, self.epoch)
                    self.steps_per_epoch = len(self.loader)
                    sums: dict[str, float] = {}
                    ch_sum = ch_n = None
                    bar = tqdm(
                        total=self.steps_per_epoch,
                        initial=self.batch_in_epoch,
                        desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                        disable=not (self.cfg.log.progress and self.info.is_main),
                        file=sys.stderr,
                        leave=False,
                    )
                    for i, batch in enumerate(self.loader):
                        if i < self.batch_in_epoch:
                            continue
                        t0 = time.time()
                        logs = self.train_step(batch)
                        t_train += time.time() - t0
                        self.step += 1
                        self.batch_in_epoch = i + 1
                        seen_graphs += float(logs["n_graphs"]) * self.info.world
                        seen_envs += float(logs["n_envs"]) * self.info.world
                        for k, v in logs.items():
                            if v.ndim == 0:
                                sums[k] = sums.get(k, 0.0) + float(v)
                        sums["n_steps"] = sums.get("n_steps", 0.0) + 1.0
                        ch_sum = logs["channel_mse"] * logs["channel_count"] + (0 if ch_sum is None else ch_sum)
                        ch_n = logs["channel_count"] + (0 if ch_n is None else ch_n)
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(logs['loss']):.4f}")
                        if self.info.is_main and self.step % self.cfg.log.every_steps == 0:
                            scal = {k: float(v) for k, v in logs.items() if v.ndim == 0 and not k.startswith("n_")}
                            scal["lr"] = self.scheduler.get_last_lr()[0]
                            self.board.scalars(scal, self.step, "train_step/")
                        if self.step_callback is not None:
                            self.step_callback(self)
                        if self.cfg.max_minutes is not None and time.time() - t_start > 60 * self.cfg.max_minutes:
                            timed_out = True
                        if D.any_flag(self.info, flag.stop or timed_out):
                            interrupted = flag.stop
                            timed_out = timed_out or not flag.stop
                            break
                    bar.close()
                    if interrupted or timed_out:
                        break  # a resumed run finishes this epoch (its end-of-epoch work included)
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self._end_of_epoch(sums, ch_sum, ch_n, seen_graphs, seen_envs, t_train)
                if not interrupted:  # also after max_minutes: best.pt is what the run delivers
                    interrupted = self.align(lambda: flag.stop) is None
            except KeyboardInterrupt:
                interrupted = True
        self.save("last.pt")
        if interrupted:
            if self.info.is_main:
                print(
                    f"\ninterrupted at epoch {self.epoch + 1}, step {self.step}: saved {self.run_dir / 'last.pt'}; "
                    "rerun with --resume to continue",
                    file=sys.stderr,
                )
            self.board.close()
            return {"interrupted": True, "epoch": self.epoch, "step": self.step, "run_dir": str(self.run_dir)}
        summary = {
            "interrupted": False,
            "timed_out": timed_out,
            "epoch": self.epoch,
            "step": self.step,
            "run_dir": str(self.run_dir),
            "train_seconds": t_train,
            "wall_seconds": time.time() - t_start,
            "supercells_per_s": seen_graphs / max(t_train, 1e-9),
            "environments_per_s": seen_envs / max(t_train, 1e-9),
        }
        summary.update(self.finish())
        self.board.close()
        return summary

    def _end_of_epoch(self, sums, ch_sum, ch_n, seen_graphs, seen_envs, t_train) -> None:
        n = max(sums.get("n_steps", 0.0), 1.0)  # steps run in this session of the epoch
        do_eval = self.epoch % self.cfg.eval_every == 0 or self.epoch == self.cfg.epochs
        metrics: dict[str, float] = {}
        if self.info.is_main:
            epoch_scalars = {k: v / n for k, v in sums.items() if not k.startswith("n_")}
            if ch_sum is not None:
                for c, name in enumerate(self.model.cfg.channels):
                    if ch_n[c] > 0:
                        epoch_scalars[f"channel_mse/{name}"] = float(ch_sum[c] / ch_n[c])
            epoch_scalars["supercells_per_s"] = seen_graphs / max(t_train, 1e-9)
            epoch_scalars["environments_per_s"] = seen_envs / max(t_train, 1e-9)
            self.board.scalars(epoch_scalars, self.epoch, "train/")
            if do_eval:
                metrics = self.validate()
                self.board.scalars(metrics, self.epoch)
            f = self.cfg.log.figures_every
            if f and self.epoch % f == 0 and len(self.splits.get("val", [])):
                self.board.figure("val/spectra", spectra_figure(self.eval_model, self.splits["val"][0]), self.epoch)
            e = self.cfg.log.embeddings_every
            if e and self.epoch % e == 0:
                self._projector(self.epoch)
            self.board.flush()
        improved = False
        if self.info.is_main and do_eval:
            if metrics and self.cfg.monitor not in metrics:
                from gnnspec.errors import InputError

                names = ", ".join(k for k in metrics if k.count("/") <= 2)
                raise InputError(f"monitor {self.cfg.monitor!r} is not a validation metric; choose one of: {names}")
            value = metrics.get(self.cfg.monitor, sums.get("loss", 0.0) / n)
            if self.best is None or value < self.best:
                self.best, improved = value, True
        improved = D.broadcast_object(self.info, improved)
        self.best = D.broadcast_object(self.info, self.best)
        self.save("last.pt")
        if improved:
            self.save("best.pt")

    def align(self, should_stop) -> dict | None:
        """The alignment stage (:mod:`gnnspec.train.align`) on ``best.pt``, rewritten in place; rank 0.

        Returns its report ({} when switched off or on other ranks), or None when stopped; a
        resumed run whose ``best.pt`` is already aligned does not repeat it.
        """
        from gnnspec.models.factory import read_checkpoint
        from gnnspec.train.align import align_embeddings

        a, best = self.cfg.align, self.run_dir / "best.pt"
        report: dict | None = {}
        if a.epochs > 0 and self.info.is_main and best.exists():
            ckpt = read_checkpoint(best, "cpu")
            if "alignment" in ckpt:
                report = ckpt["alignment"]
            else:
                model = load_checkpoint(best, self.device)
                report = align_embeddings(
                    model, self.splits, a, self.cfg.augment, self.cfg.seed, self.board.scalars, should_stop, self.generated
                )
                if report is not None:
                    ckpt["model"] = portable_state_dict(model)
                    ckpt["alignment"] = report
                    # the alignment settings used (a resumed run may align with a changed ``align`` section)
                    ckpt.setdefault("train_config", {})["align"] = config_to_dict(self.cfg)["align"]
                    tmp = best.with_name(best.name + ".tmp")
                    torch.save(ckpt, tmp)
                    tmp.replace(best)
                    if report["val"] is not None:
                        print(f"alignment: validation hit@1 {report['val']['hit@1']:.3f} (epoch {report['best_epoch']})", file=sys.stderr)
        return D.broadcast_object(self.info, report)

    def _projector(self, step: int) -> None:
        graphs = self.splits.get("val") or self.splits["train"]
        vecs, meta, header = environment_embeddings(self.eval_model, graphs, self.cfg.log.n_embeddings)
        self.board.embedding("environments", vecs, meta, header, step)

    def finish(self) -> dict:
        """Test metrics of best.pt (or the final weights), written to metrics_test.json; rank 0."""
        out: dict = {}
        if self.info.is_main:
            best = self.run_dir / "best.pt"
            model = load_checkpoint(best, self.device) if best.exists() else self.eval_model
            test = self.splits.get("test")
            if test is not None and len(test):
                metrics = evaluate(model, test, self.cfg.eval_batch_size)
                write_metrics(metrics, self.run_dir / "metrics_test.json")
                self.board.scalars(flat_metrics(metrics, "test/"), self.epoch)
                out["test_metrics"] = metrics
                self.board.figure("test/spectra", spectra_figure(model, test[0]), self.epoch)
            self._projector(self.epoch)
            self.board.flush()
            out["checkpoint"] = str(best if best.exists() else self.run_dir / "last.pt")
            out["tensorboard"] = str(self.run_dir / "tb")
        D.barrier(self.info)
        return out


def run_training(cfg: TrainConfig, resume: bool = False, step_callback=None, splits: dict | None = None) -> dict:
    """Load data, build the model and train; see the module docstring. ``splits`` overrides the LMDB."""
    from gnnspec.errors import InputError
    from gnnspec.train.data import generated_pool, graph_statistics, load_splits

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = D.setup(cfg.device)
    try:
        run_dir = Path(cfg.run_dir or f"runs/{cfg.name}")
        last = run_dir / "last.pt"
        if resume and not last.exists():
            raise InputError(f"{run_dir}: nothing to resume (no last.pt)")
        if not resume and last.exists():
            raise InputError(f"{run_dir} already holds a run (last.pt); use --resume to continue it or --out for a new folder")
        if resume:
            from gnnspec.config import from_dict
            from gnnspec.models.config import ModelConfig
            from gnnspec.models.factory import read_checkpoint

            cfg.model = from_dict(ModelConfig, read_checkpoint(last)["model_config"], f"{last}: model_config")
        from_data = splits is None
        if splits is None:
            splits = load_splits(
                cfg.data,
                cfg.model.backbone.cutoff,
                cfg.model.channels,
                cfg.log.progress and info.is_main,
                tuple(cfg.model.tiers[1:]),
                cfg.model.tiers[0],
            )
        stats = graph_statistics(splits["train"], cfg.model.spectra.r_readout)
        if cfg.model.backbone.avg_num_neighbors is None:
            cfg.model.backbone.avg_num_neighbors = round(stats["avg_num_neighbors"], 4)
        if cfg.model.spectra.readout_norm is None:
            cfg.model.spectra.readout_norm = round(stats["readout_norm"], 4)
        gen = None
        if cfg.generated.enabled:
            gen = generated_pool(cfg.generated, cfg.model.backbone.cutoff, cfg.model.channels, progress=cfg.log.progress and info.is_main)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        D.barrier(info)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model)
        torch.manual_seed(cfg.seed + 1 + info.rank)
        trainer = Trainer(cfg, run_dir, model, splits, gen, resume, info, step_callback)
        summary = trainer.fit()
        if info.is_main and from_data and cfg.linear_heads and len(cfg.model.tiers) > 1 and not summary["interrupted"]:
            summary["linear_heads"] = _fit_linear_heads(Path(summary["checkpoint"]), cfg.data)
        return summary
    finally:
        D.teardown(info)


def _fit_linear_heads(checkpoint: Path, data: str) -> dict:
    """Fit the delivered checkpoint's own linear tier heads (and the spread of its trained and
    linear heads) on ``data``; print and return their validation R^2 per tier and channel."""
    from gnnspec.models.forward_ensemble import attach_linear_heads

    by_tier = attach_linear_heads(checkpoint, data)["linear_heads"]
    for tier, by_channel in by_tier.items():
        fitted = ", ".join(f"{c} {r2[0]:.2f}" for c, r2 in by_channel.items() if r2)
        print(f"{checkpoint}: linear {tier} heads fitted, validation R^2 {fitted}")
    return by_tier
