"""gnnspec: equivariant graph neural networks for core-level spectroscopy (XAS and EELS).

Energies are in eV (absolute), lengths in Angstrom. The physics of each spectral channel is in
:mod:`gnnspec.channels`.

Python API (imported on first use, so ``import gnnspec`` stays light)::

    model = gnnspec.load_model()            # the shipped model, or load_model("run/best.pt")
    model.predict_spectra(structure, site)  # {channel: (energy_eV, intensity)}
    model.embed_environments(structure)     # [n_sites, dim] unit vectors
    model.embed_spectra(spectra)            # [dim] unit vector, same space
    model.infer(spectra)                    # element content and defect probabilities
    gnnspec.Library.open(path).query(spectra, k=5)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Library", "build_library", "load_model", "model_hash", "read_structure"]


def load_model(path: str | None = None, device: str = "cpu") -> Any:
    """A trained model from a checkpoint (default: the shipped ``gnnspec/assets/model.pt``), in eval mode."""
    from gnnspec.models.factory import load_model as load

    return load(path, map_location=device)


def __getattr__(name: str) -> Any:
    if name in ("Library", "build_library", "model_hash"):
        import gnnspec.library as library

        return getattr(library, name)
    if name == "read_structure":
        from gnnspec.structures import read_structure

        return read_structure
    raise AttributeError(f"module 'gnnspec' has no attribute {name!r}")
