"""Tests of apfdsp.fit_audio: the differentiable cascade, the warm-up, gradients, fits and validation."""

from contextlib import nullcontext

import numpy as np
import pytest
from scipy import signal

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity, _shift
from apfdsp.exceptions import AudioError, ParameterError
from apfdsp.filters import allpass_section_sos
from apfdsp.align import fit_alignment
from apfdsp.fit_audio import (
    INITS,
    LOSSES,
    BASE_SECTIONS,
    AudioFitResult,
    _checked_arguments,
    _delay_polarity_baseline,
    LayoutFilter,
    _Objective,
    _result,
    _start,
    _train,
    delay_polarity_model,
    _layout_from_cascade,
    _loss_setup,
    _Segments,
    _Training,
    fit_audio,
    warmup_bound,
    warmup_samples,
)
from apfdsp.metrics import null_depth_db
from apfdsp.model import SinusoidalMLP, get_parameterization
from apfdsp import pretrained
from apfdsp.ranges import DEFAULT_RANGES, ParamRanges

FS = 16000  # short, low-rate audio keeps the fits fast


def _cells(structure, stretch=1):
    warp = (0.3, -0.2) if structure != "traditional" else (0.0, 0.0)
    return [Allpass2(0.9, 500.0, warp[0], stretch), Allpass2(0.5, 3000.0, warp[1], stretch),
            Allpass1(-0.4), Delay(7.3), Polarity(-1)]


def _layout(structure, stretch=1, cells=None):
    cascade = AllpassCascade(cells or _cells(structure, stretch), fs=FS)
    layout, t = _layout_from_cascade(cascade, structure=structure, stretch=stretch, ranges=DEFAULT_RANGES, fs=FS)
    return cascade, layout, t


def random_cascade(rng, n_sections=6, delay=7.3):
    """A known random cascade: R in [0.3, 0.9], fc log-uniform 50 Hz - 0.4 fs, plus a fractional delay."""
    cells = [Allpass2(rng.uniform(0.3, 0.9), float(np.exp(rng.uniform(np.log(50.0), np.log(0.4 * FS)))))
             for _ in range(n_sections)]
    return AllpassCascade(cells + [Delay(delay)], fs=FS)


# -- the differentiable cascade -------------------------------------------------------------------------


@pytest.mark.parametrize(("structure", "stretch"), [("traditional", 1), ("warped", 1), ("stretched", 3), ("stretched", 5)])
def test_filter_equals_cascade_apply(rng, structure, stretch):
    """Training filter + integer shift == AllpassCascade.apply (scipy sosfilt of the exported SOS)."""
    cascade, layout, t = _layout(structure, stretch)
    x = rng.standard_normal((2, 1001))
    y = _shift(LayoutFilter(layout)(t, x), layout.delay_shift)
    np.testing.assert_allclose(y, cascade.apply(x), atol=1e-12)
    # and the layout exports the same cells
    np.testing.assert_allclose(AllpassCascade(layout.cells(t), fs=FS).apply(x), cascade.apply(x), atol=1e-12)


@pytest.mark.parametrize("structure", ["traditional", "warped"])
def test_sos_rows_match_filters_module(structure):
    """The differentiable rows equal apfdsp.filters.allpass_section_sos (docs/maths.md section 2.2)."""
    cascade, layout, t = _layout(structure)
    rows2, rows1 = LayoutFilter(layout).sos(t)
    expected2 = np.concatenate([allpass_section_sos(c.den(FS), c.warp) for c in cascade if isinstance(c, Allpass2)])
    np.testing.assert_allclose(rows2, expected2, rtol=1e-12, atol=1e-14)
    assert np.all(rows2[:, 3] == 1.0) and np.all(rows1[:, 3] == 1.0)
    # first-order section, then the Thiran section of the 1.3-sample fractional part
    np.testing.assert_allclose(rows1[:, 0], [-0.4, (1 - 1.3) / (1 + 1.3)], rtol=1e-9)


def test_stretched_is_polyphase_of_warped(rng):
    """H_W(z^K) on x equals H_W(z) on each polyphase component (checked against lfilter in z^-K)."""
    _, layout, t = _layout("stretched", 4)
    rows2, _ = LayoutFilter(layout).sos(t)
    x = rng.standard_normal(999)
    y = LayoutFilter(layout)._stretched(rows2, x)
    expected = x
    for row in rows2:
        b = np.zeros(9)
        a = np.zeros(9)
        b[::4], a[::4] = row[:3], row[3:]
        expected = signal.lfilter(b, a, expected)
    np.testing.assert_allclose(y, expected, atol=1e-12)


