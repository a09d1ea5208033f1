"""The repeatability benchmark: FEFF against itself at a geometry moved by 0.01 A."""

import json

import numpy as np
import pytest
from model_fixtures import write_synthetic_lmdb

from gnnspec.bench.repeatability import (
    add_sites,
    main,
    plan_sites,
    repeatability_table,
    rerun_site,
    run_plan,
    tier_channels,
    tier_test_spectra,
)
from gnnspec.channels import CHANNELS
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError

O_CHANNELS = ["O-K-xas", "O-K-eels"]


@pytest.fixture
def data(tmp_path):
    """Three supercells (one train, two test) whose recipe lists an ``scf`` tier of O K on every third site."""
    path = write_synthetic_lmdb(tmp_path / "synthetic", splits=("train", "test", "test"), extra_tier="scf")
    store = SpectraStore(path, readonly=False)
    meta = store.metadata()
    meta["build_config"].update(channels=O_CHANNELS, extra_tiers=[{"preset": "scf", "channels": ["Ni-K-xas", *O_CHANNELS]}])
    store.put_many({schema.METADATA_KEY: meta})
    return str(path)


def test_sites_spread_over_the_test_supercells_and_a_short_split_is_named(data):
    store = SpectraStore(data)
    assert tier_channels(store, "scf", "O") == O_CHANNELS
    with pytest.raises(InputError, match="computes no tier 'scf6'"):
        tier_channels(store, "scf6", "O")
    held = tier_test_spectra(store, "scf", O_CHANNELS)
    assert {sid for sid, _ in held} == {1, 2} and all(site % 3 == 0 for _, site in held)
    first = plan_sites(store, "scf", "O", 3)
    lowest = {sid: min(site for s, site in held if s == sid) for sid in (1, 2)}
    assert first[:2] == [[1, lowest[1]], [2, lowest[2]]] and first[2][0] == 1 and first[2][1] > lowest[1]
    with pytest.raises(InputError, match=f"holds {len(held)} O sites with the scf tier, not 99"):
        plan_sites(store, "scf", "O", 99)
    assert plan_sites(store, "scf", "O", 2, skip=[first[0]]) == first[1:3]  # more sites after those recorded
    with pytest.raises(InputError, match=f"holds {len(held) - 1} more O sites"):
        plan_sites(store, "scf", "O", len(held), skip=[first[0]])
    state = {"plan": {"O": first[:1]}}
    add_sites(store, "scf", state, [tuple(first[2]), tuple(first[2])])  # a named site joins its element's plan once
    assert state == {"plan": {"O": [first[0], first[2]]}, "added": [first[2]]}
    with pytest.raises(InputError, match="supercell 0 site 0 is not a site of the test split"):
        add_sites(store, "scf", state, [(0, 0)])
    without = next(site for site in range(200) if site % 3 and (1, site) not in held)  # no scf spectra there
    with pytest.raises(InputError, match=f"supercell 1 site {without} .* holds no scf spectra"):
        add_sites(store, "scf", state, [(1, without)])


