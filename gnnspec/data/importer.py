"""Importing spectra computed elsewhere: folders of FEFF runs (``feff.inp`` + ``xmu.dat``).

Each run folder becomes one structure record holding the FEFF cluster (non-periodic, in a
padded box) with the absorber at site 0, plus its spectra: ``xmu.dat`` (XANES runs) or
``xmu10.dat`` and ``eels.dat`` (ELNES runs). The channel follows from the absorber element,
the ``EDGE`` card and the run kind. Energies stay absolute (eV), as FEFF wrote them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gnnspec.channels import CHANNELS, RUN_NAMES
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError


def _read_table(path: Path, column: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as exc:
        raise InputError(f"{path}: not a FEFF table ({exc})") from None
    if data.shape[1] <= column or data.shape[0] < 2:
        raise InputError(f"{path}: expected at least {column + 1} columns and 2 rows, got {data.shape}")
    return data[:, 0].astype(np.float64), data[:, column].astype(np.float64)


def _parse_feff_inp(path: Path) -> tuple[str, bool, list[tuple[float, float, float, int]], dict[int, str]]:
    import feff10

    try:
        inp = feff10.FeffInput.from_file(str(path))
    except feff10.FeffError as exc:
        raise InputError(f"{path}: FEFF10 cannot parse it ({exc})") from None
    edge = (inp.edge or "K").upper()
    is_elnes = any(card.strip().upper().startswith("ELNES") for card in inp.other_cards) or (path.parent / "eels.dat").exists()
    pots = {p.ipot: p for p in inp.potentials}
    from pymatgen.core import Element

    symbols = {ipot: Element.from_Z(p.z).symbol for ipot, p in pots.items()}
    atoms = [(a.x, a.y, a.z, a.ipot) for a in inp.atoms]
    if not atoms:
        raise InputError(f"{path}: no ATOMS card")
    return edge, is_elnes, atoms, symbols


def import_feff_folders(root: str | Path, out: str | Path, split: str = "train") -> int:
    """Import every folder below ``root`` holding ``feff.inp`` and spectra; returns the count."""
    from pymatgen.core import Molecule

    from gnnspec.structures.io import read_structure

    root, out = Path(root), Path(out)
    schema.check_split(split)
    folders = sorted(p.parent for p in root.rglob("feff.inp"))
    if not folders:
        raise InputError(f"{root}: no FEFF run folders (feff.inp) found")
    store = SpectraStore(out, readonly=False)
    if store.metadata() is None:
        store.put_many(
            {
                schema.METADATA_KEY: {
                    "schema": schema.SCHEMA_NAME,
                    "schema_version": schema.SCHEMA_VERSION,
                    "build_config": {"name": "imported"},
                    "channels": {n: c.as_dict() for n, c in CHANNELS.items()},
                    "presets": {},
                    "sessions": [],
                }
            }
        )
    sid = max(store.structure_ids(), default=-1) + 1
    n = 0
    for folder in folders:
        edge, is_elnes, atoms, symbols = _parse_feff_inp(folder / "feff.inp")
        absorber = symbols[0]
        atoms = sorted(atoms, key=lambda a: (a[3] != 0, a[0] ** 2 + a[1] ** 2 + a[2] ** 2))
        mol = Molecule([symbols[a[3]] for a in atoms], [a[:3] for a in atoms])
        structure = read_structure(mol)
        spectra = {}
        if is_elnes:
            spectra[f"{absorber}-{edge}-eels"] = _read_table(folder / "eels.dat", 1)
            xmu = folder / "xmu10.dat" if (folder / "xmu10.dat").exists() else folder / "xmu.dat"
            spectra[f"{absorber}-{edge}-xas"] = _read_table(xmu, 3)
        else:
            spectra[f"{absorber}-{edge}-xas"] = _read_table(folder / "xmu.dat", 3)
        spectra = {c: v for c, v in spectra.items() if c in RUN_NAMES}
        if not spectra:
            raise InputError(f"{folder}: absorber {absorber} edge {edge} matches no gnnspec channel")
        text = (folder / "feff.inp").read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        run = f"{absorber}-{edge}-{'elnes' if is_elnes else 'xanes'}"
        items = {
            schema.structure_key(sid): {
                "sid": sid,
                "case": "imported",
                "split": split,
                "structure": structure.as_dict(),
                "params": {"source": str(folder.relative_to(root))},
                "vacancies": [],
                "relax_info": {},
                "sites": {"0": {run: sorted(spectra)}},
            }
        }
        for ch, (e, y) in spectra.items():
            items[schema.spectrum_key(sid, 0, ch, "imported")] = schema.spectrum_record(e, y, "imported", digest, "unknown (imported)", 0.0)
        store.put_many(items)
        sid += 1
        n += 1
    return n