# -- warm-up ----------------------------------------------------------------------------------------------


def test_warmup_samples_values():
    assert warmup_samples(0.0) == 0
    assert warmup_samples(0.5) == 10  # 0.5^10 < 1e-3 < 0.5^9
    assert warmup_samples(0.999) == 6905
    assert warmup_samples(0.9, stretch=5) == 5 * warmup_samples(0.9)
    assert warmup_samples(0.9, decay_db=120) == pytest.approx(2 * warmup_samples(0.9), abs=1)
    with pytest.raises(ParameterError, match="pole_radius"):
        warmup_samples(1.0)


def test_warmup_bound_from_radius_limits():
    assert warmup_bound(structure="traditional", fs=FS) == warmup_samples(DEFAULT_RANGES.radius_limit(FS))
    # the limit is a decay time (0.144 s): the same number of seconds at every rate, to a sample
    for fs in (44100, 192000):
        assert warmup_bound(structure="traditional", fs=fs) == pytest.approx(0.144 * fs, abs=1)
    # warping moves poles towards the unit circle: the bound grows a lot
    assert warmup_bound(structure="warped", fs=FS) > 30 * warmup_bound(structure="traditional", fs=FS)
    assert warmup_bound(structure="stretched", stretch=4, fs=FS) == 4 * warmup_bound(structure="warped", fs=FS)
    tight = ParamRanges(r_max=0.9, coef_max=0.5)
    assert warmup_bound(structure="traditional", ranges=tight) == warmup_samples(0.9)
    with pytest.raises(ParameterError, match="pass fs"):
        warmup_bound(structure="traditional")


def test_warmup_removes_the_startup_transient(rng):
    """Segments filtered from `warmup` samples before their start match continuous filtering to -60 dB."""
    cascade, layout, t = _layout("warped", cells=[Allpass2(0.98, 300.0, -0.5), Allpass1(0.9), Delay(3.5)])
    filt = LayoutFilter(layout)
    x = rng.standard_normal(20000)
    full = filt(t, x)
    warm = filt.warmup(t)
    _, poles, _ = signal.sos2zpk(cascade.sos)
    assert warm == warmup_samples(np.max(np.abs(poles))) > 500  # the warped pole is closer to |z| = 1
    segs = _Segments(x, full, 0, 1024)
    starts = np.array([8000, 12000, 15000])

    def error_db(warmup):
        xb, yb, skip = segs.batch(starts, warmup)
        out = filt(t, xb)[..., skip:]
        return 10 * np.log10(np.sum((out - yb) ** 2) / np.sum(yb**2))

    assert error_db(warm) < -60
    assert error_db(0) > -30  # the original's state reset: a transient in every segment
    # a warm-up reaching past the start of the audio filters from the start: exact
    xb, yb, skip = segs.batch(np.array([100, 5000]), 10**6)
    assert skip == 5000
    np.testing.assert_allclose(filt(t, xb)[..., skip:], yb, atol=1e-12)


# -- gradients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize(("structure", "stretch", "parameterization"), [
    ("warped", 1, "direct"),
    ("traditional", 1, "direct"),
    ("stretched", 3, "direct"),
    ("warped", 1, SinusoidalMLP(hidden=(6,), input_size=4)),
])
def test_check_grads_whole_loss(rng, check_grads, loss, structure, stretch, parameterization):
    """Loss of a mini-batch (parameterisation -> SOS -> sosfilt -> warm-up cut -> loss) vs finite differences."""
    cells = [Allpass2(0.7, 900.0, 0.2 if structure != "traditional" else 0.0, stretch), Allpass1(0.3),
             Delay(2.4), Polarity(-1)]
    _, layout, t = _layout(structure, stretch, cells=cells)
    param = get_parameterization(parameterization)
    params = param.init(t, rng=rng)
    options = {"fft_sizes": (32, 64)} if loss == "multi-resolution" else {"n_fft": 64} if loss == "sum-magnitude" else None
    loss_fn, _, _ = _loss_setup(loss, FS, options)
    x = rng.standard_normal((2, 150))
    y = rng.standard_normal((2, 100))
    filt = LayoutFilter(layout)

    def objective(p):
        return loss_fn(filt(param.forward(p), x)[..., 50:], y)

    check_grads(objective)(params)


# -- fits ------------------------------------------------------------------------------------------------


