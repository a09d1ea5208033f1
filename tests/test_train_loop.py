"""Training end to end on a tiny synthetic LMDB: the loss falls, TensorBoard events and
self-describing checkpoints are written, Ctrl-C saves last.pt and --resume continues exactly."""

import signal

import pytest
import torch
from model_fixtures import scalar_series, smoke_config, write_synthetic_lmdb

from gnnspec.errors import InputError
from gnnspec.models import load_checkpoint
from gnnspec.train.loop import run_training

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_lmdb(tmp_path_factory.mktemp("data") / "synthetic")


@pytest.fixture(scope="module")
def smoke_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    cfg = smoke_config(data, run_dir, epochs=8, log__figures_every=4)
    return run_dir, run_training(cfg)


def test_smoke_training_lowers_the_loss(smoke_run):
    run_dir, summary = smoke_run
    assert not summary["interrupted"] and summary["epoch"] == 8
    train_loss = scalar_series(run_dir / "tb", "train/loss")
    val_loss = scalar_series(run_dir / "tb", "val/loss")
    assert len(train_loss) == 8
    assert train_loss[-1] < train_loss[0]
    assert val_loss[-1] < val_loss[0]
    assert summary["supercells_per_s"] > 0 and summary["environments_per_s"] > 0


def test_run_folder_contents(smoke_run):
    run_dir, summary = smoke_run
    assert (run_dir / "config.yaml").exists() and (run_dir / "metrics_test.json").exists()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "tb" / "projector_config.pbtxt").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    assert {"train/channel_mse/Ni-K-xas", "val/channels/Ni-K-xas/r2", "test/spectra/mse", "train_step/lr"} <= scalars
    assert {"val/spectra", "test/spectra"} <= set(ea.Tags()["images"])
    m = summary["test_metrics"]
    assert set(m["channels"]) == set(load_checkpoint(run_dir / "best.pt").cfg.channels)
    assert "defect_auroc" in m and "content_mae" in m


def test_checkpoints_are_self_describing(smoke_run):
    run_dir, _ = smoke_run
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run_dir / name, weights_only=True)
        for key in (
            "format",
            "format_version",
            "model_config",
            "model",
            "raw_model",
            "optimizer",
            "scheduler",
            "epoch",
            "step",
            "best_metric",
            "rng",
            "train_config",
        ):
            assert key in ckpt, (name, key)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["epoch"] == 8 and last["step"] == 8 * 3
    assert last["model_config"]["backbone"]["avg_num_neighbors"] > 0  # measured on the data
    std = last["model"]["encoder.input_std"]  # encoder input standardisation, set from the training data
    assert std.shape == (12, 121) and not torch.allclose(std, torch.ones_like(std))
    model = load_checkpoint(run_dir / "best.pt")
    assert not model.training


def test_refuses_to_overwrite_or_resume_nothing(data, smoke_run, tmp_path):
    run_dir, _ = smoke_run
    with pytest.raises(InputError, match="--resume"):
        run_training(smoke_config(data, run_dir))
    with pytest.raises(InputError, match="nothing to resume"):
        run_training(smoke_config(data, tmp_path / "empty"), resume=True)


