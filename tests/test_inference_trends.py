"""The shipped model's answers follow a known trend: lithium content against state of charge.

Sample-averaged spectra (every site of an element, as a measurement of a region sums them) of
NMC622 supercells at falling Li content, predicted by the model's scf head in the EELS
channels a STEM-EELS survey records (O K, Mn/Co/Ni L2,3), go through ``infer``: the Li fraction
it answers must fall with the Li content, the way it does on charging.
"""

import numpy as np
import pytest

LI_CONTENTS = (0.5, 0.75, 1.0)
EELS = ("O-K-eels", "Mn-L23-eels", "Co-L23-eels", "Ni-L23-eels")


@pytest.fixture(scope="module")
def model():
    import gnnspec

    return gnnspec.load_model()


def sample_spectra(model, li_content: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Channel -> the mean over every site of its element of the model's scf spectrum."""
    from gnnspec.structures.nmc import NMCParams, generate_nmc

    structure = generate_nmc(NMCParams(seed=seed, li_content=li_content, tm_ratio=(0.6, 0.2, 0.2), tm_ratio_name="NMC622")).structure
    predicted = model.predict_site_spectra(structure, list(range(len(structure))))
    by_channel: dict[str, list[np.ndarray]] = {}
    for channels in predicted.values():
        for name, (_, intensity) in channels.items():
            if name in EELS:
                by_channel.setdefault(name, []).append(np.asarray(intensity))
    return {name: np.mean(rows, axis=0) for name, rows in by_channel.items()}


def test_answered_li_content_falls_with_the_li_content(model):
    answers = [model.infer(sample_spectra(model, li))["element_content"]["Li"] for li in LI_CONTENTS]
    assert np.all(np.diff(answers) > 0.02), dict(zip(LI_CONTENTS, answers))
