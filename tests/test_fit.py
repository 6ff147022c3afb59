"""Tests of apfdsp.fit.fit_phase: recovery of random cascades, determinism, options and validation."""

import json
from contextlib import nullcontext

import numpy as np
import pytest

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import ParameterError
from apfdsp.fit import FitResult, fit_phase
from apfdsp.losses import phase_loss
from apfdsp.model import SinusoidalMLP
from apfdsp.ranges import ParamRanges

FS = 48000.0
F = np.geomspace(20.0, 20000.0, 512)
W = 2 * np.pi * F / FS


def random_target(rng):
    """Copy of ``benchmarks/recovery.py::random_target`` (benchmarks/ is not importable from tests).

    fs = 48 kHz, 2 to 8 traditional or warped second-order sections, R in [0.3, 0.97], fc log-uniform
    30 Hz - 18 kHz; one in four targets also has a first-order section and a polarity flip.
    """
    n = int(rng.integers(2, 9))
    cells = []
    warped = rng.random() < 0.5
    for _ in range(n):
        radius = rng.uniform(0.3, 0.97)
        fc = float(np.exp(rng.uniform(np.log(30.0), np.log(18000.0))))
        warp = float(rng.uniform(-0.7, 0.7)) if warped else 0.0
        cells.append(Allpass2(radius, fc, warp))
    if rng.random() < 0.25:
        cells.append(Allpass1(float(rng.uniform(-0.99, 0.5))))
        cells.append(Polarity(-1))
    return AllpassCascade(cells, fs=FS)


def _targets(seed=440, n=8):
    rng = np.random.default_rng(seed)
    return [random_target(rng) for _ in range(n)]


def wrapped_error(phase, target):
    return np.abs(np.angle(np.exp(1j * (np.asarray(phase) - np.asarray(target)))))


RECOVERY = list(range(8))


@pytest.mark.parametrize("index", RECOVERY)
def test_recovers_random_ground_truth(index):
    """The recovery benchmark in small: 512 bins, a reduced polish budget (max_iter=60) for speed."""
    truth = _targets()[index]
    result = fit_phase(F, truth.phase(F), fs=FS, seed=index, max_iter=60)
    assert isinstance(result, FitResult)
    assert result.phase_error_rad < 0.02
    assert np.max(wrapped_error(result.cascade.phase(F), truth.phase(F))) < 0.1
    assert result.cascade.polarity == truth.polarity
    assert result.cascade.order <= 2 * 8 + 1
    assert np.all(np.abs(result.cascade.poles()) < 1)
    # The reported numbers are those of the returned cascade.
    assert result.loss == pytest.approx(phase_loss(result.cascade.phase(F), truth.phase(F)), rel=1e-9, abs=1e-15)


def test_exact_target_is_recovered_exactly():
    truth = AllpassCascade([Allpass2(0.9, 300.0), Allpass2(0.7, 4000.0)], fs=FS)
    result = fit_phase(F, truth.phase(F), fs=FS, n_sections=4)
    assert result.phase_error_rad < 1e-8
    assert result.cascade.order == 4  # pruned to the true order
    np.testing.assert_allclose(result.cascade.group_delay(F), truth.group_delay(F), rtol=1e-6)
    assert result.loss_history.size > 0 and np.all(np.isfinite(result.loss_history))
    assert result.elapsed_s > 0
    assert result.start in ("equation-error", "group-delay", "random")
    assert all({"kind", "n_sections", "polarity", "loss"} <= set(s) for s in result.starts)
    json.dumps(result.settings)  # JSON-safe
    assert result.settings["n_sections"] == 4 and result.settings["seed"] == 0


def _noisy_target(seed=3):
    rng = np.random.default_rng(seed)
    truth = AllpassCascade([Allpass2(0.8, 700.0, 0.2), Allpass2(0.6, 5000.0, -0.1), Allpass2(0.9, 90.0)], fs=FS)
    return truth.phase(F) + 0.05 * rng.standard_normal(F.size)  # not exactly representable: every stage runs


