"""gnnspec: equivariant graph neural networks for core-level spectroscopy (XAS and EELS).

Energies are in eV (absolute), lengths in Angstrom. The physics of each spectral channel is in
:mod:`gnnspec.channels`.
"""

__version__ = "0.1.0"