def test_training_from_log_spaced_start_recovers_one_section_and_delay(rng):
    """The training alone (log-spaced start, matched order) gives a deep null."""
    dry = rng.standard_normal(FS // 2)
    truth = AllpassCascade([Allpass2(0.85, 1200.0), Delay(9.0), Polarity(-1)], fs=FS)
    wet = truth(dry)
    result = fit_audio(dry, wet, fs=FS, n_sections=1, n_first_order=0, n_iter=100, lr=0.05, seed=1,
                       init="log-spaced")
    assert isinstance(result, AudioFitResult) and result.init == "log-spaced"
    assert result.polarity == -1 and result.method == "allpass"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -40
    assert result.loss < 1e-3 * result.start_loss


def test_random_six_sections_reach_minus_40_db_from_phase_fit(rng):
    """Audio through a known random 6-section cascade + fractional delay: -40 dB null or deeper.

    From the phase-fit start (the frequency-domain fit, refined on the audio).
    """
    truth = random_cascade(np.random.default_rng(0))
    dry = rng.standard_normal(FS)
    wet = truth(dry)
    result = fit_audio(dry, wet, fs=FS, init="phase-fit", structure="traditional", n_sections=6, n_iter=10,
                       phase_fit_options={"max_iter": 60})
    assert result.init == "phase-fit"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -40
    assert result.loss <= result.start_loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_start_random_six_sections_reach_minus_40_db(seed):
    """The issue's acceptance: audio through a known random 6-section cascade (+ a 7.3-sample delay),
    `fit_audio` with every default (8 sections, warped, 300 steps): a null of -40 dB or deeper.

    The log-spaced start (the default before the equation-error start) stays near -5 dB on these.
    """
    truth = random_cascade(np.random.default_rng(seed))
    dry = np.random.default_rng(100 + seed).standard_normal(FS)
    wet = truth(dry)
    result = fit_audio(dry, wet, fs=FS)
    assert result.init == "equation-error" and result.method == "allpass"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) <= -40
    assert result.settings["init"] == "default"


def test_anticausal_option_keeps_the_causal_exact_start():
    """anticausal=True only adds candidates: on a causal allpass target it is as deep as the default."""
    truth = random_cascade(np.random.default_rng(0))
    dry = np.random.default_rng(100).standard_normal(FS)
    wet = truth(dry)
    result = fit_audio(dry, wet, fs=FS, anticausal=True)
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) <= -100


def test_default_start_on_noisy_wet():
    """Noise on the wet (-30 dB): the start alone gets near the noise floor (truth: -39.5 dB)."""
    truth = random_cascade(np.random.default_rng(0))
    dry = np.random.default_rng(100).standard_normal(FS)
    wet = truth(dry) + 0.03 * np.random.default_rng(7).standard_normal(FS)
    result = fit_audio(dry, wet, fs=FS, n_sections=6, n_iter=0)
    assert result.init == "equation-error"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -30
    log_spaced = fit_audio(dry, wet, fs=FS, n_sections=6, n_iter=0, init="log-spaced")
    depth, log_spaced_depth = (null_depth_db(r.cascade.apply(dry), wet, fs=FS) for r in (result, log_spaced))
    assert depth < log_spaced_depth - 15