def test_fit_is_deterministic_bit_for_bit():
    target = _noisy_target()
    options = {"fs": FS, "n_sections": 3, "max_iter": 30, "n_random": 1, "seed": 7}
    first = fit_phase(F, target, **options)
    second = fit_phase(F, target, **options)
    assert first.loss > 1e-4  # noisy: the random start and the polishing really ran
    assert first.cascade.sos.tobytes() == second.cascade.sos.tobytes()
    assert first.cascade == second.cascade
    np.testing.assert_array_equal(first.loss_history, second.loss_history)
    assert first.starts == second.starts


def test_polarity_flip_and_first_order_target():
    truth = AllpassCascade([Allpass2(0.85, 400.0, 0.3), Allpass2(0.6, 6000.0, -0.2), Allpass1(-0.7), Polarity(-1)], fs=FS)
    result = fit_phase(F, truth.phase(F), fs=FS, n_sections=4)
    assert result.phase_error_rad < 1e-6
    assert result.cascade.polarity == -1
    assert result.cascade.order == truth.order == 5
    np.testing.assert_allclose(result.cascade.phase(F), truth.phase(F), atol=1e-5)


def test_fixed_wrong_polarity_cannot_fit_the_flip():
    """Near DC every allpass has phase ~0, so a flipped target needs the polarity cell."""
    truth = AllpassCascade([Allpass2(0.85, 400.0), Allpass1(-0.7), Polarity(-1)], fs=FS)
    result = fit_phase(F, truth.phase(F), fs=FS, n_sections=2, polarity=1, max_iter=30, n_random=0)
    assert result.cascade.polarity == 1
    assert result.phase_error_rad > 0.1


def test_complex_target_input():
    truth = AllpassCascade([Allpass2(0.9, 250.0, 0.4), Allpass2(0.5, 9000.0), Allpass1(0.3)], fs=FS)
    from_phase = fit_phase(F, truth.phase(F), fs=FS, n_sections=3)
    from_response = fit_phase(F, 3.0 * truth.response(F), fs=FS, n_sections=3)  # level is ignored
    assert from_response.phase_error_rad < 1e-6
    np.testing.assert_allclose(wrapped_error(from_response.cascade.phase(F), truth.phase(F)), 0.0, atol=1e-5)
    assert from_response.cascade.order == from_phase.cascade.order == 5


def test_zero_weights_ignore_that_band(rng):
    truth = AllpassCascade([Allpass2(0.8, 300.0, 0.2), Allpass2(0.7, 6000.0)], fs=FS)
    band = (F > 1000.0) & (F < 3000.0)
    target = truth.phase(F)
    target[band] = rng.uniform(-np.pi, np.pi, band.sum())  # garbage where the weight is zero
    weights = np.where(band, 0.0, 1.0)
    result = fit_phase(F, target, fs=FS, weights=weights, n_sections=3)
    fitted = result.cascade.phase(F)
    assert result.phase_error_rad < 1e-6  # weighted: the band does not count
    np.testing.assert_allclose(wrapped_error(fitted, truth.phase(F)), 0.0, atol=1e-5)  # also inside the band
    assert phase_loss(fitted, target) > 0.1  # the garbage was not fitted


def test_delay_option_fits_a_pure_fractional_delay():
    target = -W * 12.3
    result = fit_phase(F, target, fs=FS, delay=12.3, n_sections=3, max_iter=60)
    assert result.phase_error_rad < 1e-3
    assert np.max(wrapped_error(result.cascade.phase(F), target)) < 5e-3
    assert result.cascade.group_delay([F[0]])[0] == pytest.approx(12.3, abs=0.01)
    assert result.settings["delay"] == 12.3


def test_delay_option_exact_thiran_target():
    """A target that is exactly integer shift + Thiran section is matched to rounding."""
    truth = AllpassCascade([Delay(7.4), Allpass2(0.7, 2000.0)], fs=FS)
    result = fit_phase(F, truth.phase(F), fs=FS, delay=7.4, n_sections=2, max_iter=60)
    assert result.phase_error_rad < 1e-6
    np.testing.assert_allclose(result.cascade.group_delay(F), truth.group_delay(F), rtol=1e-5)


