"""E(3) tests in float64 on 3-6 atom clusters and a small periodic cell: predicted spectra and
embeddings are invariant under rotation, reflection, translation and atom permutation; the
backbone's equivariant features transform with the Wigner matrices of their irreps."""

import pytest
import torch
from e3nn import o3
from model_fixtures import random_cluster, tiny_model_config

from gnnspec.models import build_model

torch.set_num_threads(1)
TOL = 1e-9


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_model_config()).double().eval()


def _transformed(data, matrix=None, translation=None, perm=None):
    d = data.clone()
    if matrix is not None:
        d.pos = d.pos @ matrix.T
        d.edge_shift = d.edge_shift @ matrix.T
    if translation is not None:
        d.pos = d.pos + translation
    if perm is not None:
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel())
        d.pos, d.z = d.pos[perm], d.z[perm]
        d.edge_index = inv[d.edge_index]
    return d


def _improper():
    return -o3.rand_matrix(dtype=torch.float64)


@pytest.mark.parametrize("n_atoms", [3, 4, 6])
@pytest.mark.parametrize("kind", ["rotation", "reflection", "translation"])
def test_spectra_invariant_under_isometries(model, n_atoms, kind):
    data = random_cluster(n_atoms, seed=n_atoms)
    ref = model.forward_structure(data, embed=False)
    if kind == "rotation":
        moved = _transformed(data, matrix=o3.rand_matrix(dtype=torch.float64))
    elif kind == "reflection":
        moved = _transformed(data, matrix=_improper())
    else:
        moved = _transformed(data, translation=torch.tensor([1.3, -2.1, 0.7], dtype=torch.float64))
    out = model.forward_structure(moved, embed=False)
    assert ref["spectra_mask"].equal(out["spectra_mask"])
    assert torch.allclose(ref["spectra"], out["spectra"], atol=TOL, rtol=0)
    assert torch.allclose(ref["node_scalars"], out["node_scalars"], atol=TOL, rtol=0)
    assert torch.allclose(ref["contributions"], out["contributions"], atol=TOL, rtol=0)


@pytest.mark.parametrize("n_atoms", [4, 5])
def test_spectra_permutation_equivariant(model, n_atoms):
    data = random_cluster(n_atoms, seed=10 + n_atoms)
    perm = torch.randperm(n_atoms, generator=torch.Generator().manual_seed(1))
    ref = model.forward_structure(data, embed=False)
    out = model.forward_structure(_transformed(data, perm=perm), embed=False)
    # node i of the permuted graph is node perm[i] of the original
    assert torch.allclose(out["spectra"], ref["spectra"][perm], atol=TOL, rtol=0)


@pytest.fixture
def float64_default():
    # e3nn builds Wigner matrices in the default dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("improper", [False, True])
def test_backbone_features_equivariant(model, improper, float64_default):
    data = random_cluster(5, seed=3)
    rot = _improper() if improper else o3.rand_matrix(dtype=torch.float64)
    bb = model.backbone
    ref = bb(data.pos, data.z, data.edge_index, data.edge_shift)["node_features"]
    moved = _transformed(data, matrix=rot)
    out = bb(moved.pos, moved.z, moved.edge_index, moved.edge_shift)["node_features"]
    wigner = bb.irreps_out.D_from_matrix(rot)
    assert ref.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(out, ref @ wigner.T, atol=TOL, rtol=0)


def test_periodic_cell_and_embeddings_invariant(model):
    from gnnspec.data.dataset import structure_graph
    from gnnspec.structures.nmc import NMCParams, generate_nmc

    sample = generate_nmc(NMCParams(seed=2, supercell=(1, 1, 1), thermal_sigma=0.05))
    g = structure_graph(sample.structure, 4.0)
    g.pos, g.edge_shift = g.pos.double(), g.edge_shift.double()
    assert g.edge_shift.abs().max() > 0  # really periodic
    ref = model.forward_structure(g)
    out = model.forward_structure(
        _transformed(g, matrix=_improper(), translation=torch.tensor([0.3, 0.2, -4.0], dtype=torch.float64))
    )
    assert torch.allclose(ref["spectra"], out["spectra"], atol=TOL, rtol=0)
    assert torch.allclose(ref["structure_embedding"], out["structure_embedding"], atol=TOL, rtol=0)
