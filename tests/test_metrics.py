"""Tests of apfdsp.metrics: level-equalised mix ratio, mix loss, null depth and the other alignment metrics."""

import warnings

import numpy as np
import pytest
from scipy import signal

from apfdsp.estimate import gcc_phat
from apfdsp.exceptions import AudioError, ParameterError
from apfdsp.metrics import (
    broadband_null_db,
    broadband_null_from_sums,
    energy_sums,
    DB_FLOOR,
    mix_loss_db,
    mix_ratio,
    mix_report,
    normalized_xcorr,
    null_depth_db,
    residual_delay,
    stft_settings,
    weighted_phase_error,
)

FS = 48000
N = 2**16


@pytest.fixture
def rng():
    return np.random.default_rng(440)


@pytest.fixture
def noise(rng):
    return rng.standard_normal(N)


def phase_shift(x, theta):
    """Shift every frequency of x by the constant phase -theta (Hilbert transform, circular)."""
    return np.real(signal.hilbert(x) * np.exp(-1j * theta))


def frac_delay(x, d):
    n = x.shape[-1]
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * np.fft.rfftfreq(n) * d), n)


EQ_FIR = signal.firwin2(63, [0, 200, 1000, 5000, 12000, 24000], [0.5, 1, 2, 1, 0.7, 0.7], fs=FS)


@pytest.mark.parametrize(
    "fs, expected",
    [(48000, (2048, 512)), (44100, (2048, 512)), (96000, (4096, 1024)), (192000, (8192, 2048)),
     (16000, (512, 128)), (8000, (256, 64)), (1000, (256, 64))],
)
def test_stft_settings(fs, expected):
    assert stft_settings(fs) == expected


def test_stft_settings_rejects_bad_fs():
    with pytest.raises(ParameterError, match="fs must be"):
        stft_settings(-48000)


def test_identical_and_gain_give_perfect_mix(noise):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or log10(0) warnings
        for y in (noise, 0.3 * noise):
            assert mix_ratio(noise, y, fs=FS) == pytest.approx(1.0, abs=1e-12)
            assert mix_loss_db(noise, y, fs=FS) == pytest.approx(0.0, abs=1e-10)
            null = null_depth_db(noise, y, fs=FS)
            assert DB_FLOOR <= null <= -150


def test_short_clips_are_zero_padded(noise):
    # shorter than half an STFT window: still defined, and exact for identical / inverted clips
    clip = noise[:300]
    assert mix_ratio(clip, clip, fs=FS) == pytest.approx(1.0, abs=1e-12)
    assert mix_ratio(clip, -clip, fs=FS) == pytest.approx(0.0, abs=1e-12)


def test_polarity_flip(noise):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mix_ratio(noise, -0.5 * noise, fs=FS) == pytest.approx(0.0, abs=1e-12)
        assert null_depth_db(noise, -noise, fs=FS) == pytest.approx(0.0, abs=1e-10)
        assert mix_loss_db(noise, -noise, fs=FS) == DB_FLOOR  # -inf is clipped to the floor


def test_zero_phase_eq_does_not_change_r(noise):
    y = 0.3 * signal.filtfilt(EQ_FIR, [1.0], noise)  # symmetric FIR, applied forward-backward
    assert mix_loss_db(noise, y, fs=FS) > -0.001
    assert null_depth_db(noise, y, fs=FS) < -40
    # the same magnitude with linear phase (latency 31 samples) is seen at once
    y_causal = 0.3 * signal.lfilter(np.convolve(EQ_FIR, EQ_FIR), [1.0], noise)
    assert null_depth_db(noise, y_causal, fs=FS) > -20


@pytest.mark.parametrize("theta", [0.02, 0.06, 0.2, 1.0, np.pi / 2])
def test_constant_phase_error_matches_closed_form(noise, theta):
    # every bin differs by theta: r = (1 + cos theta) / 2, null = 10 log10((1 - cos theta) / 2) ~ theta^2 / 4
    y = phase_shift(noise, theta)
    assert mix_ratio(noise, y, fs=FS) == pytest.approx((1 + np.cos(theta)) / 2, abs=1e-3)
    null_expected = 10 * np.log10((1 - np.cos(theta)) / 2)
    assert null_depth_db(noise, y, fs=FS) == pytest.approx(null_expected, abs=0.2)


