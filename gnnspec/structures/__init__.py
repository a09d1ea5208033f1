"""Structures: reading files, the NMC generator, local environments and their labels."""

from gnnspec.structures.io import read_structure, structure_files

__all__ = ["read_structure", "structure_files"]
