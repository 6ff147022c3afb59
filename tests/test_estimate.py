"""Tests of apfdsp.estimate: GCC-PHAT delay/polarity, relative response, fitting weights, estimate()."""

import dataclasses

import numpy as np
import pytest
from scipy import signal

from apfdsp.estimate import (
    PRECEDENCE_DB,
    DelayPeaks,
    Estimate,
    default_nperseg,
    estimate,
    fit_weights,
    gcc_peaks,
    gcc_phat,
    relative_response,
)
from apfdsp.exceptions import AudioError, ParameterError

FS = 48000
N = 2**16


@pytest.fixture
def rng():
    return np.random.default_rng(440)


@pytest.fixture
def noise(rng):
    return rng.standard_normal(N)


def frac_delay(x, d):
    """Delay x by d samples (any real d) with an FFT phase ramp (circular)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * d), n)


def sinc_delay(x, d, half=48):
    """Delay x by d >= 0 samples with a Kaiser-windowed sinc FIR (linear, not circular)."""
    k = np.arange(-half, half + 1)
    frac = d - np.floor(d)
    h = np.sinc(k - frac) * np.kaiser(2 * half + 1, 8.0)
    y = np.convolve(x, h)[half : half + len(x)]
    return np.concatenate([np.zeros(int(np.floor(d))), y])[: len(x)]


EQ_FIR = signal.firwin2(63, [0, 200, 1000, 5000, 12000, 24000], [0.5, 1, 2, 1, 0.7, 0.7], fs=FS)

# (name, transform applied to the delayed signal)
DISTORTIONS = {
    "clean": lambda y: y,
    "polarity": lambda y: -y,
    "level_0.1": lambda y: 0.1 * y,
    "tanh": lambda y: np.tanh(4 * y),
    "tanh_inverted": lambda y: -np.tanh(4 * y),
    "zero_phase_eq": lambda y: signal.filtfilt(EQ_FIR, [1.0], y),
    "shorter": lambda y: y[: int(0.7 * len(y))],
    "longer": lambda y: np.concatenate([y, y[:5000]]),
}


# --------------------------------------------------------------------------------------------------
# gcc_phat
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [-37, 0, 5, 250])
def test_gcc_integer_delay_is_exact(noise, d):
    y = np.roll(noise, d)
    delay, peak = gcc_phat(noise, y, fs=FS)
    assert delay == pytest.approx(d, abs=0.01)
    assert peak > 0.9


@pytest.mark.parametrize("name", list(DISTORTIONS))
@pytest.mark.parametrize("d", [-12.3, 0.5, 3.71])
def test_gcc_fractional_delay_within_005(noise, name, d):
    y = DISTORTIONS[name](frac_delay(noise, d))
    delay, peak = gcc_phat(noise, y, fs=FS)
    assert abs(delay - d) < 0.05
    inverted = name in ("polarity", "tanh_inverted")
    assert np.sign(peak) == (-1 if inverted else 1)


def test_gcc_sinc_delay_and_beats_parabolic_bias(noise):
    # parabolic interpolation of the sampled PHAT correlation is off by ~0.1 sample near d = k + 0.3;
    # the band-limited refinement must be an order of magnitude better
    for d in (7.3, 20.45):
        delay, _ = gcc_phat(noise, sinc_delay(noise, d), fs=FS)
        assert abs(delay - d) < 0.01


def test_gcc_robust_to_stopband_junk(noise):
    # steep zero-phase lowpass: 7/8 of the bins hold only filter edge transients, which plain PHAT
    # weights like signal
    h = signal.firwin(101, 3000, fs=FS)
    for d in (0.4, -2.6):
        delay, _ = gcc_phat(noise, signal.filtfilt(h, [1.0], frac_delay(noise, d)), fs=FS)
        assert abs(delay - d) < 0.05


def test_gcc_additive_noise(noise, rng):
    y = frac_delay(noise, 9.25) + 0.5 * rng.standard_normal(N)
    delay, peak = gcc_phat(noise, y, fs=FS)
    assert abs(delay - 9.25) < 0.05
    assert 0 < peak < 1


def test_gcc_pure_delay_peak_is_one(noise):
    _, peak = gcc_phat(noise, -0.2 * np.roll(noise, 3), fs=FS)
    assert peak == pytest.approx(-1.0, abs=0.01)


def test_gcc_search_range_is_respected(noise):
    y = np.concatenate([np.zeros(500), noise])
    assert gcc_phat(noise, y, fs=FS)[0] == pytest.approx(500, abs=0.01)
    limited, _ = gcc_phat(noise, y, fs=FS, max_delay_s=100 / FS)
    assert abs(limited) <= 101


def test_gcc_multichannel_pooling(noise, rng):
    d = 4.6
    stereo = np.stack([frac_delay(noise, d), 0.3 * signal.filtfilt(EQ_FIR, [1.0], frac_delay(noise, d))])
    delay, _ = gcc_phat(noise, stereo, fs=FS)  # mono x broadcasts against stereo y
    assert abs(delay - d) < 0.05
    # independent channels, each delayed by the same amount
    x2 = rng.standard_normal((2, N // 2))
    delay2, _ = gcc_phat(x2, frac_delay(x2, -d), fs=FS)
    assert abs(delay2 + d) < 0.05


def test_gcc_channel_result_matches_mono(noise):
    y = frac_delay(noise, 2.2)
    mono = gcc_phat(noise, y, fs=FS)
    dup = gcc_phat(np.stack([noise, noise]), np.stack([y, y]), fs=FS)
    assert dup == pytest.approx(mono, abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, y_fn, err, match",
    [
        ({"fs": 0}, lambda x: x, ParameterError, "fs must be"),
        ({"fs": FS, "max_delay_s": 0}, lambda x: x, ParameterError, "max_delay_s"),
        ({"fs": FS, "max_delay_s": float("nan")}, lambda x: x, ParameterError, "max_delay_s"),
        ({"fs": FS}, lambda x: np.zeros_like(x), AudioError, "silent"),
        ({"fs": FS}, lambda x: np.where(np.arange(x.size) == 3, np.nan, x), AudioError, "NaN"),
        ({"fs": FS}, lambda x: np.zeros(0), AudioError, "empty"),
        ({"fs": FS}, lambda x: np.stack([x, x, x]).reshape(3, 1, -1)[:, :, :100] * np.ones((3, 2, 1)),
         None, None),
    ],
)
def test_gcc_errors(noise, kwargs, y_fn, err, match):
    x = noise[:1000]
    y = y_fn(x)
    if err is None:  # (3, 2, n) against (n,) broadcasts: no error
        assert np.isfinite(gcc_phat(x, y, **kwargs)[0])
        return
    with pytest.raises(err, match=match):
        gcc_phat(x, y, **kwargs)


def test_gcc_shapes_must_broadcast(noise):
    with pytest.raises(ParameterError, match="do not broadcast"):
        gcc_phat(np.stack([noise] * 2), np.stack([noise] * 3), fs=FS)


# --------------------------------------------------------------------------------------------------
# band-limited material, bins without energy, the precedence rule
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cutoff", [150.0, 300.0, 2000.0])
@pytest.mark.parametrize("d", [4.15, -7.6])
def test_gcc_low_frequency_material(rng, cutoff, d):
    # energy only at low frequencies: above the cutoff the two recordings share nothing but their
    # common start and end, which plain PHAT turned into a peak at lag 0 (4.15 was read as 0.016)
    x = signal.sosfilt(signal.butter(4, cutoff, fs=FS, output="sos"), rng.standard_normal(3 * FS))
    delay, peak = gcc_phat(x, frac_delay(x, d), fs=FS)
    assert abs(delay - d) < 0.05
    assert peak > 0.9


def test_gcc_ignores_bins_without_energy(rng):
    # 16-bit-like noise floors that differ between the two files above a steep low-pass
    sos = signal.ellip(10, 0.1, 120, 4000, fs=FS, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal(2 * FS))
    y = frac_delay(x, 12.4) + 1e-7 * rng.standard_normal(x.size)
    x = x + 1e-7 * rng.standard_normal(x.size)
    delay, _ = gcc_phat(x, y, fs=FS)
    assert abs(delay - 12.4) < 0.05


def _echo(x, taps):
    """Sum of delayed, scaled copies of x: taps = [(delay_samples, gain), ...] (integer delays)."""
    y = np.zeros_like(x)
    for delay, gain in taps:
        y[delay:] += gain * x[: x.size - delay]
    return y


@pytest.mark.parametrize("gain_db", [-3.0, 0.0, 2.0, 3.5])
def test_gcc_precedence_prefers_the_direct_path(noise, gain_db):
    # a direct path at 40 samples and a reflection 120 samples later, up to 3.5 dB stronger (the phase
    # weighting widens the gap between the two correlation peaks beyond that of the amplitudes)
    y = _echo(noise, [(40, 1.0), (160, 10 ** (gain_db / 20))])
    found = gcc_peaks(noise, y, fs=FS)
    assert isinstance(found, DelayPeaks)
    assert abs(found.delay_samples - 40) < 0.05
    assert found.choice == ("strongest" if gain_db <= 0 else f"earliest within {PRECEDENCE_DB:g} dB")
    lags = [round(d) for d, _ in found.candidates]
    assert lags == sorted(lags) and 40 in lags and 160 in lags


@pytest.mark.parametrize("gain_db", [0.0, 3.5])
def test_gcc_precedence_when_the_wet_leads(noise, gain_db):
    # the reverberant signal as the dry: the direct path is the latest of the competing peaks
    x = _echo(noise, [(200, 1.0), (320, 10 ** (gain_db / 20))])
    found = gcc_peaks(x, noise[: x.size], fs=FS)
    assert abs(found.delay_samples + 200) < 0.05
    assert found.choice == ("strongest" if gain_db <= 0 else f"latest within {PRECEDENCE_DB:g} dB")


def test_gcc_precedence_threshold(noise):
    # a reflection more than PRECEDENCE_DB stronger wins: the threshold is a real boundary
    y = _echo(noise, [(40, 1.0), (160, 10 ** ((PRECEDENCE_DB + 3.0) / 20))])
    found = gcc_peaks(noise, y, fs=FS)
    assert abs(found.delay_samples - 160) < 0.05 and found.choice == "strongest"
    assert [round(d) for d, _ in found.candidates] == [160]


def test_gcc_precedence_ignores_the_effects_own_lobes(rng):
    # a first-order low-pass: its phase gives opposite-sign lobes one sample either side of the delay;
    # they must not pass for a direct path (the strongest peak is kept)
    x = rng.standard_normal(2 * FS)
    y = signal.lfilter(*signal.butter(1, 3000, fs=FS), np.r_[np.zeros(30), x][: x.size])
    found = gcc_peaks(x, y, fs=FS)
    assert found.choice == "strongest" and found.peak > 0
    assert 29 < found.delay_samples < 33


def test_gcc_peaks_matches_gcc_phat(noise):
    y = frac_delay(noise, -3.3)
    found = gcc_peaks(noise, y, fs=FS)
    assert (found.delay_samples, found.peak) == gcc_phat(noise, y, fs=FS)


def test_estimate_reports_the_delay_choice(noise):
    est = estimate(noise, _echo(noise, [(40, 1.0), (160, 1.5)]), fs=FS)
    assert est.delay_choice == f"earliest within {PRECEDENCE_DB:g} dB" and est.integer_delay == 40
    assert len(est.delay_candidates) == 2


# --------------------------------------------------------------------------------------------------
# relative_response
# --------------------------------------------------------------------------------------------------
BA_BANDPASS = signal.butter(4, [200, 5000], btype="band", fs=FS)


def _compare_response(f, H, coh, b, a, *, extra_delay=0.0, min_coh=0.999):
    _, H_true = signal.freqz(b, a, worN=f, fs=FS)
    H_true = H_true * np.exp(-2j * np.pi * f * extra_delay / FS)
    band = coh > min_coh
    assert band.sum() > 0.2 * f.size  # the comparison covers a real band
    return np.max(np.abs(H[band] - H_true[band]) / np.abs(H_true[band]))


def test_relative_response_matches_freqz(noise):
    b, a = BA_BANDPASS
    f, H, coh = relative_response(noise, signal.lfilter(b, a, noise), fs=FS)
    assert f.shape == H.shape == coh.shape == (default_nperseg(FS, N) // 2 + 1,)
    assert _compare_response(f, H, coh, b, a) < 0.02
    assert np.all((coh >= 0) & (coh <= 1))


@pytest.mark.parametrize("D", [37, -25])
def test_relative_response_integer_delay_shifts_y_left(noise, D):
    b, a = BA_BANDPASS
    y = signal.lfilter(b, a, noise)
    y = np.concatenate([np.zeros(D), y]) if D > 0 else np.concatenate([y, np.zeros(-D)])
    x = noise if D > 0 else np.concatenate([np.zeros(-D), noise])  # x lags by |D| when D < 0
    f, H, coh = relative_response(x, y, fs=FS, integer_delay=D)
    assert _compare_response(f, H, coh, b, a) < 0.02
    # without the shift, the latency stays in the phase of H
    f0, H0, coh0 = relative_response(x, y, fs=FS)
    assert _compare_response(f0, H0, coh0, b, a, extra_delay=D, min_coh=0.95) < 0.1


def test_relative_response_multichannel_pools(noise):
    b, a = BA_BANDPASS
    y = signal.lfilter(b, a, noise)
    mono = relative_response(noise, y, fs=FS, nperseg=4096)
    stereo = relative_response(noise, np.stack([y, y]), fs=FS, nperseg=4096)
    for m, s in zip(mono, stereo):
        np.testing.assert_allclose(s, m, rtol=1e-10, atol=1e-12)


def test_relative_response_coherence_low_for_unrelated(noise, rng):
    _, _, coh = relative_response(noise, rng.standard_normal(N), fs=FS, nperseg=1024)
    assert coh.mean() < 0.05


@pytest.mark.parametrize(
    "fs, n, expected",
    [(48000, None, 16384), (44100, None, 16384), (96000, None, 32768), (8000, None, 2048),
     (48000, 10 * 48000, 16384), (48000, 48000, 8192), (48000, 300, 64)],
)
def test_default_nperseg(fs, n, expected):
    nperseg = default_nperseg(fs, n)
    assert nperseg == expected
    if n is not None:
        assert n >= (8 + 1) * nperseg // 2 or nperseg == 64


def test_relative_response_errors(noise):
    with pytest.raises(AudioError, match="too short"):
        relative_response(noise[:50], noise[:50], fs=FS)
    with pytest.raises(AudioError, match="too short for nperseg"):
        relative_response(noise[:5000], noise[:5000], fs=FS, nperseg=8192)
    with pytest.raises(ParameterError, match="nperseg must be >= 64"):
        relative_response(noise, noise, fs=FS, nperseg=16)
    with pytest.raises(ParameterError, match="integer_delay must be an integer"):
        relative_response(noise, noise, fs=FS, integer_delay=2.5)
    y = np.concatenate([np.zeros(N // 2), noise[: N // 2]])
    with pytest.raises(AudioError, match="silent over their common range"):
        relative_response(noise, y, fs=FS, integer_delay=-(N // 2) - 10)


# --------------------------------------------------------------------------------------------------
# fit_weights
# --------------------------------------------------------------------------------------------------
def test_fit_weights_formula():
    f = np.linspace(0, FS / 2, 101)
    H = 0.5 * np.exp(1j * f / 1000)
    coh = np.linspace(1, 0.5, 101)
    psd = 1 + f / 1000
    w = fit_weights(f, H, coh, psd)
    assert w[0] == 0 and np.all(w[f > 0.95 * FS / 2] == 0)
    assert w.max() == pytest.approx(1.0)
    inside = (f > 0) & (f <= 0.95 * FS / 2)
    ref = (0.5 * coh * psd)[inside]
    np.testing.assert_allclose(w[inside], ref / ref.max(), rtol=1e-12)
    # explicit fs that differs from 2 * freqs[-1] moves the cut-off
    w2 = fit_weights(f, H, coh, psd, fs=2 * FS)
    assert np.all(w2[1:] > 0)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones(4), np.ones(4), np.ones(3), np.ones(4)), "same length"),
        ((np.ones(4), np.ones(4), np.ones(4), -np.ones(4)), "non-negative"),
        ((np.arange(4.0), np.ones(4), np.full(4, np.nan), np.ones(4)), "NaN"),
    ],
)
def test_fit_weights_errors(args, match):
    with pytest.raises(ParameterError, match=match):
        fit_weights(*args)


def test_fit_weights_without_coherent_energy_is_an_audio_error():
    with pytest.raises(AudioError, match="all fitting weights are zero.*per channel"):
        fit_weights(np.arange(4.0), np.zeros(4), np.ones(4), np.ones(4))


# --------------------------------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------------------------------
def test_estimate_delay_polarity_and_response(noise):
    d = 57.3
    y = -0.7 * frac_delay(noise, d)
    est = estimate(noise, y, fs=FS)
    assert isinstance(est, Estimate)
    assert abs(est.delay_samples - d) < 0.05
    assert est.polarity == -1 and est.gcc_peak < -0.9
    assert est.integer_delay == 57
    # H is for the integer-shifted pair: polarity, gain and the residual 0.3-sample delay remain
    H_expected = -0.7 * np.exp(-2j * np.pi * est.freqs * (d - 57) / FS)
    good = est.weights > 0.05
    assert good.sum() > 0.5 * est.freqs.size
    np.testing.assert_allclose(est.H[good], H_expected[good], atol=0.01)
    assert est.weights.max() == pytest.approx(1.0) and est.weights[0] == 0
    np.testing.assert_allclose(np.angle(est.H), est.target_phase)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.polarity = 1


def test_estimate_allpass_target(noise):
    # dispersive target: a 2nd-order allpass after a 20-sample latency
    R, theta = 0.9, 2 * np.pi * 1500 / FS
    a = np.array([1, -2 * R * np.cos(theta), R**2])
    b = a[::-1]
    y = np.concatenate([np.zeros(20), signal.lfilter(b, a, noise)])
    est = estimate(noise, y, fs=FS, nperseg=4096)
    assert est.polarity == 1
    assert 19 <= est.integer_delay <= 30
    _, H_true = signal.freqz(b, a, worN=est.freqs, fs=FS)
    H_true *= np.exp(-2j * np.pi * est.freqs * (20 - est.integer_delay) / FS)
    good = est.coherence > 0.99
    assert good.mean() > 0.8
    np.testing.assert_allclose(est.H[good], H_true[good], atol=0.03)
    np.testing.assert_allclose(np.abs(est.H[good]), 1, atol=0.03)


def test_estimate_validates(noise):
    with pytest.raises(ParameterError, match="fs must be"):
        estimate(noise, noise, fs=-1)
    with pytest.raises(AudioError, match="silent"):
        estimate(noise, np.zeros(10), fs=FS)


@pytest.mark.parametrize("x_shape, y_shape, nperseg", [((4000,), (4000,), 256), ((4000,), (2, 4000), 255),
                                                        ((2, 3001), (2, 3001), 512)])
def test_fast_pooled_spectra_equal_scipy_welch_and_csd(rng, x_shape, y_shape, nperseg):
    from apfdsp.estimate import _fast_pooled_spectra

    x, y = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    kw = dict(fs=FS, window="hann", nperseg=nperseg, noverlap=nperseg // 2, detrend=False, axis=-1)
    shape = np.broadcast_shapes(x.shape, y.shape)
    xb, yb = np.broadcast_to(x, shape), np.broadcast_to(y, shape)
    expected = (signal.csd(xb, yb, **kw)[0], signal.csd(xb, yb, **kw)[1], signal.welch(xb, **kw)[1],
                signal.welch(yb, **kw)[1])
    got = _fast_pooled_spectra(x, y, fs=FS, nperseg=nperseg)
    np.testing.assert_allclose(got[0], expected[0])
    for g, e in zip(got[1:], expected[1:]):
        e = e.reshape(-1, e.shape[-1]).sum(axis=0)
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12 * np.abs(e).max())
