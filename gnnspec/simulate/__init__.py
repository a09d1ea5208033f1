"""FEFF10 simulation: presets, feff.inp writing, running one absorbing site, parsing outputs."""
