"""Linear tier heads: a ridge map from each forward model's base-tier output to a higher tier."""

import json

import numpy as np
import pytest
import torch
from model_fixtures import model_with_members, two_tier_runs

from gnnspec.errors import InputError
from gnnspec.models.absorber_geometry import N_BONDS, N_RDF, absorber_geometry
from gnnspec.models.factory import load_checkpoint, read_checkpoint
from gnnspec.models.forward_ensemble import ENTRY, ensemble_pass
from gnnspec.models.linear_tier_heads import (
    ALPHAS,
    GEOMETRY_WEIGHTS,
    KEY,
    MIX,
    column_weights,
    features,
    fit_channel,
    fitted_on,
    head_count,
    ridge_apply,
    ridge_fit,
    site_features,
)
from gnnspec.spectra import spectra_from_dict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return two_tier_runs(tmp_path_factory.mktemp("lin"), 3)


@pytest.fixture
def with_heads(setup, tmp_path):
    """The model (run 0) with runs 1 and 2 as forward members and linear heads for tier ``hi``."""
    _, data, paths = setup
    return model_with_members(tmp_path, data, paths, linear_heads=True)


def test_ridge_recovers_a_linear_map_and_alpha_is_chosen_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    w = rng.normal(size=(5, 4))
    y = x @ w + 0.3
    fit = ridge_fit(x, y, 1e-6)
    np.testing.assert_allclose(ridge_apply(fit, x), y, atol=1e-4)
    noisy = y + rng.normal(scale=3.0, size=y.shape)  # much noise, few sites: a large penalty wins
    head = fit_channel((x[:12], noisy[:12]), (x[12:], y[12:]))
    assert head["alpha"] in ALPHAS and head["alpha"] > ALPHAS[0]
    assert head["n_train"] == 12 and head["n_val"] == 48 and np.isfinite(head["val_r2"])