def test_delay_option_keeps_the_cascade_causal(rng):
    """A causal delay start gives a causal model that can be streamed (fit_phase docstring, `delay`)."""
    result = fit_phase(F, -W * 3.3, fs=FS, delay=3.3, n_sections=3, max_iter=60)
    # Without an advance, order <= 7 carries at most ~3.3 samples here: a few mrad remain.
    assert result.phase_error_rad < 5e-3
    cascade = result.cascade
    assert cascade.group_delay([F[0]])[0] == pytest.approx(3.3, abs=0.05)
    assert cascade.integer_delay >= 0
    x = rng.standard_normal(300)
    y, _ = cascade.apply(x, zi=cascade.initial_state(x.shape))
    np.testing.assert_allclose(y, cascade.apply(x), rtol=0, atol=1e-13)




@pytest.mark.parametrize("n_sections", [1, 2])
def test_pure_integer_delay_target_emits_no_warning(n_sections):
    fit_phase(F, -W * 2, fs=FS, n_sections=n_sections)


@pytest.mark.parametrize("samples", [2, 5])
def test_pure_integer_delay_target_collapses_to_delay(samples):
    result = fit_phase(F, -W * samples, fs=FS, n_sections=2)
    assert result.phase_error_rad < 1e-9
    assert list(result.cascade) == [Delay(samples)]


def test_mlp_adam_lowers_the_loss():
    truth = AllpassCascade([Allpass2(0.9, 300.0, 0.2), Allpass2(0.7, 3000.0, -0.3), Allpass2(0.5, 9000.0, 0.1)], fs=FS)
    mlp = SinusoidalMLP(hidden=(8, 4), input_size=6)
    result = fit_phase(
        F, truth.phase(F), fs=FS, n_sections=1, parameterization=mlp, optimizer="adam",
        max_iter=20, n_random=0, n_keep=1, prune=False,
    )
    history = result.loss_history
    assert history.size >= 20 and np.all(np.isfinite(history))
    assert history[-1] < history[0]
    assert result.settings["parameterization"] == "mlp" and result.settings["optimizer"] == "adam"


def test_callback_reports_progress():
    calls = []
    truth = AllpassCascade([Allpass2(0.8, 1000.0)], fs=FS)
    fit_phase(F, truth.phase(F), fs=FS, n_sections=1, callback=lambda *args: calls.append(args))
    stages = [c[0] for c in calls]
    assert stages[0] == "polish" and stages[-2:] == ["refine", "done"]
    assert calls[-1][1] == calls[-1][2]


GOOD_TARGET = AllpassCascade([Allpass2(0.8, 1000.0)], fs=FS).phase(F)


