"""Files shipped inside the package.

``model.pt``: the shipped model, trained with ``train_configs/cpu.yaml`` on
``datasets/nmc_feff10_fast``: a multi-fidelity forward model (FEFF tiers ``fast`` and ``scf``,
predicting ``scf`` unless asked otherwise) and a spectrum encoder aligned on its scf-tier
spectra; the default of every command and API call that needs a model.
It carries its property-head ensemble with calibrated temperatures, its training support
(``gnnspec calibrate``, :mod:`gnnspec.analysis.attached`), its structure support, its encoder
ensemble and its forward ensemble (:mod:`gnnspec.models.forward_ensemble`: the forward side of
ten more training runs of this model's own config, same channels and tiers, seeds 1-10: seeds 3-6
on 2,523 scf runs, seeds 7 and 8 on 2,908 scf runs and every supercell's fast tier, seeds 9 and 10
on 4,378 scf runs (in place of the two multi-fidelity study runs, 2026-12-08); predictions are the
mean of the eleven and their linear scf heads, the two kinds mixed per channel as validation
chose, with a spread calibrated on validation, the heads (reading the absorber's geometry as well,
:mod:`gnnspec.models.absorber_geometry`) last refitted on the 4,378 scf runs of the data of
2026-12-08 (every supercell 0-103);
docs/2026-12-06-forward-ensemble.md, docs/2026-12-06-eleven-forward-models-and-realignment.md,
docs/2026-12-07-two-more-forward-models.md, docs/2026-12-07-what-more-scf-runs-can-do.md,
benchmarks/forward_members_refreshed.md).
``model.calibration.json``: the report of its calibration.
"""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "model.pt"
