"""The automatic order (``n_sections=None``) of `align` and `fit_audio`, on allpass effects built with
scipy.signal (allpass combs, a Linkwitz-Riley crossover sum, a chain of first-order allpasses), and
the paper's Surveyor cascade at 192 kHz with the default parameter ranges.

Longer measurements: ``benchmarks/allpass_chains.py``.
"""

import warnings

import numpy as np
import pytest
from scipy import signal

from apfdsp import pretrained
from apfdsp.align import align
from apfdsp.fit import equation_error_phase_loss
from apfdsp.metrics import weighted_phase_error
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate
from apfdsp.designs import time_allpass_probe_db
from apfdsp.fit_audio import MAX_SECTIONS, SECTION_RUNGS, _flat_rungs, _high_rung, _frequency_probe, fit_audio, more_sections
from apfdsp.metrics import null_depth_db

FS = 48000


def allpass_comb(delay, gain=0.6):
    b = np.zeros(delay + 1)
    b[0], b[-1] = gain, 1.0
    return b, b[::-1].copy()


def lr4_sum(fc, fs=FS):
    low = signal.butter(2, fc, fs=fs)
    high = signal.butter(2, fc, btype="high", fs=fs)
    return (np.polyadd(np.polymul(low[0], low[0]), np.polymul(high[0], high[0])), np.polymul(low[1], low[1]))


def first_order_sections(n=12, lo=40.0, hi=16000.0, fs=FS):
    """SOS of a chain of n first-order allpasses (break frequencies log-spaced), one section each: an
    exact allpass in floating point (the expanded 12th-order polynomial is not, near z = 1)."""
    t = np.tan(np.pi * np.geomspace(lo, hi, n) / fs)
    c = (t - 1.0) / (t + 1.0)
    return np.column_stack([c, np.ones(n), np.zeros(n), np.ones(n), c, np.zeros(n)])


def broadband_null_db(x, y):
    """One gain for the whole signal: 10 log10 min_g |y - g x|^2 / |y|^2."""
    gain = np.dot(x, y) / np.dot(x, x)
    return 10 * np.log10(max(np.sum((y - gain * x) ** 2) / np.sum(y**2), 1e-20))


def n_filter_sections(cascade):
    return sum(1 for c in cascade if hasattr(c, "anticausal"))


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(3).standard_normal(FS)


# -- the probe -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [5, 23, 40])
def test_probe_is_exact_from_the_order_of_the_comb_on(delay):
    """An allpass comb of M samples is an allpass of order M: the equation-error probe of order >= M is
    exact on its scipy.signal.freqz response (at the shift that takes out the surplus order's delay),
    and far from it below order M."""
    f = np.linspace(5.0, 23995.0, 6000)
    _, h = signal.freqz(*allpass_comb(delay), worN=f, fs=FS)
    weights = np.ones_like(f)
    assert equation_error_phase_loss(f, h, fs=FS, weights=weights, order=delay) < 1e-20
    assert equation_error_phase_loss(f, h, fs=FS, weights=weights, order=delay + 9, shifts=(0, -9)) < 1e-20
    assert equation_error_phase_loss(f, h, fs=FS, weights=weights, order=delay - 1, shifts=(0, -1, 1)) > 1e-2


# -- align ---------------------------------------------------------------------------------------------


def test_align_gives_an_allpass_comb_the_order_it_needs(noise):
    """A 23-sample allpass comb (order 23, beyond the 17 of 8 sections): the default reaches the exact
    phase (null and broadband null far below -60 dB) with at least 12 sections; a fixed n_sections=8
    cannot."""
    wet = signal.lfilter(*allpass_comb(23), noise)
    auto = align(noise, wet, fs=FS)
    assert auto.method == "allpass"
    assert n_filter_sections(auto.cascade) >= 12
    assert auto.after["null_db"] < -60
    assert broadband_null_db(auto.aligned, wet) < -60
    assert auto.settings["n_sections"] is None
    fixed = align(noise, wet, fs=FS, n_sections=8)
    assert fixed.after["null_db"] > auto.after["null_db"] + 20


