"""The forward ensemble: member means of spectra and contributions, a calibrated spread, in the checkpoint."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from model_fixtures import model_with_members, save_run, two_tier_runs

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.models.factory import build_model, load_checkpoint, load_model, read_checkpoint
from gnnspec.models.forward_ensemble import ENTRY, attach_members, ensemble_pass, forward_side, member_count
from gnnspec.spectra import spectra_from_dict
from gnnspec.structures import read_structure

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A two-tier model and three further 'training runs' of the same config (other seeds)."""
    return two_tier_runs(tmp_path_factory.mktemp("fwd"), 4)


@pytest.fixture
def ensemble(setup, tmp_path):
    _, data, paths = setup
    return model_with_members(tmp_path, data, paths)


def test_attached_members_live_in_the_checkpoint_and_calibrate_on_validation(setup, ensemble):
    cfg, data, paths = setup
    model_file, record = ensemble
    assert record["members"] == [f"{p.parent.name}/{p.name}" for p in paths[1:]]
    ckpt = read_checkpoint(model_file)
    assert [m["trained"]["train_config"]["seed"] for m in ckpt[ENTRY]["members"]] == [1, 2, 3]
    for tier in ("synthetic", "hi"):  # a factor for every channel with validation spectra in that tier
        assert set(record["spread_k"][tier]) == set(record["n_spectra"][tier])
        assert all(k > 0 for k in record["spread_k"][tier].values())
    model = load_checkpoint(model_file)
    assert member_count(model) == 4
    own = load_checkpoint(model_file, forward_ensemble=False)
    assert member_count(own) == 1
    # member i's forward weights are run i's
    for member, path in zip(model.forward_members, paths[1:]):
        want = forward_side(load_checkpoint(path))
        got = forward_side(member)
        assert all(torch.equal(want[k], got[k]) for k in want)