def test_heads_are_stored_per_forward_model_alpha_by_validation_then_refitted_with_it(setup, with_heads):
    cfg, data, paths = setup
    model_file, summary = with_heads
    record = read_checkpoint(model_file)[ENTRY]
    heads = record[KEY]["tiers"]["hi"]
    assert len(heads) == 3  # the model's own and two members
    own = [load_checkpoint(paths[0])]
    train, val = (site_features(own, str(data), split, "hi")[0] for split in ("train", "val"))
    fitted = {c for c in train if c in val and len(train[c][0]) >= 3 and len(val[c][0]) >= 2}  # enough sites to fit and choose
    assert fitted and {c for c, r2 in summary[KEY]["hi"].items() if r2} == set(heads[0]) == fitted
    model = load_checkpoint(model_file)
    assert head_count(model, "hi") == 3 and head_count(model, "synthetic") == 0
    # member 1's head: alpha chosen by validation on a fit to the training sites (that fit's
    # validation R^2 kept), then the ridge fit with that alpha on training and validation sites
    assert record[KEY]["fitted_on"] == "train+val" and fitted_on(model.forward_ensemble_record) == "train+val"
    members = [model, *model.forward_members]
    train, val = (site_features(members, str(data), split, "hi")[1] for split in ("train", "val"))
    for name, head in heads[1].items():
        # the features end with the absorber's geometry; alpha and the blocks' weights chosen together
        assert train[name][0].shape[1] == model.cfg.backbone.scalar_dim + len(train[name][1][0]) + N_BONDS + N_RDF
        chosen = fit_channel(train[name], val[name], geometry=True)
        assert tuple(head["geometry_weights"]) in GEOMETRY_WEIGHTS and head["geometry_weights"] == chosen["geometry_weights"]
        assert head["alpha"] == chosen["alpha"] and head["val_r2"] == pytest.approx(chosen["val_r2"], rel=1e-6)
        x, y = (np.concatenate([train[name][k], val[name][k]]) for k in (0, 1))
        fit = ridge_fit(x, y, head["alpha"], column_weights(x.shape[1], tuple(head["geometry_weights"])))
        np.testing.assert_allclose(head["W"].numpy(), fit["W"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(head["mu"].numpy(), fit["mu"], rtol=1e-5, atol=1e-6)
        assert not np.allclose(head["W"].numpy(), chosen["W"].numpy(), rtol=1e-4, atol=1e-5)
        assert head["n_train"] == len(train[name][0]) and head["n_val"] == len(val[name][0])


def test_edge_spread_alone_refuses_heads_fitted_on_validation(setup, with_heads):
    """The spreads are calibrated on validation before the heads see it; calibrating the edge
    spread alone afterwards would score the heads on their own fitting sites."""
    from gnnspec.models.forward_ensemble import attach_edge_spread

    model_file, _ = with_heads
    with pytest.raises(InputError, match="fitted on the 'val' split as well"):
        attach_edge_spread(model_file)


@torch.no_grad()
def test_prediction_averages_trained_and_linear_heads_and_contributions_sum(setup, with_heads, licoo2):
    _, _, paths = setup
    model_file, _ = with_heads
    model = load_checkpoint(model_file)
    _, graph = model._graph(licoo2, environments=False)
    absorbers = torch.arange(len(licoo2))
    absorbers = absorbers[model.spectra_head.table[graph.z[absorbers]].any(1)]
    out = ensemble_pass(model, graph, absorbers, 1)
    heads = model.forward_ensemble_record[KEY]["tiers"]["hi"]
    want = []
    for m, head in zip([model, *model.forward_members], heads):
        bb = m.forward_structure(graph, embed=False, spectra=False)
        want.append(m.tier_spectra(bb, graph, absorbers, 1)["spectra"])
        base = m.tier_spectra(bb, graph, absorbers, 0)
        geometry = absorber_geometry(graph, base["absorber_index"], model.cfg.backbone.cutoff)
        x = features(base, bb["node_scalars"], geometry).double().numpy()
        lin = want[-1].double().numpy().copy()  # a channel without a linear head keeps the trained head's
        for c, name in enumerate(model.cfg.channels):
            if name in head:
                fit = {k: head[name][k].double().numpy() for k in ("mu", "sd", "W", "ym")}
                lin[:, c] = ridge_apply(fit, x[:, c])
        want.append(torch.from_numpy(lin).to(want[0].dtype))
    assert 0 < len(heads[0]) < len(model.cfg.channels)  # some channels lack hi sites on training or validation sites
    mask = out["spectra_mask"]
    # the linear heads share w of each channel's mean, the trained heads 1 - w (w chosen on validation)
    mix = model.forward_ensemble_record[KEY]["mix"]["hi"]
    assert set(heads[0]) <= set(mix) <= set(model.cfg.channels) and all(w in MIX for w in mix.values())
    w = torch.tensor([mix.get(c, 0.5) for c in model.cfg.channels], dtype=want[0].dtype)[None, :, None]  # 0.5: no validation sites
    trained, linear = torch.stack(want[0::2]), torch.stack(want[1::2])
    mean = (1 - w) * trained.mean(0) + w * linear.mean(0)
    torch.testing.assert_close(out["spectra"][mask], mean[mask], rtol=1e-4, atol=1e-4)
    # the spread: the plain (ddof=1) standard deviation of the six outputs, whatever the mix
    stacked = torch.cat([trained, linear])
    torch.testing.assert_close(out["spectra_std"][mask], stacked.std(0, unbiased=True)[mask], rtol=1e-3, atol=1e-4)
    # without a mix: the plain mean of the six outputs
    record = model.forward_ensemble_record
    model.forward_ensemble_record = {**record, KEY: {k: v for k, v in record[KEY].items() if k != "mix"}}
    even = ensemble_pass(model, graph, absorbers, 1)
    model.forward_ensemble_record = record
    torch.testing.assert_close(even["spectra"][mask], stacked.mean(0)[mask], rtol=1e-4, atol=1e-4)
    # the contributions (periodic images of the absorber included) still sum to each spectrum
    n_c = mask.shape[1]
    sums = torch.zeros_like(out["spectra"]).view(-1, out["spectra"].shape[-1])
    sums.index_add_(0, out["contribution_absorber"] * n_c + out["contribution_channel"], out["contributions"])
    torch.testing.assert_close(sums.view_as(out["spectra"]), out["spectra"], rtol=1e-5, atol=1e-5)
    # the base tier is untouched: the mean of the three trained heads
    base = ensemble_pass(model, graph, absorbers, 0)
    singles = [load_checkpoint(p).forward_structure(graph, absorbers) for p in paths]
    torch.testing.assert_close(base["spectra"], torch.stack([s["spectra"] for s in singles]).mean(0), rtol=1e-5, atol=1e-6)
    # a structure with no absorber asked for (a supercell without sites of the tier): empty outputs, no error
    none = ensemble_pass(model, graph, absorbers[:0], 1)
    assert none["spectra"].shape == (0, n_c, out["spectra"].shape[-1]) and none["spectra_std"].shape == none["spectra"].shape


def test_cli_fits_heads_on_a_model_without_members_and_predict_uses_them(setup, tmp_path, licoo2):
    from gnnspec.cli import main

    _, data, paths = setup
    model_file = tmp_path / "single.pt"
    model_file.write_bytes(paths[0].read_bytes())
    assert main(["ensemble", str(model_file), "--linear-heads", "--data", str(data)]) == 0
    model = load_checkpoint(model_file)
    assert head_count(model, "hi") == 1 and not model.forward_members
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    docs = {}
    for label, model_path, extra in (("both", model_file, []), ("own", model_file, ["--own-forward"]), ("gnn", paths[0], [])):
        out = tmp_path / f"{label}.json"
        assert main(["predict", str(cif), "--site", "0", "--model", str(model_path), "--tier", "hi", *extra, "--out", str(out)]) == 0
        docs[label] = json.loads(out.read_text())
    meta = {k: d["meta"] for k, d in docs.items()}
    assert (meta["both"]["linear_heads"], meta["own"]["linear_heads"], meta["gnn"]["linear_heads"]) == (1, 1, 0)
    # the spread is calibrated for the trained head and the linear head together; the own forward
    # side (the same two heads, as the model has no members) predicts the same without a spread
    assert "spread" in meta["both"] and "spread" not in meta["own"] and "spread" not in meta["gnn"]
    assert "spread_meaning" in meta["both"] and "spread_meaning" not in meta["own"]
    spectra = {k: spectra_from_dict(d, k)[0] for k, d in docs.items()}
    for c, s in spectra["both"].items():
        np.testing.assert_allclose(spectra["own"][c].intensity, s.intensity, rtol=1e-6, atol=1e-9)
    assert any(not np.allclose(spectra["gnn"][c].intensity, s.intensity) for c, s in spectra["both"].items())


def test_refuses_a_model_without_a_higher_tier(setup, tmp_path):
    from gnnspec.models.linear_tier_heads import fit_linear_heads

    _, data, paths = setup
    model = load_checkpoint(paths[0])
    with pytest.raises(InputError, match="linear heads map the base tier"):
        fit_linear_heads([model], str(data), tiers=["synthetic"])


def test_the_baseline_is_shared_as_the_base_tier_spectrum_is_made():
    """Atom j gets the mapped contribution plus its share c_j / f of the baseline at each energy;
    where an absorber's base-tier contributions are not all positive, the absorber takes it."""
    from gnnspec.models.linear_tier_heads import head_output

    c = torch.tensor([[1.0, 2.0, 1.0], [1.0, 1.0, -0.5], [2.0, 1.0, 1.5]], dtype=torch.float64)  # self, two neighbours
    base = {
        "contributions": c,
        "contribution_channel": torch.zeros(3, dtype=torch.long),
        "contribution_absorber": torch.zeros(3, dtype=torch.long),
        "contribution_distance": torch.tensor([0.0, 2.0, 3.0], dtype=torch.float64),
        "spectra": c.sum(0).view(1, 1, 3),
        "spectra_mask": torch.ones(1, 1, dtype=torch.bool),
        "absorber_index": torch.tensor([0]),
    }
    scalars = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    n_f = 3
    head = {
        "mu": torch.zeros(2 + n_f),
        "sd": torch.ones(2 + n_f),
        "W": torch.zeros(2 + n_f, 3),
        "ym": torch.tensor([1.0, 2.0, 3.0]),
    }
    out = head_output({"X-K-xas": head}, ["X-K-xas"], base, scalars, base)
    f = c.sum(0)
    want = head["ym"].double() * c / f
    want[:, 2] = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)  # a negative contribution at the third energy
    torch.testing.assert_close(out["contributions"], want)
    # a map and absorber features: the contributions still sum to the head's closed form
    head["W"] = torch.arange(15, dtype=torch.float32).view(5, 3) / 10
    out = head_output({"X-K-xas": head}, ["X-K-xas"], base, scalars, base)
    x = torch.cat([scalars[0], f]).double()
    torch.testing.assert_close(out["spectra"][0, 0], x @ head["W"].double() + head["ym"].double())
    torch.testing.assert_close(out["contributions"].sum(0), out["spectra"][0, 0])
    # a head that reads the absorber's geometry: its term joins the baseline, shared the same way
    geometry = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    head = {k: torch.cat([v, torch.tensor([0.5, 2.0])]) if k in ("mu", "sd") else v for k, v in head.items()}
    head["W"] = torch.cat([head["W"], torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])])
    with pytest.raises(ValueError, match="reads the absorber's geometry"):
        head_output({"X-K-xas": head}, ["X-K-xas"], base, scalars, base)
    out = head_output({"X-K-xas": head}, ["X-K-xas"], base, scalars, base, geometry)
    g = (geometry[0] - torch.tensor([0.5, 2.0], dtype=torch.float64)) / torch.tensor([0.5, 2.0], dtype=torch.float64)  # mu and sd both [0.5, 2]
    torch.testing.assert_close(out["spectra"][0, 0], x @ head["W"][:5].double() + g @ head["W"][5:].double() + head["ym"].double())
    torch.testing.assert_close(out["contributions"].sum(0), out["spectra"][0, 0])