@pytest.mark.parametrize("case", ["wet leads", "stereo wet, two levels", "stereo dry", "traditional"])
def test_equation_error_start_is_exact(rng, case):
    """Negative delay, per-channel gains, multichannel dry, both structures: the start alone is exact."""
    dry = rng.standard_normal(FS // 2)
    effect = AllpassCascade([Allpass2(0.8, 700.0), Allpass2(0.6, 3000.0), Allpass1(-0.5)], fs=FS)
    options = {}
    if case == "wet leads":
        wet = np.concatenate([effect(dry)[4:], np.zeros(4)])
    elif case == "stereo wet, two levels":
        wet = np.stack([effect(dry), 0.5 * effect(dry)])
    elif case == "stereo dry":
        dry = np.stack([dry, np.roll(dry, 100)])
        wet = effect(dry)
    else:
        wet, options = 2.0 * effect(dry), {"structure": "traditional"}
    result = fit_audio(dry, wet, fs=FS, n_iter=0, **options)
    assert result.init == "equation-error"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -100
    if case == "wet leads":
        assert result.cascade.integer_delay == -4


def test_surveyor_sweep_default_start_as_deep_as_frequency_domain_fit():
    """The paper-style sweep through the Surveyor model (warped, poles at |z| = 0.99994, 192 kHz): the
    default start (warped equation-error designs) is at least as deep as the frequency-domain fit."""
    fs = 192000
    surveyor = pretrained.load("surveyor-192k")
    t = np.arange(fs // 4) / fs
    sweep = 0.5 * np.sin(2 * np.pi * 20.0 * 0.25 / np.log(1000.0) * (np.exp(t * np.log(1000.0) / 0.25) - 1))
    wet = surveyor(sweep)
    ranges = ParamRanges(r_max=0.9995, coef_max=0.9999)
    frequency_domain = fit_alignment(sweep, wet, fs=fs, n_sections=3, fit_options={"ranges": ranges}).cascade
    result = fit_audio(sweep, wet, fs=fs, n_sections=3, ranges=ranges, n_iter=0)
    assert result.init == "equation-error"
    depth = null_depth_db(result.cascade.apply(sweep), wet, fs=fs)
    assert depth <= null_depth_db(frequency_domain.apply(sweep), wet, fs=fs)
    assert depth < -60


def test_default_start_falls_back_to_log_spaced(rng):
    """The stretched structure has no equation-error start: the default is the log-spaced start."""
    dry = rng.standard_normal(4000)
    wet = AllpassCascade([Allpass2(0.6, 900.0), Delay(2.0)], fs=FS)(dry)
    result = fit_audio(dry, wet, fs=FS, structure="stretched", n_sections=1, n_iter=2)
    assert result.init == "log-spaced"
    with pytest.raises(ParameterError, match="equation-error"):
        fit_audio(dry, wet, fs=FS, structure="stretched", init="equation-error", n_iter=1)
    assert set(INITS) == {"default", "equation-error", "log-spaced", "phase-fit"}


def test_result_fields_and_history(rng):
    dry = rng.standard_normal(6000)
    wet = AllpassCascade([Allpass2(0.6, 2000.0), Delay(3.0)], fs=FS)(dry)
    result = fit_audio(dry, wet, fs=FS, n_sections=2, n_iter=12, batch_size=2, init="log-spaced")
    assert result.settings["trained"]
    assert result.loss_history.shape == (12,) and np.all(np.isfinite(result.loss_history))
    assert result.warmup.shape == (12,)
    assert result.eval_history[0, 0] == 0 and result.eval_history[-1, 0] == 12
    assert result.loss == pytest.approx(np.min(result.eval_history[:, 1])) or result.method == "delay+polarity"
    assert result.elapsed_s > 0 and result.settings["n_iter"] == 12
    assert isinstance(result.cascade, AllpassCascade) and result.cascade.fs == FS
    assert result.cascade.apply(dry).shape == dry.shape
    assert 2.5 < result.delay_samples < 8.0  # GCC-PHAT: biased upwards by the dispersion


def test_exact_start_is_not_trained(rng):
    """The default (equation-error) start is exact on an allpass target: Adam would only move it away."""
    dry = rng.standard_normal(6000)
    wet = AllpassCascade([Allpass2(0.6, 2000.0), Delay(3.0)], fs=FS)(dry)
    result = fit_audio(dry, wet, fs=FS, n_sections=2, n_iter=12, batch_size=2)
    assert not result.settings["trained"] and result.loss_history.shape == (0,)
    assert result.loss == result.start_loss and result.method == "allpass"
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -100


def test_deterministic_for_a_seed(rng):
    dry = rng.standard_normal(6000)
    wet = AllpassCascade([Allpass2(0.7, 800.0), Delay(4.5)], fs=FS)(dry)
    kwargs = dict(fs=FS, n_sections=2, n_iter=8, batch_size=2, segment_length=2048, init="log-spaced")
    first, second = fit_audio(dry, wet, seed=3, **kwargs), fit_audio(dry, wet, seed=3, **kwargs)
    assert first.cascade.to_dict() == second.cascade.to_dict()
    np.testing.assert_array_equal(first.loss_history, second.loss_history)
    other = fit_audio(dry, wet, seed=4, **kwargs)
    assert not np.array_equal(first.loss_history, other.loss_history)  # other mini-batches


def test_never_worse_than_delay_and_polarity(rng):
    """A pure delay + polarity target: the baseline wins over sections that cannot vanish."""
    dry = rng.standard_normal(8000)
    wet = -np.concatenate([np.zeros(6), dry[:-6]])
    result = fit_audio(dry, wet, fs=FS, n_sections=2, n_iter=5)
    assert result.method == "delay+polarity"
    assert [type(c) for c in result.cascade] == [Delay, Polarity]
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -60


def test_refines_a_given_cascade_and_multichannel(rng):
    dry = rng.standard_normal(8000)
    truth = AllpassCascade([Allpass2(0.8, 1000.0, 0.3), Delay(5.2)], fs=FS)
    wet = np.stack([truth(dry), 0.5 * truth(dry)])  # mono dry, stereo wet: one shared cascade
    start = AllpassCascade([Allpass2(0.75, 1100.0, 0.25), Delay(5.2)], fs=FS)
    result = fit_audio(dry, wet, fs=FS, init=start, n_iter=30, lr=0.02, loss="sum-magnitude")
    assert result.init == "cascade"
    assert result.loss < result.start_loss
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < null_depth_db(start.apply(dry), wet, fs=FS) - 10


# -- the parts of fit_audio ---------------------------------------------------------------------------------


def _setup(dry, wet, **options):
    arguments = dict(fs=FS, loss="mse", n_sections=1, n_first_order=0, structure="warped", stretch=5,
                     parameterization="direct", init="log-spaced", n_iter=20, lr=0.02, batch_size=2,
                     segment_length=None, warmup="auto", loss_options=None, ranges=DEFAULT_RANGES, max_delay_s=0.1,
                     clip=None, phase_fit_options=None, anticausal=False, seed=0, callback=None)
    arguments.update(options)
    return _checked_arguments(dry, wet, **arguments)


def test_checked_arguments_defaults_and_order(pair):
    dry, wet = pair
    setup = _setup(dry, np.stack([wet, wet]), n_sections=None, loss="multi-resolution")
    assert setup.n_requested is None and setup.n_sections == BASE_SECTIONS
    assert setup.dry.shape == setup.wet.shape == (2, 4000) and setup.dry_in.shape == (4000,)
    assert setup.segment_length == 2048 and setup.shortest == 512  # 8192 and 2048 at 48 kHz, scaled to a power of 2
    assert setup.shape() == {"n_sections": BASE_SECTIONS, "n_first_order": 0, "structure": "warped",
                             "stretch": 5, "ranges": DEFAULT_RANGES, "fs": FS}
    with pytest.raises(ParameterError, match="structure"):  # checked before n_iter, as in the signature
        _setup(dry, wet, structure="lattice", n_iter=-1)
    with pytest.raises(ParameterError, match="anticausal=True needs"):
        _setup(dry, wet, anticausal=True, structure="stretched")


def test_objective_evaluates_the_cascade_on_the_whole_overlap(pair):
    """Short audio: the evaluation loss is the loss of AllpassCascade.apply on the overlap (second route)."""
    dry, wet = pair
    cascade, layout, t = _layout("warped", cells=[Allpass2(0.7, 1200.0, 0.2), Allpass1(0.3), Delay(3.4)])
    segments = _Segments(dry, wet, layout.delay_shift, 4096)
    objective = _Objective(layout, segments, lambda x, y: np.mean((x - y) ** 2))
    assert segments.eval_starts() is None
    shift = layout.delay_shift
    expected = np.mean((cascade.apply(dry)[shift : 4000] - wet[shift:]) ** 2)
    assert objective.evaluate(t) == pytest.approx(expected, rel=1e-10)
    assert objective.null_db(t) == null_depth_db(cascade.apply(dry), wet, fs=FS)


def test_objective_warmup_rules(pair):
    dry, wet = pair
    _, layout, t = _layout("warped")
    segments = _Segments(dry, wet, layout.delay_shift, 1024)
    auto = _Objective(layout, segments, None)
    assert auto.warmups(t) == (LayoutFilter(layout).warmup(t), 0)
    assert _Objective(layout, segments, None, warmup="bound", bound=777).warmups(t) == (777, 0)
    assert _Objective(layout, segments, None, warmup=12).warmups(t) == (12, 0)
    two_sided = _Objective(_two_sided_layout()[1], segments, None, warmup=12)
    assert two_sided.warmups(_two_sided_layout()[2]) == (12, 12)  # anticausal sections ring before their input


def test_train_improves_stops_and_keeps_exact_starts(rng):
    dry = rng.standard_normal(6000)
    truth = AllpassCascade([Allpass2(0.8, 1000.0, 0.3), Delay(5.2)], fs=FS)
    wet = truth(dry)
    _, layout, t0 = _layout("warped", cells=[Allpass2(0.7, 1300.0, 0.2), Delay(5.2)])
    segments = _Segments(dry, wet, layout.delay_shift, 1024)
    setup = _setup(dry, wet, n_iter=40)
    objective = _Objective(layout, segments, setup.loss_fn)
    training = _train(objective, setup, t0, np.random.default_rng(0))
    assert training.trained and len(training.history) == len(training.warmups) == 40
    assert [step for step, _ in training.evals] == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert training.best_loss == min(loss for _, loss in training.evals) < training.start_loss
    stopped = _train(objective, _setup(dry, wet, n_iter=40, callback=lambda i, n, v: i == 2), t0,
                     np.random.default_rng(0))
    assert len(stopped.history) == 3 and stopped.evals[-1][0] == 3
    np.testing.assert_array_equal(stopped.history, training.history[:3])  # same seed, same mini-batches
    _, exact_layout, exact_t = _layout("warped", cells=list(truth))
    exact = _train(_Objective(exact_layout, segments, setup.loss_fn), setup, exact_t, np.random.default_rng(0))
    assert not exact.trained and len(exact.history) == 0 and exact.evals == [(0, exact.start_loss)]


def test_start_candidates(pair):
    dry, wet = pair
    est_setup = _setup(dry, wet, init="log-spaced", n_sections=2)
    from apfdsp.estimate import estimate

    est = estimate(dry, wet, fs=FS)
    name, layout, t, n_used = _start(est_setup, est)
    assert (name, layout.n2, n_used) == ("log-spaced", 2, 2)
    name, layout, t, n_used = _start(_setup(dry, wet, init="default", n_sections=None), est)
    assert name == "equation-error" and n_used == 3  # exact with the first rung
    assert null_depth_db(AllpassCascade(layout.cells(t), fs=FS).apply(dry), wet, fs=FS) < -100
    start = AllpassCascade([Allpass2(0.5, 800.0, 0.1), Delay(2.0)], fs=FS)
    name, layout, t, _ = _start(_setup(dry, wet, init=start), est)
    assert name == "cascade" and layout.n2 == 1


def test_delay_polarity_model_and_baseline(rng):
    """One delay + polarity model: fit_audio's baseline realises it exactly (the cells of align's)."""
    dry = rng.standard_normal(6000)
    wet = -np.concatenate([np.zeros(9), dry[:-9]])
    from apfdsp.estimate import estimate

    est = estimate(dry, wet, fs=FS)
    model = delay_polarity_model(est, fs=FS)
    assert [type(c) for c in model] == [Delay, Polarity] and model[0].samples == est.delay_samples
    setup = _setup(dry, wet)
    layout, t, loss = _delay_polarity_baseline(setup, est)
    assert (layout.n2, layout.n1, layout.polarity) == (0, 0, -1)
    np.testing.assert_allclose(AllpassCascade(layout.cells(t), fs=FS).apply(dry), model.apply(dry), atol=1e-9)
    assert loss < 1e-6
    # The result falls back to it when the fitted cascade's loss is higher.
    _, fitted_layout, fitted_t = _layout("warped", cells=[Allpass2(0.5, 800.0, 0.1), Delay(9.0), Polarity(-1)])
    training = _Training(fitted_t, 0.5, 0.5, np.zeros(0), np.zeros(0, dtype=int), [(0, 0.5)], True)
    result = _result(fitted_layout, training, (layout, t, loss), est, init_name="cascade", settings={},
                     start_time=0.0)
    assert result.method == "delay+polarity" and result.loss == loss and result.polarity == -1
    result = _result(fitted_layout, training, (layout, t, 1.0), est, init_name="cascade", settings={},
                     start_time=0.0)
    assert result.method == "allpass" and result.loss == 0.5


# -- validation ------------------------------------------------------------------------------------------


@pytest.fixture
def pair(rng):
    dry = rng.standard_normal(4000)
    return dry, AllpassCascade([Allpass2(0.6, 900.0), Delay(2.0)], fs=FS)(dry)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, nullcontext()),
    ({"loss": "mse"}, nullcontext()),
    ({"loss": "ncc", "warmup": 0}, nullcontext()),
    ({"loss": "sum-magnitude", "warmup": "bound", "structure": "traditional"}, nullcontext()),
    ({"loss": "l1"}, pytest.raises(ParameterError, match="loss must be one of")),
    ({"loss": None}, pytest.raises(ParameterError, match="loss must be one of")),
    ({"loss_options": {"n_fft": 64}}, pytest.raises(ParameterError, match="bad loss_options")),
    ({"loss": "mse", "loss_options": {"n_fft": 64}}, pytest.raises(ParameterError, match="takes no loss_options")),
    ({"structure": "lattice"}, pytest.raises(ParameterError, match="structure")),
    ({"init": "random"}, pytest.raises(ParameterError, match="init must be one of")),
    ({"init": 3}, pytest.raises(TypeError, match="init must be")),
    ({"warmup": "long"}, pytest.raises(ParameterError, match="warmup")),
    ({"warmup": -1}, pytest.raises(ParameterError, match="warmup")),
    ({"n_iter": -1}, pytest.raises(ParameterError, match="n_iter")),
    ({"lr": 0.0}, pytest.raises(ParameterError, match="lr")),
    ({"batch_size": 0}, pytest.raises(ParameterError, match="batch_size")),
    ({"segment_length": 100}, pytest.raises(ParameterError, match="segment_length")),
    ({"fs": -1}, pytest.raises(ParameterError, match="fs")),
    ({"ranges": {"r_max": 0.9}}, pytest.raises(TypeError, match="ParamRanges")),
    ({"parameterization": "cnn"}, pytest.raises(ParameterError, match="parameterization")),
    ({"seed": 1.5}, pytest.raises(ParameterError, match="seed")),
])
def test_options_table(pair, kwargs, expected):
    dry, wet = pair
    options = {"fs": FS, "n_sections": 1, "n_iter": 2, "batch_size": 1, "init": "log-spaced"}  # a start to train
    options.update(kwargs)
    with expected:
        result = fit_audio(dry, wet, **options)
        assert np.all(np.isfinite(result.loss_history)) and len(result.loss_history) == 2