def test_interrupt_then_resume_continues_exactly(data, tmp_path):
    opts = dict(epochs=3, log__figures_every=0)
    straight = run_training(smoke_config(data, tmp_path / "straight", **opts))
    assert not straight["interrupted"]

    def interrupt(trainer):
        if trainer.step == 4:  # mid-epoch (3 steps per epoch)
            signal.raise_signal(signal.SIGINT)

    first = run_training(smoke_config(data, tmp_path / "split", **opts), step_callback=interrupt)
    assert first["interrupted"] and first["step"] == 4
    ckpt = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["batch_in_epoch"] == 1 and ckpt["epoch"] == 1
    second = run_training(smoke_config(data, tmp_path / "split", **opts), resume=True)
    assert not second["interrupted"] and second["step"] == 9
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for key in ("raw_model", "model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert a["best_metric"] == b["best_metric"]


def test_alignment_stage_rewrites_best_with_its_report(smoke_run):
    run_dir, summary = smoke_run
    best = torch.load(run_dir / "best.pt", weights_only=True)
    report = best["alignment"]
    assert report["epochs"] == 3 and 1 <= report["best_epoch"] <= 3 and report["environments"] > 0
    assert 0.0 <= report["val"]["hit@1"] <= 1.0
    assert len(scalar_series(run_dir / "tb", "align/contrastive")) == 3
    assert len(scalar_series(run_dir / "tb", "align/val_hit@1")) == 3


def test_ctrl_c_during_alignment_then_resume_aligns_once(data, tmp_path, monkeypatch):
    import gnnspec.train.align as align

    real_score, calls = align.score, []

    def score_then_interrupt(*args, **kwargs):  # Ctrl-C at the end of the first alignment epoch
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(align, "score", score_then_interrupt)
    cfg = dict(epochs=2, log__figures_every=0, align__epochs=3)
    first = run_training(smoke_config(data, tmp_path / "run", **cfg))
    assert first["interrupted"]
    assert "alignment" not in torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    second = run_training(smoke_config(data, tmp_path / "run", **cfg), resume=True)
    assert not second["interrupted"] and second["step"] == 2 * 3
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["alignment"]["epochs"] == 3
    assert len(calls) == 1 + 3  # the resumed run aligned from the start, once


def test_a_finished_run_resumed_with_an_align_section_aligns_and_records_it(data, tmp_path):
    """Joint epochs once, the alignment settings chosen afterwards: best.pt says which were used."""
    run_training(smoke_config(data, tmp_path / "run", epochs=2, log__figures_every=0, align__epochs=0))
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert "alignment" not in ckpt and ckpt["train_config"]["align"]["epochs"] == 0
    run_training(smoke_config(data, tmp_path / "run", epochs=2, log__figures_every=0, align__epochs=2), resume=True)
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert ckpt["alignment"]["epochs"] == 2 and ckpt["train_config"]["align"]["epochs"] == 2
    assert ckpt["train_config"]["epochs"] == 2


def test_a_multi_fidelity_model_learns_the_second_tier_from_a_few_sites(tmp_path, capsys):
    """Two tiers in one LMDB (the second on every third site): one model, a fidelity embedding,
    the second tier's loss logged and falling, predictions chosen by tier from the API and CLI."""
    import numpy as np

    from gnnspec.cli import main

    data = write_synthetic_lmdb(tmp_path / "data", extra_tier="scf")
    cfg = smoke_config(data, tmp_path / "run", epochs=12, generated__enabled=False, align__epochs=0, optim__lr=1e-2)
    cfg.model.tiers = ["synthetic", "scf"]
    summary = run_training(cfg)
    assert not summary["interrupted"]
    scf_loss = scalar_series(tmp_path / "run" / "tb", "train/spectra_scf")
    assert len(scf_loss) == 12 and np.mean(scf_loss[-3:]) < 0.6 * np.mean(scf_loss[:3])  # measured: 78 -> 28
    model = load_checkpoint(tmp_path / "run" / "best.pt")
    assert model.cfg.tiers == ["synthetic", "scf"]
    from gnnspec.models.linear_tier_heads import head_count

    # the delivered checkpoint carries its own linear scf heads (fitted after training)
    assert head_count(model, "scf") == 1 and any(summary["linear_heads"]["scf"].values())
    assert "linear scf heads fitted" in capsys.readouterr().out
    scf_test = summary["test_metrics"]["tiers"]["scf"]
    assert scf_test["n_site_spectra"] > 0 and np.isfinite(scf_test["spectra"]["mse"])
    from gnnspec.bench.fidelity import fidelity_table

    table = fidelity_table(model, str(data))  # the test split's scf sites, three ways
    assert set(table) and all(r["feff_base"]["n"] == r["model_tier"]["n"] > 0 for r in table.values())
    assert all(r["model_tier"]["mse"] != r["model_base"]["mse"] and np.isfinite(r["feff_base"]["cosine"]) for r in table.values())
    assert all(0 <= r["model_tier"]["shift_rms_ev"] <= 5 and not r["model_tier"]["r2_aligned"] < r["model_tier"]["r2"] - 1e-9 for r in table.values())  # NaN on one site
    from gnnspec.bench.fidelity import render
    from gnnspec.bench.report import tier_forward_section

    assert "aligned" in render(table, "scf", "synthetic", "test") and "aligned R^2" in "\n".join(tier_forward_section(table, "scf", "synthetic"))
    with pytest.raises(InputError, match="needs a higher tier"):
        fidelity_table(model, str(data), tier="synthetic")
    # the both-tiers model against a base-only one, on the same scf sites (R^2 around their mean)
    import copy

    from gnnspec.bench.fidelity import render_comparison, tier_comparison
    from gnnspec.models.factory import build_model

    base_cfg = copy.deepcopy(model.cfg)
    base_cfg.tiers = ["synthetic"]
    base_only = build_model(base_cfg).eval()
    comparison = tier_comparison({"both": model, "base": base_only}, str(data))
    for name, r in comparison.items():
        assert r["both"]["n"] == r["base"]["n"] == table[name]["model_tier"]["n"]
        assert r["both"]["mse"] == pytest.approx(table[name]["model_tier"]["mse"], rel=1e-6)
    scored = [r for r in comparison.values() if r["both"]["n"] > 1]
    assert scored and all(r["both"]["r2"] > r["base"]["r2"] for r in scored)  # an untrained model is worse
    assert all(r["base"]["diff_high"] < 0 and r["both"]["diff"] == 0 for r in scored)  # reference: the first label
    twice = tier_comparison({"both": model, "twice": [model, model], "pair": [model, base_only]}, str(data))
    for r in twice.values():  # the mean of a model with itself is the model; with an untrained one it differs
        assert r["twice"]["mse"] == pytest.approx(r["both"]["mse"], rel=1e-9) and r["pair"]["mse"] != pytest.approx(r["both"]["mse"])
    text = render_comparison(comparison, {"both": "scf", "base": "synthetic"}, "scf", "test")
    assert "both (scf head)" in text and "| mean |" in text and "| base - both |" in text
    with pytest.raises(InputError, match="no ultra-tier spectra"):
        tier_comparison({"both": model}, str(data), tier="ultra")
    from gnnspec.structures.nmc import NMCParams, generate_nmc

    s = generate_nmc(NMCParams(seed=9, supercell=(1, 1, 1))).structure
    o = next(i for i, x in enumerate(s) if x.specie.symbol == "O")
    base, high = model.predict_spectra(s, o, tier="synthetic"), model.predict_spectra(s, o)  # default: the last tier
    slope = lambda y: np.polyfit(np.linspace(0, 1, y.size), y / y.mean(), 1)[0]  # noqa: E731
    assert slope(high["O-K-eels"][1]) > slope(base["O-K-eels"][1])  # the scf tier learned its tilt
    cif = tmp_path / "s.cif"
    s.to(filename=str(cif))
    for tier in ("synthetic", "scf"):
        assert main(["predict", str(cif), "--site", str(o), "--model", str(tmp_path / "run" / "best.pt"), "--tier", tier, "--out", str(tmp_path / f"{tier}.json")]) == 0
    assert main(["predict", str(cif), "--site", str(o), "--model", str(tmp_path / "run" / "best.pt"), "--tier", "ultra", "--out", str(tmp_path / "x.json")]) == 2
    assert "not 'ultra'" in capsys.readouterr().err


def test_a_model_whose_first_tier_is_not_the_base_reads_that_tier_as_its_targets(tmp_path):
    """``load_split(..., tier=)``: an scf-only model trains on the scf spectra (every third site
    here), a default ``fast`` model on a dataset without that tier reads the base tier, and any
    other missing tier is refused with the tiers the dataset holds."""
    from gnnspec.train.data import load_split

    data = write_synthetic_lmdb(tmp_path / "data", splits=("train",) * 2, extra_tier="scf")
    channels = ("O-K-eels",)
    base = load_split(str(data), "train", 4.0, channels)
    scf = load_split(str(data), "train", 4.0, channels, tier="scf")
    fast = load_split(str(data), "train", 4.0, channels, tier="fast")  # no such tier: the base one
    for b, s, f in zip(base, scf, fast):
        o_sites = (b.z == 8).nonzero().flatten()
        assert b.site_y_mask[o_sites, 0].all()
        assert set(s.site_y_mask[:, 0].nonzero().flatten().tolist()) == {i for i in o_sites.tolist() if i % 3 == 0}
        i = next(i for i in o_sites.tolist() if i % 3 == 0)
        assert not torch.allclose(s.site_y[i, 0], b.site_y[i, 0])  # the tilted scf spectrum, not the base one
        assert torch.equal(f.site_y, b.site_y)
    with pytest.raises(InputError, match="no ultra-tier spectra .it holds scf, synthetic"):
        load_split(str(data), "train", 4.0, channels, tier="ultra")