def test_random_phase_is_minus_3_db(noise, rng):
    expected = 10 * np.log10(0.5)
    # an unrelated signal, and the same magnitude spectrum with random phases
    spectrum = np.abs(np.fft.rfft(noise)) * np.exp(2j * np.pi * rng.random(N // 2 + 1))
    for y in (rng.standard_normal(N), np.fft.irfft(spectrum, N)):
        assert mix_loss_db(noise, y, fs=FS) == pytest.approx(expected, abs=0.1)
        assert null_depth_db(noise, y, fs=FS) == pytest.approx(expected, abs=0.1)


def test_lengths_differ_compare_common_part(noise, rng):
    y = phase_shift(noise, 0.3)
    longer = np.concatenate([y, rng.standard_normal(5000)])
    assert mix_ratio(noise, longer, fs=FS) == mix_ratio(noise, y, fs=FS)
    assert mix_ratio(noise[:40000], y, fs=FS) == mix_ratio(noise[:40000], y[:40000], fs=FS)


def test_multichannel_sums_over_channels_and_broadcasts(noise, rng):
    other = rng.standard_normal(N)
    stereo_x = np.stack([noise, other])
    # channel 0 in phase, channel 1 inverted, equal cross energy: r = 1/2
    assert mix_ratio(stereo_x, np.stack([noise, -other]), fs=FS) == pytest.approx(0.5, abs=0.01)
    # a mono y broadcasts against a stereo x: same as stacking it
    y = phase_shift(noise, 0.4)
    assert mix_ratio(stereo_x, y, fs=FS) == pytest.approx(mix_ratio(stereo_x, np.stack([y, y]), fs=FS), rel=1e-12)
    with pytest.raises(ParameterError, match="do not broadcast"):
        mix_ratio(stereo_x, np.stack([y, y, y]), fs=FS)


def test_mix_ratio_errors(noise):
    with pytest.raises(AudioError, match="silent"):
        mix_ratio(noise, np.zeros(N), fs=FS)
    with pytest.raises(AudioError, match="NaN"):
        null_depth_db(noise, np.full(N, np.nan), fs=FS)
    with pytest.raises(ParameterError, match="fs must be"):
        mix_loss_db(noise, noise, fs="48k")
    with pytest.raises(TypeError, match="real numeric"):
        mix_ratio(noise, noise.astype(complex), fs=FS)
    x = np.zeros(20000)
    x[0] = 1.0
    y = np.zeros(20000)
    y[-1] = 1.0  # far apart in time: no common STFT frame
    with pytest.raises(AudioError, match="share no energy"):
        mix_ratio(x, y, fs=FS)


def test_normalized_xcorr(noise, rng):
    assert normalized_xcorr(noise, -2 * noise) == pytest.approx(-1.0, abs=1e-12)
    t = np.arange(N) / FS
    assert abs(normalized_xcorr(np.sin(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 1000 * t))) < 1e-3
    assert abs(normalized_xcorr(noise, rng.standard_normal(N))) < 0.02
    # broadcast and common length
    stereo = np.stack([noise, -noise])
    assert normalized_xcorr(stereo, noise[:1000]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(AudioError, match="silent over the common length"):
        normalized_xcorr(np.r_[np.zeros(100), 1.0], np.r_[1.0, np.zeros(49)])


@pytest.mark.parametrize("d", [-3.3, 0.0, 2.4])
def test_residual_delay(noise, d):
    assert residual_delay(noise, frac_delay(noise, d), fs=FS) == pytest.approx(d, abs=0.05)


@pytest.mark.parametrize("d", [-7.25, -0.4, 0.0, 0.3, 5.5, 60.0])
@pytest.mark.parametrize("layout", ["mono", "stereo", "mono wet"])
def test_residual_delay_from_the_stft_agrees_with_whole_signal_gcc(noise, rng, d, layout):
    """Second route: the residual delay from the metric STFT's sums against GCC on the whole signals."""
    x = noise if layout == "mono" else np.stack([noise, rng.standard_normal(N)])
    y = frac_delay(x, d) + 0.05 * rng.standard_normal(x.shape)
    if layout == "mono wet":
        y = y[0]
    stft_route = residual_delay(x, y, fs=FS)
    assert stft_route == pytest.approx(gcc_phat(x, y, fs=FS, max_delay_s=0.01)[0], abs=0.02)
    assert stft_route == pytest.approx(d, abs=0.05)
    assert mix_report(x, y, fs=FS)["residual_delay_samples"] == stft_route


def test_residual_delay_without_shared_energy_is_none(rng):
    x, y = np.zeros(N), np.zeros(N)
    x[: N // 4], y[-N // 4 :] = rng.standard_normal((2, N // 4))  # never sounding at the same time
    assert residual_delay(x, y, fs=FS) is None


def test_residual_delay_search_range(noise):
    y = np.concatenate([np.zeros(1000), noise])
    assert abs(residual_delay(noise, y, fs=FS)) <= 0.01 * FS + 1
    assert residual_delay(noise, y, fs=FS, max_delay_s=0.05) == pytest.approx(1000, abs=0.05)
    with pytest.raises(ParameterError, match="max_delay_s"):
        residual_delay(noise, y, fs=FS, max_delay_s=-1)


def test_weighted_phase_error_wraps_and_weights():
    a = np.array([0.1, 2 * np.pi + 0.1, -4 * np.pi - 0.1, 3.0])
    b = np.zeros(4)
    assert weighted_phase_error(a, b, weights=[1, 1, 1, 0]) == pytest.approx(0.1, abs=1e-12)
    assert weighted_phase_error(a[:3], b[:3]) == pytest.approx(0.1, abs=1e-12)
    # weighted mean of squares
    expected = np.sqrt((1 * 0.1**2 + 3 * 3.0**2) / 4)
    assert weighted_phase_error([0.1, 3.0], 0.0, weights=[1, 3]) == pytest.approx(expected, rel=1e-12)
    # wrap to (-pi, pi]: a difference of -pi counts as pi, never more
    assert weighted_phase_error(-np.pi, 0.0) == pytest.approx(np.pi, rel=1e-12)
    assert weighted_phase_error(np.linspace(-20, 20, 101), 0.0) <= np.pi
    # a tiny error keeps its relative precision (the error of an exact fit is ~1e-9 rad)
    assert weighted_phase_error(1e-12, 0.0) == pytest.approx(1e-12, rel=1e-9)
    assert weighted_phase_error(2 * np.pi + 3e-10, 0.0) == pytest.approx(3e-10, rel=1e-5)


def test_weighted_phase_error_relates_to_null_depth(noise):
    # docs/maths.md section 10.1: -20 / -30 / -40 dB null ~ 0.2 / 0.06 / 0.02 rad weighted RMS phase error
    for theta, null_db in ((0.2, -20), (0.06, -30), (0.02, -40)):
        assert weighted_phase_error(theta, 0.0) == pytest.approx(theta)
        assert null_depth_db(noise, phase_shift(noise, theta), fs=FS) == pytest.approx(null_db, abs=0.5)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([0.0, 1.0], [0.0]), {"weights": [-1.0, 1.0]}, "non-negative"),
        (([0.0, 1.0], [0.0]), {"weights": [0.0, 0.0]}, "not all zero"),
        (([0.0, np.nan], [0.0]), {}, "finite"),
        (([0.0, 1.0], [0.0, 1.0, 2.0]), {}, "broadcastable"),
        (([], []), {}, "empty"),
    ],
)
def test_weighted_phase_error_errors(args, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        weighted_phase_error(*args, **kwargs)


def test_mix_report_consistent(noise):
    y = 0.5 * frac_delay(phase_shift(noise, 0.2), 1.5)
    rep = mix_report(noise, y, fs=FS)
    assert set(rep) == {"mix_ratio", "mix_loss_db", "null_db", "broadband_null_db", "ncc", "residual_delay_samples"}
    assert rep["broadband_null_db"] == broadband_null_db(noise, y)
    assert all(isinstance(v, float) for v in rep.values())
    assert rep["mix_ratio"] == mix_ratio(noise, y, fs=FS)
    assert rep["mix_loss_db"] == mix_loss_db(noise, y, fs=FS)
    assert rep["null_db"] == null_depth_db(noise, y, fs=FS)
    assert rep["ncc"] == normalized_xcorr(noise, y)
    assert rep["residual_delay_samples"] == residual_delay(noise, y, fs=FS)
    # a 1.5-sample delay with a 0.2 rad phase shift: misaligned enough that the null is shallow
    assert -10 < rep["null_db"] < -1


@pytest.mark.parametrize("fs", [48000, 44100, 8000])
@pytest.mark.parametrize("lead", [(), (2,), (3, 1)], ids=["mono", "stereo", "3x1"])
def test_metric_stft_equals_shorttimefft(fs, lead, rng):
    """The metrics' batched STFT has ShortTimeFFT's frames and values (it only avoids its frame loop)."""
    from scipy import signal as sps

    from apfdsp.metrics import _metric_stft

    nfft, hop = stft_settings(fs)
    for n in (nfft // 2, nfft // 2 + 1, nfft, 3 * nfft + 17, 300 * hop + 5):
        x = rng.standard_normal(lead + (n,))
        ref = sps.ShortTimeFFT(sps.windows.hann(nfft, sym=False), hop, fs).stft(x, axis=-1)
        got = _metric_stft(x, fs)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_mixmeter_refuses_another_length(rng):
    from apfdsp.exceptions import ParameterError
    from apfdsp.metrics import MixMeter

    x = rng.standard_normal(8000)
    meter = MixMeter(x, n=8000, fs=FS)
    with pytest.raises(ParameterError, match="8000 samples, got 7000"):
        meter.null_db(x[:7000])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_residual_delay_checks_max_duration(noise, bad):
    from apfdsp.exceptions import ParameterError

    with pytest.raises(ParameterError, match="max_duration_s"):
        residual_delay(noise, noise, fs=FS, max_duration_s=bad)


# -- the broadband null (what a DAW polarity-flip-and-sum shows) ----------------------------------------------
def _lstsq_null_db(x, y):
    """Second route: the least-squares gain from numpy's solver, the residual level by brute force."""
    g = max(float(np.linalg.lstsq(x.reshape(-1, 1), y.reshape(-1), rcond=None)[0][0]), 0.0)
    return 10 * np.log10(np.sum((y - g * x) ** 2) / np.sum(y**2))


def test_broadband_null_matches_least_squares(noise, rng):
    b, a = signal.butter(4, 1000.0, "highpass", fs=FS)
    for y in (0.3 * noise + 0.1 * rng.standard_normal(noise.size), signal.lfilter(b, a, noise),
              2.0 * np.roll(noise, 1)):
        assert broadband_null_db(noise, y) == pytest.approx(_lstsq_null_db(noise, y), abs=1e-9)


def test_broadband_null_counts_tone_but_phase_only_does_not(noise):
    """A high-pass at 1 kHz: the phase-only null of the exactly aligned pair is perfect, the broadband
    null is not (the low end does not cancel), and the DAW null of the unfiltered dry is shallower still."""
    sos = signal.butter(2, 1000.0, "highpass", fs=FS, output="sos")
    wet = signal.sosfilt(sos, noise)
    assert null_depth_db(wet / 3, wet, fs=FS) <= -150
    assert broadband_null_db(wet / 3, wet) <= -150
    assert -12 < broadband_null_db(noise, wet) < -1  # what the flip-and-sum test gives unaligned
    assert broadband_null_db(noise, wet) > null_depth_db(noise, wet, fs=FS) - 100  # finite, in range


def test_broadband_null_inverted_and_silent(noise):
    assert broadband_null_db(-noise, noise) == 0.0
    assert broadband_null_db(np.zeros_like(noise), noise) == 0.0
    with pytest.raises(AudioError, match="silent"):
        broadband_null_db(noise, np.zeros_like(noise))


def test_broadband_null_sums_accumulate_over_blocks(noise, rng):
    """The sums of blocks add up to the sums of the whole; stereo shares one gain."""
    y = np.stack([0.5 * noise, np.roll(noise, 3)]) + 0.01 * rng.standard_normal((2, noise.size))
    x = noise
    whole = energy_sums(x, y)
    blocks = np.sum([energy_sums(x[i : i + 7000], y[:, i : i + 7000]) for i in range(0, noise.size, 7000)], axis=0)
    assert blocks == pytest.approx(whole, rel=1e-12)
    assert broadband_null_from_sums(*blocks) == pytest.approx(broadband_null_db(x, y), abs=1e-9)
    xb = np.broadcast_to(x, y.shape)
    assert broadband_null_db(x, y) == pytest.approx(_lstsq_null_db(xb, y), abs=1e-9)


@pytest.mark.parametrize("sums, error, match", [
    ((np.nan, 0.0, 1.0), ParameterError, "finite"),
    ((1.0, 0.0, -1.0), ParameterError, "non-negative"),
    ((1.0, 3.0, 1.0), ParameterError, "inconsistent"),
    (("a", 0.0, 1.0), ParameterError, "three numbers"),
    ((0.0, 0.0, 1.0), AudioError, "silent"),
])
def test_broadband_null_from_sums_errors(sums, error, match):
    with pytest.raises(error, match=match):
        broadband_null_from_sums(*sums)


def test_energy_sums_shape_error(noise):
    with pytest.raises(ParameterError, match="broadcast"):
        energy_sums(np.stack([noise] * 2), np.stack([noise] * 3))