def test_too_short_audio(rng):
    dry = rng.standard_normal(300)  # shorter than the 512-point STFT of the default loss at 16 kHz
    with pytest.raises(AudioError, match="overlap by .* needs at least 512"):
        fit_audio(dry, dry, fs=FS, n_iter=1)
    with pytest.raises(AudioError, match="needs at least 8192"):
        fit_audio(rng.standard_normal(4000), dry, fs=FS, loss_options={"fft_sizes": (8192,)})
    with pytest.raises(AudioError, match="silent"):
        fit_audio(np.zeros(4000), dry, fs=FS)
    with pytest.raises(ParameterError, match="channel"):
        fit_audio(rng.standard_normal((2, 4000)), rng.standard_normal((3, 4000)), fs=FS)


@pytest.mark.parametrize(("cells", "kwargs", "error", "match"), [
    ([Allpass2(0.9, 500.0, 0.3)], {"structure": "traditional"}, ParameterError, "cannot be trained"),
    ([Allpass2(0.9, 500.0, 0.0, 3)], {"structure": "stretched", "stretch": 5}, ParameterError, "cannot be trained"),
    ([Allpass2(0.9995, 500.0)], {}, ParameterError, "wider ranges"),
    ([Allpass1(0.9999)], {}, ParameterError, "coef_max"),
    ([Allpass1(0.5, stretch=2)], {}, NotImplementedError, "stretched first-order"),
])
def test_bad_init_cascade(pair, cells, kwargs, error, match):
    dry, wet = pair
    with pytest.raises(error, match=match):
        fit_audio(dry, wet, fs=FS, init=AllpassCascade(cells, fs=FS), n_iter=1, **kwargs)
    with pytest.raises(ParameterError, match="fs="):
        fit_audio(dry, wet, fs=FS, init=AllpassCascade(cells[:0], fs=2 * FS), n_iter=1)


