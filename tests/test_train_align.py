"""The alignment stage: trains only the embedding side (projection, encoder, property heads),
lowers its losses, keeps the forward model bit for bit, and a stop leaves the model untouched."""

import pytest
import torch
from model_fixtures import smoke_config, write_synthetic_lmdb

from gnnspec.models.factory import build_model
from gnnspec.train.align import TRAINED, align_embeddings
from gnnspec.train.data import graph_statistics, load_splits
from gnnspec.train.losses import label_contrastive, same_labels

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = write_synthetic_lmdb(tmp_path_factory.mktemp("data") / "synthetic")
    cfg = smoke_config(data, tmp_path_factory.mktemp("runs") / "align", align__epochs=6, align__batch_size=32)
    splits = load_splits(cfg.data, cfg.model.backbone.cutoff, cfg.model.channels)
    stats = graph_statistics(splits["train"], cfg.model.spectra.r_readout)
    cfg.model.backbone.avg_num_neighbors = stats["avg_num_neighbors"]
    torch.manual_seed(0)
    return cfg, splits, build_model(cfg.model).eval()


def test_alignment_trains_only_the_embedding_side(setup):
    cfg, splits, model = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = []
    report = align_embeddings(model, splits, cfg.align, cfg.augment, seed=0, log=lambda s, e: history.append(s))
    after = model.state_dict()
    for name, tensor in before.items():
        same = torch.equal(tensor, after[name])
        if name.split(".")[0] in TRAINED and name.endswith("weight") and "norm" not in name and "input_" not in name:
            assert not same, name
        elif name.split(".")[0] not in TRAINED:
            assert same, name  # backbone, forward head, temperature: untouched
    assert not model.training
    assert len(history) == 6 and history[-1]["align/contrastive"] < history[0]["align/contrastive"]
    assert history[-1]["align/content"] < history[0]["align/content"]
    assert report["best_epoch"] == max(range(1, 7), key=lambda e: (history[e - 1]["align/val_hit@1"], e))


def test_a_stopped_alignment_leaves_the_model_as_it_was(setup):
    cfg, splits, model = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    assert align_embeddings(model, splits, cfg.align, cfg.augment, should_stop=lambda: calls.append(1) or len(calls) > 3) is None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_label_contrastive_reduces_to_info_nce_and_prefers_label_matches():
    from gnnspec.train.losses import info_nce

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, dtype=torch.float64), dim=-1)
    eye = torch.eye(6, dtype=torch.bool)
    assert torch.allclose(label_contrastive(a, b, eye, 0.1), info_nce(a, b, 0.1))
    content = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    defects = torch.tensor([[0, 1], [0, 1], [0, 1]])
    pos = same_labels(content, defects, 0.05)
    assert pos.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    # environments 0 and 1 share labels: embedding 0 on top of structure 1 costs nothing extra
    s = torch.eye(3, dtype=torch.float64)
    swapped = s[[1, 0, 2]]
    assert torch.isclose(label_contrastive(s, swapped, pos, 0.1), label_contrastive(s, s, pos, 0.1))
    assert label_contrastive(s, swapped, torch.eye(3, dtype=torch.bool), 0.1) > label_contrastive(s, s, torch.eye(3, dtype=torch.bool), 0.1)


def test_environment_table_matches_the_per_structure_model_passes(setup):
    """The shared table gives the embeddings a per-structure forward pass gives, in graph order."""
    from gnnspec.data import keys as K
    from gnnspec.models.environment_table import EnvironmentTable

    cfg, splits, model = setup
    graphs = splits["train"]
    table = EnvironmentTable(model, graphs)
    with torch.no_grad():
        zs, zp, labels = [], [], []
        for i in range(len(graphs)):
            g = graphs[i]
            zs.append(model.forward_structure(g, embed=True, spectra=False)["structure_embedding"])
            ok = g[K.ENV_Y_MASK].any(dim=1)
            zp.append(model.encode_spectra(g[K.ENV_Y][ok], g[K.ENV_Y_MASK][ok]))
            labels.append(g[K.ENV_DEFECTS])
        assert torch.allclose(table.structure_embeddings(model), torch.cat(zs), atol=1e-5)
        assert torch.allclose(table.spectrum_embeddings(model), torch.cat(zp), atol=1e-5)
    assert torch.equal(table.defects, torch.cat(labels).to(table.defects.dtype))
    assert len(table) == sum(int(graphs[i][K.ENV_CENTRE_INDEX].numel()) for i in range(len(graphs)))
    assert set(table.sid.tolist()) == {int(graphs[i][K.SID].reshape(-1)[0]) for i in range(len(graphs))}
    first = EnvironmentTable(model, graphs, features=False, limit=1)
    assert first.features is None and len(first) == int(graphs[0][K.ENV_CENTRE_INDEX].numel())
    with pytest.raises(ValueError, match="without backbone features"):
        first.structure_embeddings(model)


