"""Benchmark apfdsp.tdfilter.sosfilt: plain scipy forward vs value-and-gradient w.r.t. sos.

Run with ``python -m pytest benchmarks/bench_tdfilter.py --benchmark-only``. The case is
8 sections x 1 s of mono audio at 48 kHz. Setup is seeded and stays out of the timed call.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from scipy import signal

from apfdsp.tdfilter import sosfilt

FS = 48000
N_SECTIONS = 8


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(440)
    poles = rng.uniform(0.5, 0.95, N_SECTIONS) * np.exp(1j * rng.uniform(0.05, 3.1, N_SECTIONS))
    zeros = 1.0 / np.conj(poles)  # allpass sections, as in the rest of apfdsp
    sos = signal.zpk2sos(np.r_[zeros, zeros.conj()], np.r_[poles, poles.conj()], 1.0)
    x = rng.standard_normal(FS)
    return sos, x


def test_scipy_sosfilt(benchmark, case):
    sos, x = case
    y = benchmark(signal.sosfilt, sos, x)
    assert y.shape == x.shape


def test_apfdsp_sosfilt_forward(benchmark, case):
    sos, x = case
    y = benchmark(sosfilt, sos, x)
    assert np.array_equal(y, signal.sosfilt(sos, x))


def test_value_and_grad_wrt_sos(benchmark, case):
    sos, x = case
    value_and_grad = autograd.value_and_grad(lambda s: anp.sum(sosfilt(s, x) ** 2))
    value, grad = benchmark(value_and_grad, sos)
    assert grad.shape == sos.shape and np.all(grad[:, 3] == 0)


def test_value_and_grad_wrt_x(benchmark, case):
    sos, x = case
    value_and_grad = autograd.value_and_grad(lambda x_: anp.sum(sosfilt(sos, x_) ** 2))
    value, grad = benchmark(value_and_grad, x)
    assert grad.shape == x.shape
