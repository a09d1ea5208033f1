"""Neural-network parts: radial basis, equivariant interaction block, contribution readout, spectrum encoder parts."""