def test_the_table_scores_moved_spectra_against_the_test_variance_and_controls_against_one(data, tmp_path):
    store = SpectraStore(data)
    held = tier_test_spectra(store, "scf", O_CHANNELS)
    (sid_a, site_a), (sid_b, site_b), (sid_c, site_c) = plan_sites(store, "scf", "O", 3)
    stored_a, stored_b, stored_c = held[(sid_a, site_a)], held[(sid_b, site_b)], held[(sid_c, site_c)]
    bump = 0.05 * np.sin(np.linspace(0.0, 6.0, CHANNELS["O-K-xas"].n_energy))
    results = [
        {"element": "O", "sid": sid_a, "site": site_a, "displacement": 0.0, "draw": 0, "seconds": 1.0, "spectra": {c: stored_a[c].tolist() for c in O_CHANNELS}},
        {"element": "O", "sid": sid_a, "site": site_a, "displacement": 0.01, "draw": 1, "seconds": 1.0, "spectra": {"O-K-xas": (stored_a["O-K-xas"] + bump).tolist()}},
        {"element": "O", "sid": sid_b, "site": site_b, "displacement": 0.01, "draw": 1, "seconds": 1.0, "spectra": {"O-K-xas": stored_b["O-K-xas"].tolist()}},
        {"element": "O", "sid": sid_c, "site": site_c, "displacement": 0.01, "draw": 1, "seconds": 1.0, "spectra": {"O-K-xas": (stored_c["O-K-xas"] + 2 * bump).tolist()}},
    ]
    named = [[sid_c, site_c]]  # named with --add: reported apart, not in the estimate
    state = {"tier": "scf", "plan": {"O": [[sid_a, site_a], [sid_b, site_b], *named]}, "added": named, "results": results}
    table = repeatability_table(data, state)
    everything = np.array([s["O-K-xas"] for s in held.values()])
    per_site = ((everything - everything.mean(0)) ** 2).sum(1).mean()
    expected = 1.0 - (bump**2).sum() / per_site / 2  # two moved sites, one unchanged
    row = table["O-K-xas"]
    assert row["n"] == 2 and row["n_test_sites"] == len(held) and row["r2_control"] == pytest.approx(1.0)
    assert row["r2_displaced"] == pytest.approx(expected) and row["ceiling_r2"] == pytest.approx(1.0 - (1.0 - expected) / 2)
    assert row["largest_change"] == pytest.approx((bump**2).sum() / per_site)
    assert row["named_sites"] == {f"{sid_c}/{site_c}": pytest.approx(4 * (bump**2).sum() / per_site)}
    assert "O-K-eels" not in table  # no moved spectrum of it: nothing to score
    assert "model_r2_stored" not in row
    # with a model of the tier: its R^2 against the stored spectra and against the mean of stored and moved
    import torch
    from model_fixtures import tiny_model_config
    from pymatgen.core import Structure

    from gnnspec.models.factory import build_model

    torch.manual_seed(0)
    model = build_model(tiny_model_config(tiers=["synthetic", "scf"])).eval()
    scored = repeatability_table(data, state, model)["O-K-xas"]
    moved = {(sid_a, site_a): stored_a["O-K-xas"] + bump, (sid_b, site_b): stored_b["O-K-xas"]}  # the rule's moved sites
    err_stored, err_mean = [], []
    for (sid, site), rerun in moved.items():
        p = model.predict_site_spectra(Structure.from_dict(store.structure(sid)["structure"]), [site], tier="scf")[site]["O-K-xas"][1]
        y = held[(sid, site)]["O-K-xas"]
        err_stored.append(((p - y) ** 2).sum())
        err_mean.append(((p - 0.5 * (y + rerun)) ** 2).sum())
    assert scored["model_r2_stored"] == pytest.approx(1.0 - np.mean(err_stored) / per_site)
    assert scored["model_r2_mean"] == pytest.approx(1.0 - np.mean(err_mean) / per_site)
    out = tmp_path / "rep.json"
    out.write_text(json.dumps(state))
    assert run_plan(data, out, "scf", ["O"], 2, 1, 0.01, 1, 1) == state  # every rerun present: no FEFF run, plan kept
    assert main([data, "--out", str(out), "--markdown"]) == 0


def test_a_missing_json_or_tier_is_a_one_line_error(data, tmp_path, capsys):
    assert main([data, "--out", str(tmp_path / "none.json"), "--markdown"]) == 2
    assert "none.json: no such file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"tier": "scf6", "plan": {}, "results": []}))
    assert main([data, "--out", str(tmp_path / "other.json"), "--elements", "O"]) == 2
    assert "holds the scf6 tier, not scf" in capsys.readouterr().err
    assert main([data, "--out", str(tmp_path / "new.json"), "--elements", "O", "--sites", "1", "--add", "1-3"]) == 2
    assert "--add 1-3: expected SID:SITE" in capsys.readouterr().err


def test_a_real_feff_rerun_gives_normalised_channels_at_the_moved_geometry(licoo2):
    """One site's fast-tier runs (K, L3, L2 of Co) at a geometry moved by 0.01 A."""
    spectra, seconds = rerun_site(licoo2.as_dict(), 3, ["Co-K-xas", "Co-L23-xas"], "fast", 0.01, 1)
    assert set(spectra) == {"Co-K-xas", "Co-L23-xas"} and seconds > 0
    for name, y in spectra.items():
        assert len(y) == CHANNELS[name].n_energy and np.mean(y) == pytest.approx(1.0) and np.all(np.isfinite(y))
