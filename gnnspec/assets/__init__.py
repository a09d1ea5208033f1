"""Files shipped inside the package.

``model.pt``: the shipped model, trained with ``train_configs/cpu.yaml`` on
``datasets/nmc_feff10_fast``: a multi-fidelity forward model (FEFF tiers ``fast`` and ``scf``,
predicting ``scf`` unless asked otherwise) and a spectrum encoder aligned on its scf-tier
spectra; the default of every command and API call that needs a model.
It carries its property-head ensemble with calibrated temperatures, its training support
(``gnnspec calibrate``, :mod:`gnnspec.analysis.attached`), its structure support and its encoder
ensemble. ``model.calibration.json``: the report of its calibration.
"""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "model.pt"
