"""Using a trained model: per-atom explanations, attributions over input spectra, uncertainty."""
