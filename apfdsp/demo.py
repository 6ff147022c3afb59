"""Built-in demo material: a synthetic music-like dry track and a virtual-analog-style effect.

Everything is generated from a seed, offline, so the demo, the examples and the tests need no audio
files. The module's place in the package is docs/architecture.md, section 2.24.
"""

import numpy as np
from scipy import signal

from ._validate import valid_audio, valid_fs, valid_range
from .cascade import Allpass1, Allpass2, AllpassCascade

__all__ = ["demo_dry", "demo_effect", "DEMO_EFFECT_LATENCY"]

#: Latency of `demo_effect` in samples at 48 kHz (scaled with fs).
DEMO_EFFECT_LATENCY = 67


def _note(freq, n, fs, rng, *, n_harmonics=8, decay_s=0.6):
    t = np.arange(n) / fs
    partials = np.arange(1, n_harmonics + 1)
    amps = rng.uniform(0.4, 1.0, n_harmonics) / partials**1.2
    phases = rng.uniform(0, 2 * np.pi, n_harmonics)
    tone = np.sum(amps[:, None] * np.sin(2 * np.pi * freq * partials[:, None] * t + phases[:, None]), axis=0)
    envelope = (1 - np.exp(-t / 0.005)) * np.exp(-t / decay_s)
    return tone * envelope


def demo_dry(*, fs=48000, duration_s=5.0, channels=1, seed=0):
    """A music-like test signal: bass line, chords, hi-hat noise and kick drum, normalised to -3 dBFS.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    duration_s : float
        Length in seconds.
    channels : int
        1 (shape (n,)) or more (shape (channels, n), slightly different mixes per channel).
    seed : int
        Seed of the random generator.

    Returns
    -------
    x : ndarray

    Examples
    --------
    >>> x = demo_dry(fs=16000, duration_s=1.0)
    >>> x.shape, bool(abs(abs(x).max() - 10 ** (-3 / 20)) < 1e-12)
    ((16000,), True)
    """
    fs = valid_fs(fs)
    valid_range(duration_s, "duration_s", 0.05, 3600.0)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    beat = int(0.25 * fs)
    out = []
    for _ in range(int(channels)):
        x = np.zeros(n)
        roots = [55.0, 65.41, 49.0, 58.27]
        for k, start in enumerate(range(0, n, beat)):
            length = min(n - start, 4 * beat)
            root = roots[(k // 8) % len(roots)]
            if k % 2 == 0:  # bass
                x[start : start + length] += 0.8 * _note(root, length, fs, rng, decay_s=0.3)
            if k % 4 == 0:  # chord
                for ratio in (2.0, 2.52, 3.0, 3.78):
                    x[start : start + length] += 0.25 * _note(root * ratio * 2, length, fs, rng, decay_s=0.8)
            hat = min(n - start, int(0.05 * fs))
            noise = rng.standard_normal(hat) * np.exp(-np.arange(hat) / (0.01 * fs))
            x[start : start + hat] += 0.15 * signal.lfilter([1, -1], [1], noise)
            if k % 4 == 0:  # kick: a falling sine
                kick = min(n - start, int(0.2 * fs))
                tk = np.arange(kick) / fs
                x[start : start + kick] += 0.9 * np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk * 30)))) * np.exp(-tk * 12)
        x += 0.002 * rng.standard_normal(n)  # a little room noise keeps every band alive
        out.append(x)
    x = np.array(out)
    x *= 10 ** (-3 / 20) / np.max(np.abs(x))
    return x[0] if channels == 1 else x


def demo_effect(x, *, fs=48000, drive=1.5):
    """A virtual-analog-style effect with latency, a polarity flip, dispersive phase and EQ.

    y = -latency(allpass(lowpass(tanh(drive * highpass(peak(x)))))): 2nd-order 40 Hz high-pass, a
    +4 dB peak at 900 Hz, soft clipping, 1st-order 12 kHz low-pass, two allpass sections (a phaser-like
    dispersion at 350 Hz and 2.5 kHz), an inverting output stage and 67 samples of latency at 48 kHz.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Dry signal.
    fs : float
        Sample rate in Hz.
    drive : float
        Gain before the soft clipper (1.5: mildly nonlinear).

    Returns
    -------
    y : ndarray, same shape as `x`

    Examples
    --------
    The effect's latency and inversion are what the delay estimate finds (docs/maths.md, section 7):

    >>> from apfdsp.demo import DEMO_EFFECT_LATENCY, demo_dry, demo_effect
    >>> from apfdsp.estimate import gcc_phat
    >>> dry = demo_dry(duration_s=2.0)
    >>> wet = demo_effect(dry)
    >>> delay, peak = gcc_phat(dry, wet, fs=48000)
    >>> wet.shape == dry.shape, DEMO_EFFECT_LATENCY <= delay < DEMO_EFFECT_LATENCY + 3, bool(peak < 0)
    (True, True, True)
    """
    fs = valid_fs(fs)
    x = valid_audio(x, allow_silent=True)
    sos_hp = signal.butter(2, 40.0, "highpass", fs=fs, output="sos")
    b_peak, a_peak = signal.iirpeak(900.0, 1.2, fs=fs)
    y = signal.sosfilt(sos_hp, x + 0.6 * signal.lfilter(b_peak, a_peak, x, axis=-1), axis=-1)
    y = np.tanh(drive * y) / drive
    y = signal.sosfilt(signal.butter(1, 12000.0, "lowpass", fs=fs, output="sos"), y, axis=-1)
    dispersion = AllpassCascade([Allpass2(0.93, 350.0), Allpass2(0.85, 2500.0), Allpass1(-0.3)], fs=fs)
    y = -0.7 * dispersion.apply(y)
    latency = int(round(DEMO_EFFECT_LATENCY * fs / 48000))
    out = np.zeros_like(y)
    out[..., latency:] = y[..., : y.shape[-1] - latency]
    return out
