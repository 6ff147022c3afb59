"""Benchmark one training step of apfdsp.fit_audio against plain scipy filtering + STFT.

    python -m pytest benchmarks/bench_fit_audio.py --benchmark-enable --benchmark-only

The case: 8 warped second-order sections (plus a Thiran section, as in training) on 1 s of mono
audio at 48 kHz. Timed separately:

* ``test_loss_and_gradient``: value and gradient of the sum-magnitude STFT loss (2048 / 512) w.r.t. the
  direct parameters: parameters -> SOS -> differentiable sosfilt -> STFT loss, and back;
* ``test_scipy_sosfilt_and_stft``: one plain ``scipy.signal.sosfilt`` of the same SOS and one STFT
  (``scipy.signal.ShortTimeFFT``, same window and hop) of the output.

The issue's target: the first within 10x of the second. Setup is seeded and outside the timed calls.

* ``test_equation_error_start``: the default start of `fit_audio` (time-domain equation-error designs,
  8 sections, warped) on the same 1 s of audio through the 8 sections and a delay of 12 samples;
  it must be exact (output of the first start within 1e-6 of the wet, relative RMS).
"""

import autograd
import numpy as np
import pytest
from scipy import signal

from apfdsp.estimate import estimate
from apfdsp.designs import time_equation_error_starts
from apfdsp.fit_audio import LayoutFilter
from apfdsp.layout import Layout
from apfdsp.losses import sum_magnitude_stft_loss
from apfdsp.model import Direct
from apfdsp.ranges import DEFAULT_RANGES

FS = 48000
N_SECTIONS = 8
N_FFT, HOP = 2048, 512


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(440)
    layout = Layout(N_SECTIONS, 0, "warped", 1, 1, 0, DEFAULT_RANGES, float(FS))
    sections = [(r, fc, a) for r, fc, a in zip(rng.uniform(0.5, 0.95, N_SECTIONS),
                                                 np.geomspace(50, 15000, N_SECTIONS), rng.uniform(-0.5, 0.5, N_SECTIONS))]
    t = layout.t_from(sections, [], 1.3)
    x = rng.standard_normal(FS)
    filt = LayoutFilter(layout)
    y = filt(t, x) + 0.01 * rng.standard_normal(FS)  # a target close to the model output
    param = Direct()
    return filt, param, param.init(t), x, y


def test_loss_and_gradient(benchmark, case):
    filt, param, params, x, y = case
    objective = autograd.value_and_grad(
        lambda p: sum_magnitude_stft_loss(filt(param.forward(p), x), y, n_fft=N_FFT, hop=HOP))
    value, grad = benchmark(objective, params)
    assert np.isfinite(value) and grad.shape == params.shape and np.any(grad != 0)


def test_scipy_sosfilt_and_stft(benchmark, case):
    filt, param, params, x, _ = case
    rows2, rows1 = filt.sos(param.forward(params))
    sos = np.concatenate([rows2, rows1])
    stft = signal.ShortTimeFFT(signal.windows.hann(N_FFT, sym=False), HOP, FS)

    def plain():
        return stft.stft(signal.sosfilt(sos, x))

    spec = benchmark(plain)
    assert spec.shape[0] == N_FFT // 2 + 1


def test_equation_error_start(benchmark, case):
    filt, param, params, x, _ = case
    wet = np.concatenate([np.zeros(11), filt(param.forward(params), x)[:-11]])  # + 11 samples: 12 in all
    est = estimate(x, wet, fs=FS)
    options = dict(n_sections=N_SECTIONS, n_first_order=1, structure="warped", stretch=5, ranges=DEFAULT_RANGES,
                   fs=float(FS))
    starts = benchmark(time_equation_error_starts, x, wet, est, **options)
    layout, t = starts[0]
    out = np.roll(LayoutFilter(layout)(t, x), layout.delay_shift)
    n = FS // 2  # well after the start: np.roll wraps the first samples around
    assert np.sqrt(np.mean((out[n:] - wet[n:]) ** 2) / np.mean(wet[n:] ** 2)) < 1e-6
