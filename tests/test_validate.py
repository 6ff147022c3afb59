"""Tests of apfdsp._validate: the checks at the public boundaries, and that every caller shares them."""

import numpy as np
import pytest

from apfdsp import ParameterError, align, fit_audio
from apfdsp._validate import valid_bool, valid_pair, valid_range
from apfdsp.confidence import pair_statistics
from apfdsp.estimate import estimate, gcc_phat, relative_response
from apfdsp.exceptions import AudioError
from apfdsp.metrics import energy_sums, mix_ratio, null_depth_db, residual_delay

FS = 48000


@pytest.fixture
def noise(rng):
    return rng.standard_normal(9000)


@pytest.mark.parametrize(("x_shape", "y_shape"), [((5,), (5,)), ((5,), (2, 4)), ((2, 5), (1, 5)), ((3, 2, 5), (2, 5))])
def test_valid_pair_accepts_shapes_that_broadcast(x_shape, y_shape):
    x, y = valid_pair(np.ones(x_shape, dtype=np.float32), np.ones(y_shape, dtype=int))
    assert x.shape == x_shape and y.shape == y_shape and x.dtype == y.dtype == np.float64


def test_valid_pair_errors():
    with pytest.raises(ParameterError, match=r"channel shapes of dry \(2,\) and wet \(3,\) do not broadcast: they must "
                                             r"match, or one must be mono"):
        valid_pair(np.ones((2, 5)), np.ones((3, 5)), names=("dry", "wet"))
    with pytest.raises(ParameterError, match=r"dry and wet must be 1-D \(mono\) or 2-D \(channels, samples\) arrays, "
                                             r"got shapes \(1, 1, 5\) and \(5,\)"):
        valid_pair(np.ones((1, 1, 5)), np.ones(5), names=("dry", "wet"), max_ndim=2)
    with pytest.raises(ParameterError, match="at most 1 dimensions"):
        valid_pair(np.ones((1, 5)), np.ones(5), max_ndim=1)
    with pytest.raises(AudioError, match="y is silent"):
        valid_pair(np.ones(5), np.zeros(5))
    assert valid_pair(np.ones(5), np.zeros(5), allow_silent=True)[1].sum() == 0
    with pytest.raises(AudioError, match="x is too short: 4 samples, at least 5"):
        valid_pair(np.ones(4), np.ones(5), min_samples=5)
    with pytest.raises(AudioError, match="y contains NaN"):
        valid_pair(np.ones(5), np.r_[1.0, np.nan])
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        valid_pair(np.ones(5, dtype=complex), np.ones(5))


# Every function that analyses a pair refuses channels that do not broadcast with the same error.
PAIR_CALLS = {
    "gcc_phat": lambda x, y: gcc_phat(x, y, fs=FS),
    "relative_response": lambda x, y: relative_response(x, y, fs=FS),
    "estimate": lambda x, y: estimate(x, y, fs=FS),
    "mix_ratio": lambda x, y: mix_ratio(x, y, fs=FS),
    "null_depth_db": lambda x, y: null_depth_db(x, y, fs=FS),
    "energy_sums": energy_sums,
    "residual_delay": lambda x, y: residual_delay(x, y, fs=FS),
    "pair_statistics": lambda x, y: pair_statistics(x, y, fs=FS),
    "align": lambda x, y: align(x, y, fs=FS),
    "fit_audio": lambda x, y: fit_audio(x, y, fs=FS),
}


@pytest.mark.parametrize("call", list(PAIR_CALLS))
def test_every_pair_function_shares_the_channel_check(noise, call):
    with pytest.raises(ParameterError, match=r"\(2,\) and .* \(3,\) do not broadcast: they must match, or one must be "
                                             r"mono"):
        PAIR_CALLS[call](np.stack([noise] * 2), np.stack([noise] * 3))


def test_valid_range_and_valid_bool():
    assert valid_range(np.float32(0.5), "r", 0.0, 1.0) == 0.5
    assert valid_range(-1e300, "samples") == -1e300  # the whole real line by default
    for bad in (np.nan, np.inf, "0.5", True, None):
        with pytest.raises(ParameterError, match="r must be a finite real number, got"):
            valid_range(bad, "r", 0.0, 1.0)
    with pytest.raises(ParameterError, match=r"r must lie in \(0.0, 1.0\], got 0.0"):
        valid_range(0.0, "r", 0.0, 1.0, lo_open=True)
    assert valid_bool(np.bool_(True), "flag") is True and valid_bool(False, "flag") is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(ParameterError, match="flag must be True or False"):
            valid_bool(bad, "flag")