@pytest.mark.parametrize(
    ("kwargs", "expectation"),
    [
        ({}, nullcontext()),
        ({"fs": 0}, pytest.raises(ParameterError, match="fs must be a positive finite sample rate")),
        ({"fs": "48k"}, pytest.raises(ParameterError, match="fs must be a sample rate in Hz")),
        ({"freqs": F[:1], "target": GOOD_TARGET[:1]}, pytest.raises(ParameterError, match="freqs must be a 1-D array of at least 2")),
        ({"freqs": np.r_[F[:-1], 24001.0]}, pytest.raises(ParameterError, match=r"in \[0, fs/2 = 24000\] Hz")),
        ({"freqs": np.r_[-1.0, F[1:]]}, pytest.raises(ParameterError, match="freqs must be")),
        ({"freqs": np.r_[np.nan, F[1:]]}, pytest.raises(ParameterError, match="freqs must be")),
        ({"freqs": F[None, :], "target": GOOD_TARGET[None, :]}, pytest.raises(ParameterError, match="freqs must be a 1-D")),
        ({"target": GOOD_TARGET[:-1]}, pytest.raises(ParameterError, match=r"target must have the shape of freqs \(512,\), got \(511,\)")),
        ({"target": np.r_[np.inf, GOOD_TARGET[1:]]}, pytest.raises(ParameterError, match="target contains NaN or Inf")),
        ({"weights": np.ones(3)}, pytest.raises(ParameterError, match="weights must be finite, non-negative")),
        ({"weights": np.zeros(F.size)}, pytest.raises(ParameterError, match="not all zero")),
        ({"weights": -np.ones(F.size)}, pytest.raises(ParameterError, match="weights must be")),
        ({"weights": np.r_[np.nan, np.ones(F.size - 1)]}, pytest.raises(ParameterError, match="weights must be")),
        ({"structure": "lattice"}, pytest.raises(ParameterError, match="structure must be one of .*'lattice'")),
        ({"n_sections": 0}, pytest.raises(ParameterError, match="n_sections must be >= 1, got 0")),
        ({"n_sections": 65}, pytest.raises(ParameterError, match="n_sections must be <= 64")),
        ({"n_sections": 2.5}, pytest.raises(ParameterError, match="n_sections must be an integer")),
        ({"stretch": 0}, pytest.raises(ParameterError, match="stretch must be >= 1")),
        ({"polarity": 0}, pytest.raises(ParameterError, match="polarity must be 'auto', 1 or -1, got 0")),
        ({"optimizer": "sgd"}, pytest.raises(ParameterError, match="optimizer must be 'lbfgs', 'adam' or 'adam\\+lbfgs', got 'sgd'")),
        ({"n_random": -1}, pytest.raises(ParameterError, match="n_random must be >= 0")),
        ({"n_keep": -1}, pytest.raises(ParameterError, match="n_keep must be >= 0")),
        ({"delay_search": -1}, pytest.raises(ParameterError, match="delay_search must be >= 0")),
        ({"max_iter": 0}, pytest.raises(ParameterError, match="max_iter must be >= 1")),
        ({"delay": np.nan}, pytest.raises(ParameterError, match="delay must be a finite number of samples or None")),
        ({"parameterization": "biasnet"}, pytest.raises(ParameterError, match="parameterization must be")),
        ({"ranges": {"r_max": 0.9}}, pytest.raises(TypeError, match="ranges must be a ParamRanges, got dict")),
        ({"ranges": ParamRanges(fc_max_hz=30000.0)}, pytest.raises(ParameterError, match="must lie below fs/2")),
    ],
)
def test_parameter_validation(kwargs, expectation):
    call = {"freqs": F, "target": GOOD_TARGET, "fs": FS, "n_sections": 1, "max_iter": 5, "n_random": 0}
    call.update(kwargs)
    with expectation:
        result = fit_phase(call.pop("freqs"), call.pop("target"), **call)
        assert result.phase_error_rad < 1e-6


# -- anticausal sections --------------------------------------------------------------------------
MIXED_TRUTHS = {
    "two-way": [Allpass2(0.9, 300.0, anticausal=True), Allpass2(0.8, 3000.0), Allpass1(-0.6)],
    "anticausal-only": [Allpass2(0.85, 1200.0, anticausal=True), Allpass1(0.4, anticausal=True), Polarity(-1)],
}


@pytest.mark.parametrize("name", sorted(MIXED_TRUTHS))
def test_anticausal_target_is_recovered_with_anticausal_sections(name):
    truth = AllpassCascade(MIXED_TRUTHS[name], fs=FS)
    result = fit_phase(F, truth.phase(F), fs=FS, n_sections=3, anticausal=True)
    assert result.phase_error_rad < 1e-6
    assert any(getattr(c, "anticausal", False) for c in result.cascade)
    assert np.all(np.abs(result.cascade.poles()) < 1)
    assert result.settings["anticausal"] is True
    # a causal cascade cannot follow a phase that rises (negative group delay)
    causal = fit_phase(F, truth.phase(F), fs=FS, n_sections=3)
    assert not any(getattr(c, "anticausal", False) for c in causal.cascade)
    assert causal.phase_error_rad > 100 * result.phase_error_rad


def test_first_order_highpass_phase_needs_anticausal_sections():
    """The phase of a first-order high-pass (pi/2 at low frequencies, falling to 0) is out of reach of
    a causal allpass (its phase starts at 0 or pi and each section turns by pi or 2 pi)."""
    from scipy import signal as sps

    b, a = sps.butter(1, 200.0, "highpass", fs=FS)
    _, h = sps.freqz(b, a, worN=F, fs=FS)
    causal = fit_phase(F, h, fs=FS, n_sections=4)
    mixed = fit_phase(F, h, fs=FS, n_sections=4, anticausal=True)
    assert causal.phase_error_rad > 0.05
    assert mixed.phase_error_rad < 0.2 * causal.phase_error_rad


