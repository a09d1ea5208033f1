"""Reading structures from files or objects into a pymatgen ``Structure``.

Accepted: CIF, POSCAR/CONTCAR (VASP), pymatgen JSON (``Structure.as_dict()``), any file ase
can read, ase ``Atoms``, pymatgen ``Structure``/``Molecule`` objects. Lengths are Angstrom.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Molecule, Structure

from gnnspec.errors import InputError

#: Atoms closer than this (Angstrom) are refused as overlapping.
MIN_DISTANCE = 0.5
#: File names a structure folder is read from: these suffixes, or names starting POSCAR/CONTCAR.
STRUCTURE_SUFFIXES = (".cif", ".json", ".vasp", ".poscar")


def is_structure_file(path: Path) -> bool:
    """True for a file :func:`structure_files` takes from a folder (by its name only)."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(("POSCAR", "CONTCAR")))


def structure_files(sources: Any) -> list[Path]:
    """The structure files named by ``sources`` (a path or a list of paths), in order.

    A file is taken as it is; a folder gives its structure files (:data:`STRUCTURE_SUFFIXES`,
    ``POSCAR*``, ``CONTCAR*``) sorted by name. A missing path, or a folder without structure
    files, is an :class:`InputError` naming it.
    """
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if is_structure_file(p))
            if not found:
                raise InputError(f"{path}: no structure files (*.cif, *.json, *.vasp, *.poscar, POSCAR*, CONTCAR*)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such structure file or folder")
    return files


def read_structure(source: Any) -> Structure:
    """Read ``source`` (path, pymatgen object, ase Atoms or dict) into a checked ``Structure``.

    Raises :class:`InputError` naming the file and the reason for malformed files, unknown
    elements, empty structures and overlapping atoms (closer than 0.5 Angstrom).
    """
    label = "<object>"
    if isinstance(source, Structure):
        structure = source.copy()
    elif isinstance(source, Molecule):
        structure = _molecule_to_structure(source)
    elif isinstance(source, dict):
        structure = _from_dict(source, "<dict>")
    elif _is_ase_atoms(source):
        structure = _from_ase(source, "<ase.Atoms>")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        structure = _read_file(path)
    else:
        raise InputError(f"cannot read a structure from an object of type {type(source).__name__}")
    check_structure(structure, label)
    return structure


def check_structure(structure: Structure, label: str = "<structure>") -> None:
    """Refuse empty structures, unknown elements and atoms closer than ``MIN_DISTANCE``."""
    if len(structure) == 0:
        raise InputError(f"{label}: the structure has no atoms")
    for site in structure:
        if not site.is_ordered:
            raise InputError(f"{label}: site {site.species_string} is disordered (partial occupancy)")
        symbol = site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie)
        if not Element.is_valid_symbol(symbol) or Element(symbol).Z > 103:
            raise InputError(f"{label}: unknown element {symbol!r}")
    if len(structure) > 1:
        dist = structure.distance_matrix
        np.fill_diagonal(dist, np.inf)
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        if dist[i, j] < MIN_DISTANCE:
            raise InputError(
                f"{label}: atoms {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) "
                f"are {dist[i, j]:.3f} A apart (< {MIN_DISTANCE} A): overlapping atoms"
            )


def _is_ase_atoms(obj: Any) -> bool:
    try:
        from ase import Atoms
    except ImportError:
        return False
    return isinstance(obj, Atoms)


def _from_ase(atoms: Any, label: str) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    if len(atoms) == 0:
        raise InputError(f"{label}: the structure has no atoms")
    if not any(atoms.pbc):
        return _molecule_to_structure(AseAtomsAdaptor.get_molecule(atoms))
    return AseAtomsAdaptor.get_structure(atoms)


def _molecule_to_structure(molecule: Molecule) -> Structure:
    """Put a non-periodic cluster in a box large enough that no periodic image is near."""
    coords = np.asarray(molecule.cart_coords)
    span = coords.max(axis=0) - coords.min(axis=0) if len(coords) else np.zeros(3)
    box = span + 30.0
    centred = coords - coords.min(axis=0) + 15.0
    return Structure(
        Lattice(np.diag(box)),
        [s.species_string for s in molecule],
        centred,
        coords_are_cartesian=True,
        site_properties=molecule.site_properties or None,
    )


def _from_dict(data: dict, label: str) -> Structure:
    try:
        if "lattice" in data:
            return Structure.from_dict(data)
        return _molecule_to_structure(Molecule.from_dict(data))
    except Exception as exc:  # pymatgen raises many types for bad dicts
        raise InputError(f"{label}: not a pymatgen structure dictionary ({exc})") from None


def _read_file(path: Path) -> Structure:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a structure file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    name = path.name.lower()
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a pymatgen structure dictionary")
        return _from_dict(data, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.endswith(".cif") or "poscar" in name or "contcar" in name or name.endswith(".vasp"):
            try:
                structure = Structure.from_file(str(path))
            except Exception as exc:
                raise InputError(f"{path}: could not parse as {_kind(name)} ({_short(exc)})") from None
            return structure
        try:
            import ase.io

            atoms = ase.io.read(str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a structure file ase can read ({_short(exc)})") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    return _from_ase(atoms, str(path))


def _kind(name: str) -> str:
    return "CIF" if name.endswith(".cif") else "POSCAR"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