def test_an_encoder_that_reads_a_quantification_is_scored_with_and_without_it(tmp_path_factory):
    """Alignment feeds the quantification (with the augmentation's error and dropout), scores the
    validation split both ways and keeps the epoch with the best mean of the two hit@1."""
    data = write_synthetic_lmdb(tmp_path_factory.mktemp("qdata") / "synthetic")
    cfg = smoke_config(data, tmp_path_factory.mktemp("qruns") / "align", align__epochs=4, align__batch_size=32)
    cfg.model.encoder.quantification = True
    splits = load_splits(cfg.data, cfg.model.backbone.cutoff, cfg.model.channels)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "quantity" in k}
    history = []
    report = align_embeddings(model, splits, cfg.align, cfg.augment, seed=0, log=lambda s, e: history.append(s))
    assert all(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input is learned
    assert all({"align/val_hit@1", "align/val_quantified_hit@1", "align/val_quantified_content_mae"} <= set(h) for h in history)
    mean = [0.5 * (h["align/val_hit@1"] + h["align/val_quantified_hit@1"]) for h in history]
    assert report["best_epoch"] == max(range(1, 5), key=lambda e: (mean[e - 1], e))
    assert report["val"]["quantified_hit@1"] == history[report["best_epoch"] - 1]["align/val_quantified_hit@1"]


def test_the_encoder_can_learn_from_the_forward_models_spectra(setup):
    """align.spectra_tier: the table holds the frozen forward model's environment spectra (every
    environment with an absorber), and the stage trains on them."""
    import copy

    from gnnspec.models.environment_table import EnvironmentTable

    cfg, splits, model = setup
    model = copy.deepcopy(model)
    feff = EnvironmentTable(model, splits["train"], features=False)
    predicted = EnvironmentTable(model, splits["train"], features=False, spectra_tier=0)
    assert len(predicted.with_spectra) >= len(feff.with_spectra)
    both = feff.mask & predicted.mask
    assert both.any() and not torch.allclose(feff.x[both], predicted.x[both])  # model spectra, not FEFF's
    g = splits["train"][0]
    out = model.forward_structure(g, embed=False)
    env, _ = model.environment_spectra(out, g)
    assert torch.allclose(predicted.x[: env.shape[0]], env.to(predicted.x.dtype))
    align = copy.deepcopy(cfg.align)
    align.spectra_tier, align.epochs = model.cfg.tiers[0], 2
    report = align_embeddings(model, splits, align, cfg.augment, seed=0)
    assert report["spectra"] == f"forward model, tier {model.cfg.tiers[0]}" and report["environments"] == len(predicted.with_spectra)
    align.spectra_tier = "ultra"
    with pytest.raises(ValueError, match="not 'ultra'"):
        align_embeddings(model, splits, align, cfg.augment, seed=0)


def test_generated_structures_join_the_alignment_with_forward_model_spectra(setup):
    """align.generated: the wide generated pool's environments are added to the training
    environments (spectra from the forward model), and only with a spectra_tier."""
    import copy

    from gnnspec.models.environment_table import EnvironmentTable
    from gnnspec.train.config import AlignConfig, GeneratedConfig
    from gnnspec.train.data import generated_pool

    cfg, splits, model = setup
    model = copy.deepcopy(model)
    pool = generated_pool(GeneratedConfig(enabled=True, n_structures=2, supercell=[1, 1, 1], wide=True), model.cfg.backbone.cutoff, model.cfg.channels)
    n_train = len(EnvironmentTable(model, splits["train"], features=False, spectra_tier=0).with_spectra)
    n_pool = len(EnvironmentTable(model, pool, features=False, spectra_tier=0).with_spectra)
    assert n_pool > 0
    align = copy.deepcopy(cfg.align)
    align.spectra_tier, align.epochs, align.generated = model.cfg.tiers[0], 1, True
    report = align_embeddings(model, splits, align, cfg.augment, seed=0, generated=pool)
    assert report["environments"] == n_train + n_pool and report["generated_structures"] == 2
    align.generated = False
    report = align_embeddings(model, splits, align, cfg.augment, seed=0, generated=pool)
    assert report["environments"] == n_train and report["generated_structures"] == 0
    with pytest.raises(ValueError, match="needs align.spectra_tier"):
        AlignConfig(epochs=1, generated=True)


def test_alignment_draws_from_its_own_generators(setup):
    """The stage leaves torch's global generator where it was and repeats itself for a seed."""
    import copy

    cfg, splits, model = setup
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    align_embeddings(a, splits, cfg.align, cfg.augment, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # another global state: the same stage all the same
    align_embeddings(b, splits, cfg.align, cfg.augment, seed=5)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_calibration_tables_hold_the_spectra_the_encoder_was_aligned_on(setup):
    """A checkpoint aligned on forward-model spectra says so (``encoder_spectra_tier``), and the
    tables calibration, support and ensemble read then hold those spectra, not FEFF's."""
    import copy

    from gnnspec.analysis.calibration import split_table
    from gnnspec.models.environment_table import EnvironmentTable
    from gnnspec.models.factory import encoder_spectra_tier

    aligned = {"alignment": {"epochs": 2}, "train_config": {"align": {"spectra_tier": "scf"}}}
    assert encoder_spectra_tier(aligned) == "scf" and encoder_spectra_tier({"trained": aligned}) == "scf"
    assert encoder_spectra_tier({"train_config": {"align": {"spectra_tier": "scf"}}}) is None  # never aligned
    assert encoder_spectra_tier({"alignment": {"epochs": 2}, "train_config": {"align": {"spectra_tier": None}}}) is None
    cfg, splits, model = setup
    model = copy.deepcopy(model)
    feff = split_table(model, cfg.data, "val")
    model.encoder_spectra_tier = model.cfg.tiers[0]
    predicted = split_table(model, cfg.data, "val")
    direct = EnvironmentTable(model, splits["val"], features=False, spectra_tier=0)
    assert torch.equal(predicted.x, direct.x) and not torch.allclose(feff.x[feff.mask], predicted.x[feff.mask])


def test_an_alignment_on_forward_model_spectra_refits_the_input_standardisation(setup):
    import copy

    from gnnspec.models.environment_table import EnvironmentTable
    from gnnspec.train.align import table_statistics
    from gnnspec.train.data import spectra_statistics

    cfg, splits, model = setup
    model = copy.deepcopy(model)
    feff = EnvironmentTable(model, splits["train"], features=False)
    mean, std = table_statistics(feff.x, feff.mask)
    ref_mean, ref_std = spectra_statistics(splits["train"], len(model.cfg.channels), model.cfg.n_energy)
    assert torch.allclose(mean, ref_mean, atol=1e-5) and torch.allclose(std, ref_std, atol=1e-5)  # one definition
    align = copy.deepcopy(cfg.align)
    align.spectra_tier, align.epochs = model.cfg.tiers[0], 1
    align_embeddings(model, splits, align, cfg.augment, seed=0)
    predicted = EnvironmentTable(model, splits["train"], features=False, spectra_tier=0)
    want_mean, want_std = table_statistics(predicted.x, predicted.mask)
    assert torch.allclose(model.encoder.input_mean, want_mean) and torch.allclose(model.encoder.input_std, want_std.clamp(min=1e-4))


def test_evaluation_scores_the_spectrum_side_on_the_spectra_its_encoder_learned(setup):
    import copy

    from gnnspec.train.metrics import evaluate

    cfg, splits, model = setup
    model = copy.deepcopy(model)
    feff = evaluate(model, splits["val"])
    assert feff["spectrum_side_inputs"] == "FEFF environment spectra"
    model.encoder_spectra_tier = model.cfg.tiers[0]
    predicted = evaluate(model, splits["val"])
    assert predicted["spectrum_side_inputs"].endswith(f"tier {model.cfg.tiers[0]}")
    assert predicted["n_environments"] >= feff["n_environments"]  # every environment of an absorbing element
    assert all(predicted["channels"][c]["mse"] == feff["channels"][c]["mse"] for c in feff["channels"])  # forward scores unchanged
    assert predicted["content_mae"]["spectra"] != feff["content_mae"]["spectra"]
