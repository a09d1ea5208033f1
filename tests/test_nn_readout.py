"""Readout: spectra are exact sums of per-atom contributions; only channels of the absorber's
element are predicted; environment spectra follow the data's definition; radial parts are smooth."""

import pytest
import torch
from model_fixtures import random_cluster, synthetic_site_spectra, tiny_model_config
from torch_geometric.utils import scatter

from gnnspec.channels import CHANNELS
from gnnspec.models import build_model
from gnnspec.nn.radial import PolynomialCutoff, RadialEmbedding
from gnnspec.nn.readout import readout_pairs

torch.set_num_threads(1)


def _model(**kw):
    torch.manual_seed(0)
    return build_model(tiny_model_config(**kw)).double().eval()


def test_contributions_sum_to_spectrum():
    model = _model()
    data = random_cluster(6, seed=1)
    out = model.forward_structure(data, embed=False)
    a, c = out["contribution_absorber"], out["contribution_channel"]
    n_abs, n_ch, n_e = out["spectra"].shape
    total = scatter(out["contributions"], a * n_ch + c, dim=0, dim_size=n_abs * n_ch, reduce="sum").view(n_abs, n_ch, n_e)
    assert torch.allclose(total, out["spectra"], atol=1e-12, rtol=0)
    # gathered per absorber and channel: one row per contributing atom, absorber first
    first = (a == 0) & (c == out["spectra_mask"][0].nonzero()[0, 0])
    assert out["contribution_atom"][first][0] == out["absorber_index"][0]
    assert out["contribution_distance"][first][0] == 0
    assert torch.allclose(out["contributions"][first].sum(0), out["spectra"][0, c[first][0]], atol=1e-12)
    assert (out["contributions"] >= 0).all()  # softplus contributions


def test_identity_contributions_also_sum():
    model = _model(spectra={**tiny_model_config().spectra.__dict__, "positive": False})
    out = model.forward_structure(random_cluster(4, seed=2), embed=False)
    n_abs, n_ch, n_e = out["spectra"].shape
    idx = out["contribution_absorber"] * n_ch + out["contribution_channel"]
    total = scatter(out["contributions"], idx, dim=0, dim_size=n_abs * n_ch, reduce="sum").view(n_abs, n_ch, n_e)
    assert torch.allclose(total, out["spectra"], atol=1e-12, rtol=0)
    assert (out["contributions"] < 0).any()


def test_only_channels_of_the_absorber_element():
    model = _model()
    data = random_cluster(6, seed=4)  # Ni O Li Mn Co O
    out = model.forward_structure(data, embed=False)
    symbols = {28: "Ni", 8: "O", 3: "Li", 25: "Mn", 27: "Co"}
    for row, node in enumerate(out["absorber_index"].tolist()):
        el = symbols[int(data.z[node])]
        expected = [CHANNELS[n].element == el for n in model.cfg.channels]
        assert out["spectra_mask"][row].tolist() == expected
        assert (out["spectra"][row][~out["spectra_mask"][row]] == 0).all()
    assert set(out["contribution_channel"].tolist()) <= set(out["spectra_mask"].nonzero()[:, 1].tolist())


def test_atoms_without_channels_are_not_absorbers_but_contribute():
    model = _model()
    data = random_cluster(4, seed=5)
    data.z[1] = 26  # Fe: no channel
    out = model.forward_structure(data, embed=False)
    assert 1 not in out["absorber_index"].tolist()
    assert 1 in out["contribution_atom"].tolist()


def test_readout_pairs_respect_radius():
    edge_index = torch.tensor([[1, 2, 0, 2], [0, 0, 1, 1]])
    length = torch.tensor([1.0, 3.0, 1.0, 2.0])
    pa, atom, dist = readout_pairs(torch.tensor([0]), edge_index, length, 2.5, 3)
    assert pa.tolist() == [0, 0] and atom.tolist() == [0, 1] and dist.tolist() == [0.0, 1.0]


