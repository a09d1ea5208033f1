"""Shared test set-up: single-threaded torch (the CI box has 2 busy cores) and small fixtures."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def licoo2():
    """Layered LiCoO2 (R-3m, hexagonal cell, 12 sites) with site types."""
    from gnnspec.structures.nmc import ideal_cell

    return ideal_cell(a=2.816, c=14.05, o_z=0.2396, tm="Co")