@pytest.mark.parametrize("name", ["LR4 sum 1 kHz", "LR4 sum 120 Hz", "12 first-order allpasses"])
def test_align_nulls_allpass_chains_below_60_db(noise, name):
    """Linkwitz-Riley crossover sums and a chain of 12 first-order allpasses (break frequencies
    40 Hz - 16 kHz) built with scipy: the default align nulls them below -60 dB (their perfect-phase
    floor is the numerical floor), also with one gain for the whole signal."""
    if name.startswith("LR4"):
        b, a = lr4_sum(1000.0 if "1 kHz" in name else 120.0)
    else:
        b, a = np.ones(1), np.ones(1)
        for fc in np.geomspace(40.0, 16000.0, 12):
            t = np.tan(np.pi * fc / FS)
            c = (t - 1.0) / (t + 1.0)
            b, a = np.polymul(b, [c, 1.0]), np.polymul(a, [1.0, c])
    wet = signal.lfilter(b, a, noise)
    result = align(noise, wet, fs=FS)
    assert result.after["null_db"] < -60
    assert broadband_null_db(result.aligned, wet) < -50
    assert null_depth_db(wet, wet, fs=FS) < -150  # the floor: an allpass loses nothing to its phase


def test_align_on_a_filter_with_a_magnitude_response_keeps_the_first_fit(noise):
    """A 2nd-order Butterworth low-pass (not an allpass, few sections suffice): the automatic order
    changes nothing, the model is the one of a fixed n_sections=8."""
    wet = signal.sosfilt(signal.butter(2, 2000.0, fs=FS, output="sos"), noise)
    auto, fixed = align(noise, wet, fs=FS), align(noise, wet, fs=FS, n_sections=8)
    assert auto.after["null_db"] == fixed.after["null_db"]
    np.testing.assert_array_equal(auto.cascade.sos, fixed.cascade.sos)


@pytest.mark.parametrize("material", ["music", "noise"])
def test_align_nulls_a_chain_of_first_order_sections_by_default(material):
    """12 first-order allpasses (40 Hz - 16 kHz) run as sections by scipy: 1 s of the demo's music or of
    white noise. The Welch estimate misses the 40 Hz sections' long decay (-34 dB on music and -65 dB on
    noise with the coherence gate), the time-domain design on the samples does not: the default align
    gets below -60 dB on music and to the exact phase on noise (the ladder climbs past 3 sections, which
    are worse than the first fit, to 8)."""
    dry = demo_dry(fs=FS, duration_s=1.0) if material == "music" else np.random.default_rng(4).standard_normal(FS)
    wet = signal.sosfilt(first_order_sections(), dry)
    result = align(dry, wet, fs=FS)
    assert result.method == "allpass"
    assert n_filter_sections(result.cascade) >= 12
    assert result.after["null_db"] < (-60 if material == "music" else -100)
    assert broadband_null_db(result.aligned, wet) < -50


def probe_db(dry, wet):
    """The time-domain allpass probe at the orders of the rungs 3, 8 and 16 (8, 18 and 34)."""
    return time_allpass_probe_db(dry[None, :], wet[None, :], estimate(dry, wet, fs=FS), (8, 18, 34))


def _estimate_and_first_fit(dry, wet):
    """The estimate align uses and align's first (frequency-domain) fit of 8 sections."""
    return estimate(dry, wet, fs=FS), align(dry, wet, fs=FS, n_sections=8).cascade