# -- anticausal sections ------------------------------------------------------------------------------------


def _two_sided_cells(structure="warped"):
    warp = 0.3 if structure != "traditional" else 0.0
    return [Allpass2(0.9, 500.0, warp), Allpass2(0.8, 3000.0, -warp, 1, True), Allpass1(-0.6, anticausal=True),
            Allpass1(0.3), Delay(7.3), Polarity(-1)]


def _two_sided_layout(structure="warped"):
    cascade = AllpassCascade(_two_sided_cells(structure), fs=FS)
    layout, t = _layout_from_cascade(cascade, structure=structure, stretch=1, ranges=DEFAULT_RANGES, fs=FS,
                                     anticausal=True)
    return cascade, layout, t


@pytest.mark.parametrize("structure", ["traditional", "warped"])
def test_filter_with_anticausal_rows_equals_cascade_apply(rng, structure):
    """Causal rows forwards, anticausal rows backwards == AllpassCascade.apply, and on a padded segment."""
    cascade, layout, t = _two_sided_layout(structure)
    assert layout.anticausal == (False, True, True, False)
    filt = LayoutFilter(layout)
    x = rng.standard_normal((2, 3001))
    expected = cascade.apply(x)
    np.testing.assert_allclose(_shift(filt(t, x), layout.delay_shift), expected, atol=1e-12)
    np.testing.assert_allclose(AllpassCascade(layout.cells(t), fs=FS).apply(x), expected, atol=1e-12)
    # a segment in the middle, padded before (causal transient) and after (anticausal transient)
    before, after = filt.warmups(t)
    assert before > 0 and after == before
    segs = _Segments(x, expected, layout.delay_shift, 400)
    starts = np.array([1200, 1500])
    xb, yb, skip = segs.batch(starts, before, after)
    assert skip == before and xb.shape[-1] == before + 400 + after
    # the 60 dB warm-ups leave transients of about 1e-3 of the signal
    assert np.max(np.abs(filt(t, xb)[..., skip : skip + 400] - yb)) < 1e-2
    # decaying by 240 dB, the segment is exact
    xb, yb, skip = segs.batch(starts, *filt.warmups(t, decay_db=240.0))
    np.testing.assert_allclose(filt(t, xb)[..., skip : skip + 400], yb, atol=1e-10)
    # without the padding after the segment the anticausal transient spoils it
    xb, yb, skip = segs.batch(starts, before, 0)
    assert np.max(np.abs(filt(t, xb)[..., skip : skip + 400] - yb)) > 1e-3
    # the whole overlap (past the overlap's end too) is exact
    xb, yb, skip = segs.batch(None, before, after)
    np.testing.assert_allclose(filt(t, xb)[..., skip : skip + yb.shape[-1]], yb, atol=1e-12)