def test_anticausal_must_be_bool():
    with pytest.raises(ParameterError, match="anticausal"):
        fit_phase(F, GOOD_TARGET, fs=FS, anticausal="yes")


def test_anticausal_mode_also_scores_the_causal_designs():
    """anticausal=True may only add starts: on a target a causal cascade fits best it is as good."""
    from apfdsp.resample import resample_grid

    old = AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(-0.5), Delay(-3.0)], fs=48000)
    f = resample_grid(48000, 44100)
    kwargs = dict(fs=44100, n_sections=2, polarity=1, delay=-3.0 * 44100 / 48000)
    causal = fit_phase(f, old.phase(f), **kwargs)
    mixed = fit_phase(f, old.phase(f), anticausal=True, **kwargs)
    assert mixed.loss <= causal.loss * 1.01


# -- the parts of fit_phase, each alone ---------------------------------------------------------------

from apfdsp.fit import (_Problem, _best_polarity, _delay_candidates, _delay_start, _equation_error_starts,  # noqa: E402
                        _group_delay_start, _random_starts)
from apfdsp.layout import Layout  # noqa: E402
from apfdsp.model import Direct  # noqa: E402
from apfdsp.ranges import DEFAULT_RANGES  # noqa: E402


def _problem(target_phase, weights=None):
    weights = np.ones_like(F) if weights is None else weights
    return _Problem(W, target_phase, weights, Direct(), "lbfgs", 0.02)


def _assert_stable(starts):
    for _, layout, t in starts:
        assert np.all(np.abs(t) < 1)
        poles = AllpassCascade(layout.cells(t), fs=FS).poles()
        assert np.all(np.abs(poles) < 1)


@pytest.mark.parametrize(("structure", "exact"), [("warped", 1e-10), ("traditional", 1e-6)])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_equation_error_starts_exact_target(structure, exact, index):
    """On an exact allpass target the best equation-error start is exact before any polish (on the plain
    axis alone, poles near DC on a log grid leave the design ill-conditioned: exact to ~1e-7 there)."""
    truth = _targets(seed=11)[index]
    problem = _problem(truth.phase(F))
    base = Layout(0, 0, structure, 1, 1, None, DEFAULT_RANGES, FS)
    candidates, tau_shift = _delay_candidates(W, problem.target_phase, problem.weights, delay=None, min_delay=None,
                                              delay_search=2, n_sections=8)
    starts = _equation_error_starts(problem, base, candidates, tau_shift=tau_shift, polarities=(1, -1),
                                    anticausal=False, n_keep=3)
    assert len(starts) == 3 and all(kind == "equation-error" for kind, _, _ in starts)
    losses = [problem.value(layout, t) for _, layout, t in starts]
    assert losses[0] < exact
    assert np.max(wrapped_error(AllpassCascade(starts[0][1].cells(starts[0][2]), fs=FS).phase(F),
                                truth.phase(F))) < 100 * np.sqrt(exact)
    _assert_stable(starts)
    again = _equation_error_starts(problem, base, candidates, tau_shift=tau_shift, polarities=(1, -1),
                                   anticausal=False, n_keep=3)
    assert all(a[1] == b[1] and np.array_equal(a[2], b[2]) for a, b in zip(starts, again))


def test_equation_error_starts_with_a_delay_and_anticausal_sections(rng):
    """A delayed mixed causal/anticausal target: the starts (delay candidates, anticausal variants) reach it."""
    truth = AllpassCascade([Allpass2(0.8, 900.0, anticausal=True), Allpass1(0.4), Delay(6.0)], fs=FS)
    problem = _problem(truth.phase(F))
    delay_shift, _ = _delay_start(6.3, None)
    base = Layout(0, 0, "warped", 1, 1, delay_shift, DEFAULT_RANGES, FS)
    candidates, tau_shift = _delay_candidates(W, problem.target_phase, problem.weights, delay=6.3, min_delay=None,
                                              delay_search=2, n_sections=3)
    starts = _equation_error_starts(problem, base, candidates, tau_shift=tau_shift, polarities=(1, -1),
                                    anticausal=True, n_keep=4)
    assert problem.value(starts[0][1], starts[0][2]) < 1e-8
    assert any(starts[0][1].anticausal)
    _assert_stable(starts)