def test_allpass_probe_is_exact_from_the_order_of_the_allpass():
    """The time-domain allpass probe (docs/maths.md, section 9.9) of a 12th-order allpass chain: at the
    numerical floor (below -100 dB) from the rung whose order covers 12 (8 sections: order 18), not at order 8 (3
    sections); a Linkwitz-Riley sum (order 4) is exact from the first rung, and the ladder stops there."""
    dry = np.random.default_rng(6).standard_normal(FS // 2)
    chain = signal.sosfilt(first_order_sections(), dry)
    probe = probe_db(dry, chain)
    assert probe[0] > -100 and probe[1] < -100 and probe[2] < -100
    lr4 = signal.lfilter(*lr4_sum(1000.0), dry)
    est = estimate(dry, lr4, fs=FS)
    assert np.all(probe_db(dry, lr4) < -100)
    assert _flat_rungs(dry, lr4, est, first_null=-40.0) == SECTION_RUNGS[:1]
    assert _flat_rungs(dry, chain, estimate(dry, chain, fs=FS), first_null=-40.0) == SECTION_RUNGS[:2]


@pytest.mark.parametrize("case", ["tremolo", "lowpass sweep", "noisy allpass"])
def test_allpass_probe_rejects_what_no_allpass_explains(case):
    """A gain that moves over time (flat magnitude, not LTI), a low-pass on a sine sweep (a predictable
    wet: with a free gain, linear prediction alone would null it) and an allpass with noise 30 dB down
    on the wet: the probe stays near their own error level, so no time-domain design is tried; the
    exact allpass of the same dry is far below it."""
    t = np.arange(FS) / FS
    if case == "lowpass sweep":
        dry = signal.chirp(t, 20.0, t[-1], 20000.0, method="logarithmic")
        wet = signal.sosfilt(signal.butter(2, 2000.0, fs=FS, output="sos"), dry)
    else:
        dry = np.random.default_rng(7).standard_normal(FS)
        wet = signal.sosfilt(first_order_sections(4, 100.0, 4000.0), dry)
        if case == "tremolo":
            wet = wet * (1.0 + 0.1 * np.sin(2 * np.pi * 3.0 * t))
        else:
            wet = wet + 10 ** (-30 / 20) * np.std(wet) * np.random.default_rng(8).standard_normal(FS)
    assert np.min(probe_db(dry, wet)) > -40
    exact = signal.sosfilt(first_order_sections(4, 100.0, 4000.0), dry)
    assert np.max(probe_db(dry, exact)) < -100


def test_more_sections_keeps_the_first_fit_of_a_flat_gain_that_moves():
    """A tremolo on an allpass (flat magnitude, coherence below 1): the probe is not below the first
    fit's null by 10 dB, so more_sections returns the first fit itself, without a design."""
    t = np.arange(FS) / FS
    dry = np.random.default_rng(9).standard_normal(FS)
    wet = signal.sosfilt(first_order_sections(4, 100.0, 4000.0), dry) * (1.0 + 0.1 * np.sin(2 * np.pi * 3.0 * t))
    est, first = _estimate_and_first_fit(dry, wet)
    assert more_sections(dry, wet, est, first, fs=FS) is first


# -- fit_audio -----------------------------------------------------------------------------------------


def test_fit_audio_ladder_adds_rungs_while_the_null_deepens():
    """A chain of 12 first-order allpasses at 16 kHz (order 12: more than the 10 of the first rung):
    the automatic order goes on to the next rung and reaches the exact phase; the first rung alone
    (n_sections=4) cannot."""
    fs = 16000
    dry = np.random.default_rng(5).standard_normal(fs // 2)
    b, a = np.ones(1), np.ones(1)
    for fc in np.geomspace(100.0, 6000.0, 12):
        t = np.tan(np.pi * fc / fs)
        c = (t - 1.0) / (t + 1.0)
        b, a = np.polymul(b, [c, 1.0]), np.polymul(a, [1.0, c])
    wet = signal.lfilter(b, a, dry)
    auto = fit_audio(dry, wet, fs=fs, n_iter=0)
    assert auto.settings["n_sections"] is None
    assert auto.settings["n_sections_used"] in SECTION_RUNGS[1:]
    assert null_depth_db(auto.cascade.apply(dry), wet, fs=fs) < -80
    first = fit_audio(dry, wet, fs=fs, n_iter=0, n_sections=SECTION_RUNGS[0])
    assert null_depth_db(first.cascade.apply(dry), wet, fs=fs) > -60
    assert MAX_SECTIONS == SECTION_RUNGS[-1] >= 32


# -- the paper's Surveyor cascade at 192 kHz, default settings ------------------------------------------


@pytest.fixture(scope="module")
def surveyor_sweep():
    """2 s log sweep 20 Hz - 20 kHz plus white noise at 192 kHz, through the Surveyor model."""
    truth = pretrained.load("surveyor-192k")
    t = np.arange(2 * int(truth.fs)) / truth.fs
    dry = signal.chirp(t, 20.0, t[-1], 20000.0, method="logarithmic")
    dry = dry + 0.5 * np.random.default_rng(0).standard_normal(t.size)
    return dry, truth(dry), truth


@pytest.mark.parametrize("route", ["align", "fit_audio"])
def test_surveyor_at_192k_with_defaults_below_001_rad(surveyor_sweep, route):
    """The default ranges hold the Surveyor's poles (R up to 0.99923 in the warped variable, a
    first-order coefficient of 0.9995): default align and default fit_audio both follow its phase to
    better than 0.01 rad wrapped RMS (512 log-spaced bins, 20 Hz - 20 kHz). With the old per-sample
    limit of 0.999 the defaults reached 0.050 and 0.28 rad."""
    dry, wet, truth = surveyor_sweep
    fs = truth.fs
    result = align(dry, wet, fs=fs) if route == "align" else fit_audio(dry, wet, fs=fs)
    f = np.geomspace(20.0, 20000.0, 512)
    assert weighted_phase_error(result.cascade.phase(f), truth.phase(f)) < 0.01


def test_align_on_a_band_limited_sweep_at_192k_survives_singular_designs():
    """A pure 2 s log sweep 20 Hz - 20 kHz at 192 kHz with a faded end (nothing above 20 kHz) through the
    Surveyor: some time-domain designs of the automatic order meet singular systems (their solves
    overflowed, and align raised LinAlgError); they are skipped, and the model nulls the pair deeply."""
    truth = pretrained.load("surveyor-192k")
    fs, duration = truth.fs, 2.0
    t = np.arange(int(duration * fs)) / fs
    rate = np.log(20000.0 / 20.0)
    sweep = 0.5 * np.sin(2 * np.pi * 20.0 * duration / rate * (np.exp(t * rate / duration) - 1))
    fade = int(0.01 * fs)
    sweep[-fade:] *= np.hanning(2 * fade)[fade:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no overflow warnings on the way
        result = align(sweep, truth(sweep), fs=fs)
    assert np.all(np.isfinite(result.cascade.sos))
    assert result.method == "allpass" and result.after["null_db"] < -60


@pytest.mark.parametrize(("delay", "rung"), [(23, SECTION_RUNGS[-2]), (40, MAX_SECTIONS)])
def test_a_high_order_design_gets_the_lowest_rung_that_is_exact(delay, rung):
    """An allpass comb of M samples needs order M: 16 sections (order 33) carry M = 23, M = 40 needs 32
    (the design's cost grows with its order, so the smaller rung is used where it suffices)."""
    f = np.linspace(20.0, 23000.0, 2048)
    b = np.r_[0.6, np.zeros(delay - 1), 1.0]
    _, h = signal.freqz(b, b[::-1], worN=f, fs=48000)
    weights = np.ones_like(f)
    top = _frequency_probe(f, h, weights, 48000, MAX_SECTIONS)
    assert top < 1e-12
    assert _high_rung(f, h, weights, 48000, top) == rung
