"""The user-facing model API: spectra with contributions from structures (periodic or cluster),
environment and spectrum embeddings, and inference, as a user calls them."""

import numpy as np
import pytest
import torch
from model_fixtures import tiny_model_config
from pymatgen.core import Molecule

from gnnspec.channels import CHANNELS, channels_for_element
from gnnspec.errors import InputError
from gnnspec.models import build_model
from gnnspec.structures.nmc import NMCParams, generate_nmc

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_model_config()).eval()


@pytest.fixture(scope="module")
def structure():
    return generate_nmc(NMCParams(seed=1, supercell=(2, 1, 1), thermal_sigma=0.02)).structure


def test_predict_site_spectra_with_contributions(model, structure):
    sites = [0, 5, len(structure) - 1]
    spectra, contrib = model.predict_site_spectra(structure, sites, return_contributions=True)
    assert sorted(spectra) == sorted(sites)
    for site in sites:
        el = structure[site].specie.symbol
        assert set(spectra[site]) == {c.name for c in channels_for_element(el) if c.name in model.cfg.channels}
        for name, (energy, intensity) in spectra[site].items():
            assert np.array_equal(energy, CHANNELS[name].grid)
            assert intensity.shape == energy.shape and np.all(intensity > 0)
            c = contrib[site][name]
            assert c["atom_index"][0] == site and c["distance"][0] == 0
            assert c["intensity"].shape == (len(c["atom_index"]), len(energy))
            np.testing.assert_allclose(c["intensity"].sum(0), intensity, rtol=1e-5, atol=1e-6)


def test_site_prediction_does_not_depend_on_other_requested_sites(model, structure):
    alone = model.predict_site_spectra(structure, 3)[3]
    together = model.predict_site_spectra(structure, [1, 3, 7])[3]
    for name in alone:
        np.testing.assert_allclose(alone[name][1], together[name][1], rtol=1e-5, atol=1e-6)


def test_non_periodic_cluster_goes_through_the_same_model(model):
    mol = Molecule(["Ni", "O", "O", "Li"], [[0, 0, 0], [1.97, 0, 0], [0, 1.97, 0], [0, 0, 2.9]])
    spectra = model.predict_site_spectra(mol, [0, 1])
    assert set(spectra[0]) == {c.name for c in channels_for_element("Ni") if c.name in model.cfg.channels}
    rotated = Molecule(mol.species, mol.cart_coords @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]).T)
    again = model.predict_site_spectra(rotated, [0])
    for name, (_, y) in spectra[0].items():
        np.testing.assert_allclose(again[0][name][1], y, rtol=1e-5, atol=1e-6)


def test_embeddings_and_inference(model, structure):
    z = model.embed_environments(structure)
    assert z.shape == (len(structure), model.cfg.embedding.dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    spectra = {name: y for name, (_, y) in model.predict_site_spectra(structure, [0])[0].items()}
    e = model.embed_spectra(spectra)
    assert e.shape == (model.cfg.embedding.dim,) and abs(np.linalg.norm(e) - 1) < 1e-6
    one = model.infer({"O-K-eels": np.linspace(1, 2, 121)})
    assert set(one) == {"element_content", "defects", "channels_used", "quantification_used", "grid_coverage", "coverage_used"}
    assert one["grid_coverage"] == {"O-K-eels": 1.0} and not one["coverage_used"]  # on-grid values cover their grid
    assert list(one["element_content"]) == ["Li", "Ni", "Mn", "Co", "O"]
    assert abs(sum(one["element_content"].values()) - 1) < 1e-9
    assert set(one["defects"]) == {"o_vacancy", "antisite"} and all(0 <= p <= 1 for p in one["defects"].values())
    assert one["channels_used"] == ["O-K-eels"]


def test_bad_inputs_are_input_errors(model, structure):
    with pytest.raises(InputError, match="out of range"):
        model.predict_site_spectra(structure, [len(structure)])
    with pytest.raises(InputError, match="unknown channel"):
        model.infer({"Fe-K-xas": np.ones(121)})
    with pytest.raises(InputError, match="121"):
        model.infer({"Ni-K-xas": np.ones(50)})
    with pytest.raises(InputError, match="at least one"):
        model.infer({})
    with pytest.raises(InputError, match="non-positive"):
        model.embed_spectra({"Ni-K-xas": -np.ones(121)})
    fe = Molecule(["Fe", "O"], [[0, 0, 0], [2, 0, 0]])
    with pytest.raises(InputError, match="no channel"):
        model.predict_site_spectra(fe, [0])