def test_prediction_is_the_member_mean_and_contributions_still_sum(setup, ensemble, licoo2):
    _, _, paths = setup
    model_file, _ = ensemble
    model = load_checkpoint(model_file)
    singles = [load_checkpoint(p) for p in paths]
    site = 0
    for tier in ("synthetic", "hi"):
        spectra, contrib, spread = model.predict_site_spectra(licoo2, [site], return_contributions=True, tier=tier, return_spread=True)
        each = [m.predict_site_spectra(licoo2, [site], tier=tier)[site] for m in singles]
        for name, (_, y) in spectra[site].items():
            stack = np.stack([e[name][1] for e in each])
            np.testing.assert_allclose(y, stack.mean(0), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(contrib[site][name]["intensity"].sum(0), y, rtol=1e-6, atol=1e-9)
            k = model.forward_ensemble_record["spread_k"][tier].get(name, 0.0)
            np.testing.assert_allclose(spread[site][name], k * stack.std(0, ddof=1), rtol=1e-6, atol=1e-9)
            assert spread[site][name].max() > 0 or k == 0
    # predict_many gives the same answer and spread
    many, spreads = model.predict_many([licoo2], [[site]], return_spread=True)
    spectra, spread = model.predict_site_spectra(licoo2, [site], return_spread=True)
    for name, (_, y) in spectra[site].items():
        np.testing.assert_allclose(many[0][site][name][1], y, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(spreads[0][site][name], spread[site][name], rtol=1e-6, atol=1e-9)
    # without an ensemble: no spread, the same single answer as before
    own = load_checkpoint(paths[0])
    spectra, spread = own.predict_site_spectra(licoo2, [site], return_spread=True)
    assert spread == {}


def test_predict_cli_writes_the_spread(ensemble, tmp_path, licoo2):
    from gnnspec.cli import main

    model_file, _ = ensemble
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    out = tmp_path / "pred.json"
    assert main(["predict", str(cif), "--site", "0", "--model", str(model_file), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["forward_models"] == 4 and "member mean" in doc["meta"]["spread_meaning"]
    spectra, meta = spectra_from_dict(doc, str(out))
    assert set(meta["spread"]) == set(spectra)
    assert all(len(meta["spread"][name]) == len(s.energy) for name, s in spectra.items())
    # --own-forward: the checkpoint's own forward model, no spread
    own_out = tmp_path / "own.json"
    assert main(["predict", str(cif), "--site", "0", "--model", str(model_file), "--own-forward", "--out", str(own_out)]) == 0
    own_doc = json.loads(own_out.read_text())
    assert own_doc["meta"]["forward_models"] == 1 and "spread" not in own_doc["meta"] and "spread_meaning" not in own_doc["meta"]
    own_spectra, _ = spectra_from_dict(own_doc, str(own_out))
    want = load_checkpoint(model_file, forward_ensemble=False).predict_site_spectra(licoo2, [0])[0]
    for name, s in own_spectra.items():
        np.testing.assert_allclose(s.intensity, want[name][1], rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(s.intensity, spectra[name].intensity) for name, s in own_spectra.items())


def test_refuses_members_that_do_not_line_up_or_repeat(setup, tmp_path):
    cfg, data, paths = setup
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(paths[0].read_bytes())
    with pytest.raises(InputError, match="member 0"):
        attach_members(model_file, [paths[0]], str(data))
    with pytest.raises(InputError, match="those of"):
        attach_members(model_file, [paths[1], paths[1]], str(data))
    other = dataclasses.replace(cfg.model, spectra=dataclasses.replace(cfg.model.spectra, r_readout=cfg.model.spectra.r_readout - 0.5))
    torch.manual_seed(9)
    odd = save_run(build_model(other).eval(), cfg, tmp_path / "odd.pt", 9)
    with pytest.raises(InputError, match="r_readout"):
        attach_members(model_file, [odd], str(data))
    assert ENTRY not in read_checkpoint(model_file)  # nothing written on a refusal


def test_ensemble_cli_attaches(setup, tmp_path, capsys):
    from gnnspec.cli import main

    _, data, paths = setup
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(paths[0].read_bytes())
    rc = main(["ensemble", str(model_file), "--forward-from", *map(str, paths[1:3]), "--data", str(data)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "3 forward models" in text and "spread k" in text
    assert member_count(load_model(model_file)) == 3
    # --keep-members: the present members stay and the named runs join them; a repeat is refused
    rc = main(["ensemble", str(model_file), "--forward-from", str(paths[3]), "--keep-members", "--data", str(data)])
    assert rc == 0 and "4 forward models" in capsys.readouterr().out
    sources = [m["source"] for m in read_checkpoint(model_file)[ENTRY]["members"]]
    assert sources == [f"{p.parent.name}/{p.name}" for p in paths[1:4]]
    assert main(["ensemble", str(model_file), "--forward-from", str(paths[1]), "--keep-members", "--data", str(data)]) == 2
    assert "those of" in capsys.readouterr().err
    assert main(["ensemble", str(model_file), "--keep-members"]) == 2


def test_ensemble_pass_without_members_is_the_model(setup, licoo2):
    _, _, paths = setup
    model = load_checkpoint(paths[0])
    s, g = model._graph(read_structure(licoo2), environments=False)
    absorbers = torch.arange(len(s))
    out = ensemble_pass(model, g, absorbers, 1)
    ref = model.forward_structure(g, absorbers=absorbers, embed=False, tier=1)
    assert torch.equal(out["spectra"], ref["spectra"]) and "spectra_spread" not in out


def test_fidelity_bench_scores_the_member_mean_and_its_spread(setup, ensemble):
    from gnnspec.bench.fidelity import fidelity_table
    from gnnspec.bench.report import tier_forward_section

    _, data, paths = setup
    model_file, record = ensemble
    with_members = fidelity_table(load_checkpoint(model_file), str(data))
    own = fidelity_table(load_checkpoint(model_file, forward_ensemble=False), str(data))
    calibrated = {name for name, k in record["spread_k"]["hi"].items() if k > 0}
    assert calibrated & set(with_members)
    for name, r in with_members.items():  # a coverage where validation gave the channel a spread factor
        assert ("spread_coverage" in r["model_tier"]) == (name in calibrated)
        assert 0.0 <= r["model_tier"].get("spread_coverage", 0.0) <= 1.0
        assert "spread_coverage" not in own[name]["model_tier"]
        assert r["model_tier"]["mse"] != own[name]["model_tier"]["mse"]  # the mean of four models, not the first
    assert "within spread" in "\n".join(tier_forward_section(with_members, "hi", "synthetic"))
    assert "within spread" not in "\n".join(tier_forward_section(own, "hi", "synthetic"))


def test_explain_reports_member_mean_contributions_and_the_spread(ensemble, licoo2, tmp_path):
    from gnnspec.analysis.explain import explain_site, write_explanation

    model_file, record = ensemble
    model = load_checkpoint(model_file)
    channel = next(name for name, k in record["spread_k"]["hi"].items() if k > 0 and name.startswith("Li"))
    result = explain_site(model, licoo2, 0, channel, warn=False)
    assert result["forward_models"] == 4 and len(result["spread"]) == len(result["energy"])
    np.testing.assert_allclose(result["contributions"].sum(0), result["spectrum"], rtol=1e-6, atol=1e-9)
    doc = json.loads(next(f for f in write_explanation(result, tmp_path / "ex") if f.suffix == ".json").read_text())
    assert doc["forward_models"] == 4 and len(doc["spread"]) == len(doc["energy"])
    # the channel's held-out skill travels with the explanation (None where none was scored)
    skill = record["channel_skill"]["forward_ensemble"]["hi"]
    assert doc["channel_skill"] == skill.get(channel)
    scored = sorted(skill)[0]
    site = next(i for i, x in enumerate(licoo2) if x.specie.symbol == scored.split("-")[0])
    assert explain_site(model, licoo2, site, scored, warn=False)["channel_skill"] == skill[scored]


def test_edges_are_the_half_steps_of_the_mean_and_of_each_forward_model(setup, ensemble, licoo2):
    from gnnspec.edge_position import half_step_energy
    from gnnspec.models.predicted_edges import KEY

    _, _, paths = setup
    model_file, record = ensemble
    model = load_checkpoint(model_file)
    singles = [load_checkpoint(p) for p in paths]
    calibration = read_checkpoint(model_file)[ENTRY][KEY]  # written by attach_members
    assert calibration["split"] == "val" and calibration["coverage"] == 0.68
    co = next(i for i, site in enumerate(licoo2) if site.specie.symbol == "Co")
    grid, edge = CHANNELS["Co-K-xas"].grid, CHANNELS["Co-K-xas"].edge_energy
    for tier in ("synthetic", "hi"):
        got = model.predict_edges(licoo2, co, tier=tier)[co]["Co-K-xas"]
        mean = model.predict_site_spectra(licoo2, [co], tier=tier)[co]["Co-K-xas"][1]
        assert got["edge_eV"] == pytest.approx(half_step_energy(grid, mean, edge), abs=1e-6)
        each = [half_step_energy(grid, m.predict_site_spectra(licoo2, [co], tier=tier)[co]["Co-K-xas"][1], edge) for m in singles]
        assert [e is None for e in got["forward_models_edge_eV"]] == list(np.isnan(each))
        finite = [e for e in each if np.isfinite(e)]
        np.testing.assert_allclose([e for e in got["forward_models_edge_eV"] if e is not None], finite, atol=1e-6)
        assert len(finite) > 1 and got["edge_std_eV"] == pytest.approx(np.std(finite, ddof=1), abs=1e-6)
        k = calibration["k"].get(tier, {}).get("Co-K-xas")
        assert ("edge_spread_eV" in got) == (k is not None)
        if k is not None:
            assert got["edge_spread_eV"] == pytest.approx(k * got["edge_std_eV"])
        assert "edge_measured_scale_eV" not in got  # no offset is fitted for these synthetic tiers
    # a calibration's k scales the spread (the synthetic spectra have no rising step to fit it on)
    model.forward_ensemble_record = {**model.forward_ensemble_record, KEY: {"k": {"hi": {"Co-K-xas": 2.5}}}}
    got = model.predict_edges(licoo2, co, tier="hi")[co]["Co-K-xas"]
    assert got["edge_spread_eV"] == pytest.approx(2.5 * got["edge_std_eV"])
    assert got["edge_known"] == (got["edge_spread_eV"] <= 1.0)
    assert "edge_spread_eV" not in model.predict_edges(licoo2, co, tier="synthetic")[co]["Co-K-xas"]
    # the model's own forward side alone: the edge, no spread; a site without a step edge: none
    own = load_checkpoint(model_file, forward_ensemble=False).predict_edges(licoo2, [co, 0])
    assert set(own[co]["Co-K-xas"]) == {"edge_eV"} and own[0] == {}


def test_forward_model_spectra_average_to_the_prediction(setup, ensemble, licoo2):
    model_file, _ = ensemble
    model = load_checkpoint(model_file)
    s, g = model._graph(read_structure(licoo2), environments=False)
    out = ensemble_pass(model, g, torch.arange(len(s)), 1)
    assert out["forward_model_spectra"].shape[0] == 4
    torch.testing.assert_close(out["forward_model_spectra"].mean(0), out["spectra"])


def test_predict_cli_writes_edges_and_ensemble_cli_calibrates_them(ensemble, licoo2, tmp_path, capsys):
    from gnnspec.cli import main
    from gnnspec.models.factory import write_checkpoint_entry
    from gnnspec.models.predicted_edges import KEY

    model_file, _ = ensemble
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(cif), "--model", str(model_file), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_element = {r["meta"]["element"]: r["meta"] for r in records}
    assert "Co-K-xas" in by_element["Co"]["edges"] and "edges" not in by_element["O"]
    assert "half-step" in records[0]["meta"]["edge_meaning"]
    before = read_checkpoint(model_file)[ENTRY]
    copy = tmp_path / "copy.pt"
    copy.write_bytes(model_file.read_bytes())
    assert main(["ensemble", str(copy), "--edge-spread"]) == 0
    assert "edge spread calibrated" in capsys.readouterr().out
    after = read_checkpoint(copy)[ENTRY]
    assert after[KEY]["k"] == before[KEY]["k"] and after["spread_k"] == before["spread_k"]
    # an edge the forward models disagree on is flagged in the record and on stderr
    capsys.readouterr()
    entry = read_checkpoint(copy)[ENTRY]
    write_checkpoint_entry(copy, ENTRY, {**entry, KEY: {**entry[KEY], "k": {"hi": {"Co-K-xas": 1e4}}}})
    flagged = tmp_path / "flagged.jsonl"
    assert main(["predict", str(cif), "--model", str(copy), "--out", str(flagged)]) == 0
    err = capsys.readouterr().err
    co = [json.loads(line)["meta"] for line in flagged.read_text().splitlines() if '"element": "Co"' in line]
    assert co and all(m["edges"]["Co-K-xas"]["edge_known"] is False for m in co)
    assert err.count("Co-K-xas edge at") == len(co) and "valence it would tell is unknown" in err
    assert main(["ensemble", str(copy), "--edge-spread", "--linear-heads"]) == 2
    lone = tmp_path / "lone.pt"
    lone.write_bytes(load_path_of_own(model_file, tmp_path).read_bytes())
    assert main(["ensemble", str(lone), "--edge-spread"]) == 2
    assert "no forward members" in capsys.readouterr().err


def load_path_of_own(model_file, tmp_path):
    """A copy of ``model_file`` without its forward ensemble."""
    from gnnspec.models.factory import write_checkpoint_entries

    path = tmp_path / "own.pt"
    path.write_bytes(model_file.read_bytes())
    write_checkpoint_entries(path, {}, remove=(ENTRY,))
    return path


def test_edge_spread_factor_covers_68_percent_of_the_sites():
    from gnnspec.models.predicted_edges import fit_edge_spread

    rng = np.random.default_rng(0)
    std = rng.uniform(0.1, 0.5, 400)
    err = 2.0 * std * rng.standard_normal(400)  # errors twice as wide as the models' spread
    rows = {"scf": {"Mn-K-xas": [*zip(err, std), (float("nan"), 0.2), (0.3, 0.0)], "Co-K-xas": [(float("nan"), 0.1)]}}
    fit = fit_edge_spread(rows)
    k = fit["k"]["scf"]["Mn-K-xas"]
    assert fit["n_sites"]["scf"]["Mn-K-xas"] == 400 and "Co-K-xas" not in fit["k"]["scf"]
    assert np.mean(np.abs(err) <= k * std) == pytest.approx(0.68, abs=0.01)
    assert k == pytest.approx(2.0, rel=0.15)  # a normal's 68th percentile of |z| is about 1
    assert fit["coverage_unscaled"]["scf"]["Mn-K-xas"] == pytest.approx(np.mean(np.abs(err) <= std))


def test_member_edge_std_skips_models_without_an_edge():
    from gnnspec.models.predicted_edges import member_edge_std

    nan = float("nan")
    assert member_edge_std([6552.0, nan, 6553.0, 6554.0]) == pytest.approx(1.0)
    assert np.isnan(member_edge_std([6552.0, nan])) and np.isnan(member_edge_std([]))


def test_channel_skill_is_the_test_split_r2_and_predict_reports_it(setup, ensemble, licoo2, tmp_path, capsys):
    from gnnspec.bench.fidelity import fidelity_table
    from gnnspec.cli import main
    from gnnspec.models.channel_skill import KEY
    from gnnspec.models.factory import write_checkpoint_entry

    _, data, _ = setup
    model_file, record = ensemble
    skill = record[KEY]
    assert skill["split"] == "test" and set(skill) >= {"forward_ensemble", "own_forward", "data_sha256"}
    # the same numbers as the fidelity benchmark's, an independent path over the test sites
    for mode, model in (("forward_ensemble", load_checkpoint(model_file)), ("own_forward", load_checkpoint(model_file, forward_ensemble=False))):
        table = fidelity_table(model, str(data), "test", "hi")
        assert skill[mode]["hi"] and set(skill[mode]["hi"]) == {c for c, r in table.items() if r["model_tier"]["n"] >= 3}
        for name, entry in skill[mode]["hi"].items():
            assert entry["n_sites"] == table[name]["model_tier"]["n"]
            assert entry["r2"] == pytest.approx(table[name]["model_tier"]["r2"], abs=1e-4)
            assert entry["r2_low"] <= entry["r2"] <= entry["r2_high"]
        assert model.channel_skill("hi") == skill[mode]["hi"]
    assert skill["forward_ensemble"]["hi"] != skill["own_forward"]["hi"]
    # --skill alone rescores the same numbers and keeps the rest of the record
    copy = tmp_path / "copy.pt"
    copy.write_bytes(model_file.read_bytes())
    before = read_checkpoint(copy)[ENTRY]
    assert main(["ensemble", str(copy), "--skill"]) == 0
    assert "channel skill" in capsys.readouterr().out
    after = read_checkpoint(copy)[ENTRY]
    assert after[KEY] == before[KEY] and after["spread_k"] == before["spread_k"]
    # predict writes each record's channels' skill and names a weak channel once on stderr
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    name = sorted(skill["forward_ensemble"]["hi"])[0]
    element = name.split("-")[0]
    weak = {**skill["forward_ensemble"]["hi"][name], "r2": 0.1}
    good = {c: {**e, "r2": 0.9, "r2_low": 0.8, "r2_high": 0.95} for c, e in skill["forward_ensemble"]["hi"].items()}
    write_checkpoint_entry(copy, ENTRY, {**after, KEY: {**skill, "forward_ensemble": {"hi": {**good, name: weak}}}})
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(cif), "--model", str(copy), "--tier", "hi", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    hit = [r for r in records if r["meta"]["element"] == element]
    assert len(hit) > 1 and all(r["meta"]["channel_skill"][name]["r2"] == 0.1 for r in hit)
    assert set(hit[0]["meta"]["channel_skill"]) == set(hit[0]["channels"]) & set(skill["forward_ensemble"]["hi"])
    assert err.count("qualitative guide") == 1 and f"{name} (hi tier): R^2 0.10" in err
    assert "held-out test sites" in records[0]["meta"]["skill_meaning"]
