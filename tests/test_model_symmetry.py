"""NequIP-style model checks on real NMC supercells, from the pymatgen structure to the outputs.

``test_nn_equivariance`` moves the graph tensors of small clusters in float64; here each moved
structure goes through the graph builder again (``structure_graph``: periodic edges, shifts,
environments), in float32 and float64, and a batch of two different supercells must give what
each gives alone. Outputs compared: per-site spectra (and their mask), node scalars and
environment embeddings.
"""

import numpy as np
import pytest
import torch
from e3nn import o3
from model_fixtures import tiny_model_config
from pymatgen.core import Structure
from pymatgen.core.operations import SymmOp
from torch_geometric.data import Batch

from gnnspec.data.dataset import structure_graph
from gnnspec.models import build_model
from gnnspec.structures.nmc import NMCParams, generate_nmc

torch.set_num_threads(1)
CUTOFF = tiny_model_config().backbone.cutoff
# absolute tolerances on outputs of order 1; float32 accumulates rounding over two blocks and the readout
TOL = {torch.float32: 2e-5, torch.float64: 1e-10}
KEYS = ("spectra", "node_scalars", "structure_embedding")


@pytest.fixture(scope="module")
def structures():
    """Two different supercells: a thermally displaced 12-atom cell, and a 48-atom cell with an O vacancy and an antisite."""
    small = generate_nmc(NMCParams(seed=2, supercell=(1, 1, 1), thermal_sigma=0.05)).structure
    large = generate_nmc(NMCParams(seed=7, supercell=(2, 2, 1), n_o_vacancies=1, n_antisites=1, thermal_sigma=0.05)).structure
    return small, large


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def model(request):
    torch.manual_seed(0)
    return build_model(tiny_model_config()).to(request.param).eval()


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _graph(structure: Structure, dtype: torch.dtype):
    """``structure_graph`` in ``dtype``: it builds positions and shifts in the default dtype, and
    float64 inputs rounded to float32 first would hide float64's precision."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return structure_graph(structure, CUTOFF)
    finally:
        torch.set_default_dtype(old)


@torch.no_grad()
def _outputs(model, structure: Structure) -> dict[str, torch.Tensor]:
    out = model.forward_structure(_graph(structure, _dtype(model)))
    assert out["absorber_index"].tolist() == list(range(len(structure)))  # every NMC atom absorbs
    return {k: out[k] for k in (*KEYS, "spectra_mask")}


def _assert_close(got: dict, want: dict, tol: float) -> None:
    assert got["spectra_mask"].equal(want["spectra_mask"])
    for key in KEYS:
        assert want[key].abs().max() > 1e-2, key  # not trivially zero
        err = float((got[key] - want[key]).abs().max())
        assert err <= tol, f"{key}: max deviation {err:.2e} > {tol:.0e}"


def test_a_batch_of_two_structures_equals_each_alone(model, structures):
    dtype = _dtype(model)
    alone = [_outputs(model, s) for s in structures]
    with torch.no_grad():
        out = model.forward_structure(Batch.from_data_list([_graph(s, dtype) for s in structures]))
    n = len(structures[0])  # one environment per site, in site order: every output splits at n
    first = {k: v[:n] for k, v in out.items() if k in (*KEYS, "spectra_mask")}
    second = {k: v[n:] for k, v in out.items() if k in (*KEYS, "spectra_mask")}
    assert second["spectra"].shape[0] == len(structures[1])
    _assert_close(first, alone[0], TOL[dtype])
    _assert_close(second, alone[1], TOL[dtype])


def _rotated(structure: Structure, seed: int) -> Structure:
    q = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    matrix = o3.quaternion_to_matrix(q / q.norm()).numpy()  # a uniformly random rotation
    moved = structure.copy()
    moved.apply_operation(SymmOp.from_rotation_and_translation(matrix, np.zeros(3)))  # the lattice turns with the atoms
    return moved


def _translated(structure: Structure) -> Structure:
    moved = structure.copy()
    # a Cartesian shift, then every atom wrapped back into the cell: periodic images and edge shifts change
    moved.translate_sites(list(range(len(moved))), [1.3, -2.1, 0.7], frac_coords=False, to_unit_cell=True)
    return moved


@pytest.mark.parametrize("which", [0, 1], ids=["12 atoms", "48 atoms"])
def test_rotation_and_translation_leave_every_output_unchanged(model, structures, which):
    s = structures[which]
    ref = _outputs(model, s)
    tol = TOL[_dtype(model)]
    _assert_close(_outputs(model, _rotated(s, seed=which)), ref, tol)
    moved = _translated(s)
    assert not np.allclose(moved.frac_coords, s.frac_coords)
    _assert_close(_outputs(model, moved), ref, tol)


@pytest.mark.parametrize("which", [0, 1], ids=["12 atoms", "48 atoms"])
def test_permuted_atoms_permute_every_output(model, structures, which):
    s = structures[which]
    perm = np.random.default_rng(which).permutation(len(s))
    assert (perm != np.arange(len(s))).any()
    permuted = Structure.from_sites([s[int(i)] for i in perm])  # atom k of the new file is atom perm[k]
    ref = _outputs(model, s)
    # one environment per site, in site order: every per-site output is permuted the same way
    want = {k: v[torch.from_numpy(perm)] for k, v in ref.items()}
    _assert_close(_outputs(model, permuted), want, TOL[_dtype(model)])


def test_pseudoscalars_alone_cannot_be_read_out():
    """0o features are rotation-invariant but change sign under a reflection: a backbone whose last
    block has no 0e features is refused at build time rather than giving parity-odd spectra."""
    cfg = tiny_model_config()
    with pytest.raises(ValueError, match="no 0e scalars"):
        build_model(tiny_model_config(backbone={**cfg.backbone.__dict__, "hidden_irreps": "8x0o + 4x1o + 2x1e"}))