def test_check_grads_with_anticausal_rows(rng, check_grads):
    _, layout, t = _two_sided_layout()
    param = get_parameterization("direct")
    params = param.init(t, rng=rng)
    loss_fn, _, _ = _loss_setup("multi-resolution", FS, {"fft_sizes": (32, 64)})
    x = rng.standard_normal((2, 200))
    y = rng.standard_normal((2, 100))
    filt = LayoutFilter(layout)
    check_grads(lambda p: loss_fn(filt(param.forward(p), x)[..., 50:150], y))(params)


def test_anticausal_equation_error_start_is_exact(rng):
    """Audio through a two-sided cascade: the equation-error start keeps the outside roots anticausal."""
    truth = AllpassCascade([Allpass2(0.8, 900.0), Allpass2(0.7, 2500.0, 0.0, 1, True), Delay(4.0)], fs=FS)
    dry = rng.standard_normal(FS // 2)
    wet = truth.apply(dry)
    result = fit_audio(dry, wet, fs=FS, n_sections=2, n_first_order=0, structure="traditional", n_iter=5,
                       anticausal=True)
    assert result.settings["anticausal"] is True
    assert any(getattr(c, "anticausal", False) for c in result.cascade)
    assert null_depth_db(result.cascade.apply(dry), wet, fs=FS) < -60


def test_anticausal_first_order_highpass():
    """A first-order high-pass (not an allpass): two-sided sections follow its phase much better."""
    dry = np.random.default_rng(1).standard_normal(FS)
    b, a = signal.butter(1, 200, "highpass", fs=FS)
    wet = signal.lfilter(b, a, dry)
    depth = {}
    for anticausal in (False, True):
        result = fit_audio(dry, wet, fs=FS, n_iter=30, anticausal=anticausal)
        assert result.settings["anticausal"] is anticausal
        depth[anticausal] = null_depth_db(result.cascade.apply(dry), wet, fs=FS)
    # The phase-only bound (dry through H/|H|) is about -42 dB and the causal fit about -33 dB, so a
    # 10 dB margin is not reachable on this case; 8 dB is asserted.
    assert depth[True] < -40
    assert depth[True] < depth[False] - 8


def test_anticausal_deterministic_and_refusals(pair):
    dry, wet = pair
    kwargs = {"n_sections": 1, "n_first_order": 0, "n_iter": 5, "anticausal": True, "init": "log-spaced"}
    a, b = fit_audio(dry, wet, fs=FS, **kwargs), fit_audio(dry, wet, fs=FS, **kwargs)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    cascade = AllpassCascade([Allpass2(0.6, 900.0, 0.0, 1, True), Delay(2.0)], fs=FS)
    with pytest.raises(ParameterError, match="anticausal=True"):
        fit_audio(dry, wet, fs=FS, init=cascade, n_iter=1)
    refined = fit_audio(dry, wet, fs=FS, init=cascade, n_iter=2, anticausal=True)
    assert refined.init == "cascade"
    with pytest.raises(ParameterError, match="stretched"):
        fit_audio(dry, wet, fs=FS, structure="stretched", n_iter=1, anticausal=True)
    with pytest.raises(ParameterError, match="anticausal must be"):
        fit_audio(dry, wet, fs=FS, n_iter=1, anticausal="yes")
    _, layout, t = _two_sided_layout()
    with pytest.raises(ParameterError, match="stretched"):
        LayoutFilter(layout.replace(structure="stretched", stretch=2))(t, dry[:100])
