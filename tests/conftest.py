"""Shared fixtures of the apfdsp test-suite.

Test modules may define their own ``rng`` fixture (tests/test_metrics.py does); a module-level fixture
overrides the one here, so both keep working.
"""

from functools import partial

import numpy as np
import pytest
from autograd.test_util import check_grads as _check_grads

SEED = 440  # librosa's rng_factory seed


@pytest.fixture
def rng():
    """A freshly seeded generator for every test: reproducible and independent of test order."""
    return np.random.default_rng(SEED)


@pytest.fixture
def check_grads():
    """``autograd.test_util.check_grads`` in reverse mode, first order, with reproducible probes.

    autograd draws its random probe vectors from the global ``np.random`` state; the state is seeded
    here and restored afterwards so that no other test sees a change.
    """
    state = np.random.get_state()
    np.random.seed(SEED)
    yield partial(_check_grads, modes=["rev"], order=1)
    np.random.set_state(state)
