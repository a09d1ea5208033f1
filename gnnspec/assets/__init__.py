"""Files shipped inside the package.

``model.pt``: the shipped model, trained with ``train_configs/cpu.yaml`` on
``datasets/nmc_feff10_fast``; the default of every command and API call that needs a model.
``model.uncertainty.npz``: its property-head ensemble with calibrated temperatures
(``gnnspec calibrate``), used by ``gnnspec infer`` for uncertainties.
"""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "model.pt"