def test_block_weights_scale_or_leave_out_the_geometry_columns():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4 + N_BONDS + N_RDF))
    y = x[:, :4] @ rng.normal(size=(4, 3)) + 2.0 * x[:, 4:5]  # the first bond column matters
    w = column_weights(x.shape[1], (1.0, 0.0))
    assert w[:4].tolist() == [1.0] * 4 and (w[4 : 4 + N_BONDS] == 1.0).all() and (w[4 + N_BONDS :] == 0.0).all()
    fit = ridge_fit(x, y, 1e-3, w)
    assert np.all(fit["W"][4 + N_BONDS :] == 0.0) and np.abs(fit["W"][4]).max() > 1.0
    np.testing.assert_allclose(ridge_apply(fit, x), y, atol=1e-2)
    # a weight scales the standardised column before the ridge: a penalty of alpha / weight^2 on it
    half = ridge_fit(x[:, :5], y, 10.0, np.array([1, 1, 1, 1, 0.5]))
    z = (x[:, :5] - x[:, :5].mean(0)) / (x[:, :5].std(0) + 1e-6)
    z[:, 4] *= 0.5
    coef = np.linalg.solve(z.T @ z + 10.0 * np.eye(5), z.T @ (y - y.mean(0)))
    np.testing.assert_allclose(ridge_apply(half, x[:, :5]), z @ coef + y.mean(0), atol=1e-8)
    head = fit_channel((x[:50], y[:50]), (x[50:], y[50:]), geometry=True)
    assert head["geometry_weights"][0] > 0  # validation keeps the bond block that carries the signal


