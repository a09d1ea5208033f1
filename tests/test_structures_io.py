import json

import pytest
from pymatgen.core import Lattice, Structure

from gnnspec.errors import InputError
from gnnspec.structures import read_structure


def test_reads_cif_poscar_json_and_objects(tmp_path, licoo2):
    licoo2.to(filename=str(tmp_path / "a.cif"))
    licoo2.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    (tmp_path / "a.json").write_text(json.dumps(licoo2.as_dict()))
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(licoo2)
    atoms.write(str(tmp_path / "a.xyz"), format="extxyz")
    for source in (tmp_path / "a.cif", tmp_path / "POSCAR", tmp_path / "a.json", tmp_path / "a.xyz", licoo2, atoms):
        s = read_structure(source)
        assert isinstance(s, Structure)
        assert s.composition.reduced_formula == "LiCoO2"
        assert len(s) == 12


def test_malformed_cif_names_file(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3.0\nloop_\n_atom_site_label\nthis is not a cif\n")
    with pytest.raises(InputError, match="broken.cif"):
        read_structure(bad)


def test_unknown_element_is_refused(tmp_path):
    f = tmp_path / "odd.json"
    d = Structure(Lattice.cubic(4.0), ["Li"], [[0, 0, 0]]).as_dict()
    d["sites"][0]["species"][0]["element"] = "Xx"
    f.write_text(json.dumps(d))
    with pytest.raises(InputError, match="odd.json"):
        read_structure(f)


def test_overlapping_atoms_are_refused():
    s = Structure(Lattice.cubic(5.0), ["Ni", "O"], [[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(InputError, match="0.250 A apart"):
        read_structure(s)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.cif").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_structure(tmp_path / "empty.cif")
    with pytest.raises(InputError, match="no such file"):
        read_structure(tmp_path / "nope.cif")
    with pytest.raises(InputError, match="no atoms"):
        read_structure(Structure(Lattice.cubic(3.0), [], []))