def test_delay_candidates_respect_the_bounds():
    phase = -20.5 * W  # a pure delay of 20.5 samples
    ones = np.ones_like(W)
    candidates, tau_shift = _delay_candidates(W, phase, ones, delay=20.4, min_delay=15, delay_search=2, n_sections=2)
    assert sorted(candidates) == [1, 2, 3, 4, 5]
    assert tau_shift == 19
    for order, options in candidates.items():
        assert options[0] == (19, pytest.approx(1.4))  # the estimate first
        assert all(shift >= 15 for shift, _ in options)
    no_delay, no_tau = _delay_candidates(W, phase, ones, delay=None, min_delay=None, delay_search=2, n_sections=1)
    assert no_delay == {1: [(None, 0.0)], 2: [(None, 0.0)], 3: [(None, 0.0)]} and no_tau is None
    assert _delay_start(3.2, 5) == (5, 1.0)  # an estimate below the bound starts at the bound
    assert _delay_start(None, 5) == (None, None)


def test_group_delay_and_random_starts_alone():
    truth = AllpassCascade([Allpass2(0.97, 400.0), Allpass2(0.9, 6000.0)], fs=FS)
    problem = _problem(truth.phase(F))
    base = Layout(0, 0, "warped", 1, 1, 2, DEFAULT_RANGES, FS)
    (kind, layout, t), = _group_delay_start(problem, base, 4, 1.2)
    assert kind == "group-delay" and layout.n2 == 2
    assert t[-1, 0] == pytest.approx(0.4)  # the fractional start
    _assert_stable([(kind, layout, t)])
    assert _group_delay_start(_problem(-3.0 * W), base, 4, None) == []
    starts = _random_starts(np.random.default_rng(5), base, F, np.ones_like(F), 3, None, 4)
    again = _random_starts(np.random.default_rng(5), base, F, np.ones_like(F), 3, None, 4)
    assert len(starts) == 4 and all(kind == "random" and layout.n2 == 3 for kind, layout, _ in starts)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(starts, again))
    _assert_stable(starts)


def test_best_polarity_picks_the_better_sign():
    truth = AllpassCascade([Allpass2(0.9, 1000.0), Polarity(-1)], fs=FS)
    problem = _problem(truth.phase(F))
    base = Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, FS)
    t = base.t_from([(0.9, 1000.0, 0.0)], [])
    (_, layout, _), = _best_polarity(problem, [("random", base, t)], (1, -1))
    assert layout.polarity == -1
    (_, layout, _), = _best_polarity(problem, [("random", base, t)], (1,))
    assert layout.polarity == 1
    (_, layout, _), = _best_polarity(problem, [("equation-error", base, t)], (1, -1))
    assert layout.polarity == 1  # equation-error starts keep the polarity they were designed with


def test_designs_on_two_threads_give_the_results_of_one(monkeypatch):
    """The equation-error designs are solved on two threads: bit for bit the fit of one thread."""
    import apfdsp.fit as fit_module

    truth = _targets(seed=21)[0]
    rng = np.random.default_rng(4)
    target = truth.phase(F) + rng.normal(0, 0.05, F.size)  # noisy: every start is polished, two finalists
    options = dict(fs=FS, n_sections=4, max_iter=40, seed=3, delay=2.3)
    monkeypatch.setattr(fit_module, "_DESIGN_THREADS", 2)
    two = fit_phase(F, target, **options)
    monkeypatch.setattr(fit_module, "_DESIGN_THREADS", 1)
    one = fit_phase(F, target, **options)
    assert len(two.starts) > 3
    assert two.cascade.to_dict() == one.cascade.to_dict() and two.loss == one.loss
    assert [s["loss"] for s in two.starts] == [s["loss"] for s in one.starts]
    assert np.array_equal(two.loss_history, one.loss_history)