def test_environment_spectra_match_data_definition():
    from gnnspec.data.dataset import structure_graph
    from gnnspec.structures.nmc import NMCParams, generate_nmc

    s = generate_nmc(NMCParams(seed=3, supercell=(1, 1, 1), li_content=0.5, n_o_vacancies=1)).structure
    spectra = synthetic_site_spectra(s, sites=[0, 1, 3, 5, 7, 9])  # some sites labelled
    g = structure_graph(s, 4.0, site_spectra=spectra)
    model = _model()
    absorbers = torch.arange(g.num_nodes)
    out = {"spectra": g.site_y.double(), "spectra_mask": g.site_y_mask, "absorber_index": absorbers}
    env, mask = model.environment_spectra(out, g, use_mask=g.site_y_mask)
    assert mask.equal(g.env_y_mask)
    assert torch.allclose(env.float(), g.env_y, atol=1e-5)


def test_radial_embedding_vanishes_smoothly_at_cutoff():
    emb = RadialEmbedding(4.0, 6).double()
    r = torch.tensor([3.999, 4.0, 4.5], dtype=torch.float64, requires_grad=True)
    e = emb(r)
    assert e[1:].abs().max() == 0 and e[0].abs().max() < 1e-6
    (g,) = torch.autograd.grad(e.sum(), r)
    assert g.abs().max() < 1e-4
    cut = PolynomialCutoff(4.0)
    assert float(cut(torch.tensor(0.0))) == 1.0
    assert torch.isfinite(emb(torch.tensor([0.0], dtype=torch.float64))).all()


def test_a_multi_fidelity_readout_starts_at_the_base_tier_and_keeps_its_sums():
    """Tier rows share the head; the fidelity embedding starts at zero, and contributions sum in every tier."""
    model = _model(tiers=["fast", "scf"])
    data = random_cluster(6, seed=4)
    fast = model.forward_structure(data, embed=False, tier=0)
    scf = model.forward_structure(data, embed=False, tier=1)
    assert torch.allclose(fast["spectra"], scf["spectra"])  # untrained: the scf correction is zero
    with torch.no_grad():
        model.spectra_head.readout.tier_embedding.weight[1].normal_()
    scf = model.forward_structure(data, embed=False, tier=1)
    assert not torch.allclose(fast["spectra"], scf["spectra"])
    for out in (fast, scf):
        flat = torch.zeros_like(out["spectra"])
        flat.index_put_((out["contribution_absorber"], out["contribution_channel"]), out["contributions"], accumulate=True)
        assert torch.allclose(flat, out["spectra"], atol=1e-10)
    again = model.tier_spectra(fast, data, fast["absorber_index"], 1)  # reuse of one backbone pass
    assert torch.allclose(again["spectra"], scf["spectra"])
    with pytest.raises(ValueError, match="out of range"):
        model.forward_structure(data, embed=False, tier=2)
    assert _model().spectra_head.readout.n_tiers == 1 and not hasattr(_model().spectra_head.readout, "tier_embedding")


def test_per_channel_fidelity_embeddings_correct_one_channel_alone():
    """spectra.tier_per_channel: the scf correction of one channel leaves the others at the base tier."""
    from model_fixtures import TINY_MODEL

    model = _model(tiers=["fast", "scf"], spectra={**TINY_MODEL["spectra"], "tier_per_channel": True})
    readout = model.spectra_head.readout
    n_ch = len(model.cfg.channels)
    assert readout.tier_embedding.weight.shape[0] == 2 * n_ch
    data = random_cluster(6, seed=4)
    fast = model.forward_structure(data, embed=False, tier=0)
    assert torch.allclose(fast["spectra"], model.tier_spectra(fast, data, fast["absorber_index"], 1)["spectra"])
    with torch.no_grad():
        readout.tier_embedding.weight[n_ch + 0].normal_()  # scf tier, first channel only
    scf = model.tier_spectra(fast, data, fast["absorber_index"], 1)
    changed = ~torch.isclose(scf["spectra"], fast["spectra"]).all(dim=-1).all(dim=0)  # [C]
    has = fast["spectra_mask"].any(dim=0)
    assert changed[0] == has[0] and not changed[1:].any()
    flat = torch.zeros_like(scf["spectra"])
    flat.index_put_((scf["contribution_absorber"], scf["contribution_channel"]), scf["contributions"], accumulate=True)
    assert torch.allclose(flat, scf["spectra"], atol=1e-10)