def test_dropping_a_member_refits_the_heads_of_the_rest(setup, with_heads, capsys):
    from gnnspec.cli import main

    _, data, paths = setup
    model_file, _ = with_heads
    names = [m["source"] for m in read_checkpoint(model_file)[ENTRY]["members"]]
    assert len(names) == 2
    # refused: an unknown name (the present ones are listed), and a drop without refitting the heads
    assert main(["ensemble", str(model_file), "--drop-members", "no_such/best.pt", "--linear-heads", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "no forward member named no_such/best.pt" in err and names[0] in err
    assert main(["ensemble", str(model_file), "--drop-members", names[0], "--data", str(data)]) == 2
    assert "--linear-heads" in capsys.readouterr().err
    assert len(read_checkpoint(model_file)[ENTRY]["members"]) == 2  # nothing written on a refusal
    assert main(["ensemble", str(model_file), "--drop-members", names[0], "--linear-heads", "--data", str(data)]) == 0
    assert "2 forward models" in capsys.readouterr().out
    record = read_checkpoint(model_file)[ENTRY]
    assert [m["source"] for m in record["members"]] == names[1:]
    assert len(record[KEY]["tiers"]["hi"]) == 2  # one set of heads per forward model left
    assert head_count(load_checkpoint(model_file), "hi") == 2


@torch.no_grad()
def test_mix_is_the_validation_best_share_of_the_linear_heads(setup, with_heads):
    from gnnspec.models.forward_ensemble import feff_site_passes
    from gnnspec.models.linear_tier_heads import fit_linear_heads, fit_mix, r2_around_mean

    _, data, _ = setup
    model_file, _ = with_heads
    model = load_checkpoint(model_file)
    with pytest.raises(ValueError, match="fitted on 'val'"):
        fit_mix(model, str(data))
    record = {k: v for k, v in model.forward_ensemble_record.items() if k != KEY}
    heads = fit_linear_heads([model, *model.forward_members], str(data))  # on training sites only

    def val_spectra(with_heads_record):
        model.forward_ensemble_record = {**record, KEY: heads} if with_heads_record else record
        got = {}
        for row, out, target, ok in feff_site_passes(model, str(data), "val"):
            for c, name in enumerate(model.cfg.channels):
                if row == 1 and ok[:, c].any():
                    got.setdefault(name, []).append((out["spectra"][ok[:, c], c].double().numpy(), target[ok[:, c], c].double().numpy()))
        return {c: tuple(np.concatenate(v) for v in zip(*rows)) for c, rows in got.items()}

    trained = val_spectra(False)  # no linear heads at all: the trained heads' mean
    even = val_spectra(True)  # no mix yet: the plain mean of trained and linear heads
    passes = [out for _, out, _, _ in feff_site_passes(model, str(data), "val", {1})]
    assert passes
    for out in passes:  # the two kinds' means make the even mean
        assert torch.allclose(out["head_kind_spectra"].mean(0), out["spectra"], atol=1e-6)
    model.forward_ensemble_record = {**record, KEY: heads}
    mix = fit_mix(model, str(data))["hi"]
    assert model.forward_ensemble_record[KEY] is heads and "mix" not in heads  # the record is left as it was
    assert set(mix) == {name for name, (_, y) in trained.items() if len(y) >= 2}  # a share needs two sites to score
    for name in mix:
        t, y = trained[name]
        lin = 2 * even[name][0] - t  # every forward model has both heads
        scores = {w: r2_around_mean(y, (1 - w) * t + w * lin) for w in MIX}
        assert scores[mix[name]] == pytest.approx(max(scores.values()), abs=1e-6)
    assert any(w != 0.5 for w in mix.values())
