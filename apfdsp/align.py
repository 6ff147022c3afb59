r"""Align a dry signal with its wet (processed) twin: `align`.

The one-call entry point: estimate the bulk delay and polarity (GCC-PHAT), the relative response
:math:`H = S_{yx}/S_{xx}` and its coherence (Welch), fit an allpass cascade to the phase of H, and
filter the dry signal with it. The plain delay + polarity solution is kept whenever the allpass fit
does not give a deeper null on the audio itself, so `align` never does worse than delay + polarity.

Implements docs/maths.md, sections 6 (grid reduction), 7.2 (the polarity label) and 10.4; the data
flow is docs/architecture.md, section 3.
"""

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ._validate import valid_fs, valid_int, valid_pair
from .cascade import Allpass1, AllpassCascade, Delay, Polarity
from .confidence import pair_statistics, verdict
from .estimate import estimate, reduce_grid
from .exceptions import AudioError, ParameterError
from .fit import fit_phase
from .fit_audio import BASE_SECTIONS, delay_polarity_model, more_sections, order_probe
from .metrics import MixMeter
from .threads import single_threaded_blas

__all__ = ["align", "fit_alignment", "AlignResult", "ALIGN_DEFAULTS", "broadband_polarity", "method_label"]

#: Defaults shared by `align`, `fit_alignment` and the command line.
ALIGN_DEFAULTS = {
    "n_sections": None,
    "structure": "warped",
    "seed": 0,
    "max_delay_s": 0.1,
    "max_bins": 2048,
}


@dataclass
class AlignResult:
    """What `align` returns.

    Attributes
    ----------
    aligned : ndarray
        The aligned dry signal, same shape as the dry input (None from `fit_alignment`).
    cascade : AllpassCascade or list of AllpassCascade
        The model applied to the dry (one per channel with ``per_channel=True``).
    method : str or list of str
        ``"allpass"`` (a model with allpass sections) or ``"delay+polarity"`` (none: the fallback kept
        when the allpass does not help, or a fit that needed no section); see `method_label`.
    delay_samples : float
        Bulk delay of the wet relative to the dry (positive: the dry was delayed).
    polarity : int
        -1 only when the model inverts the signal broadband (`broadband_polarity`): judged on its
        phase where the signal has its energy, not on the sign of one cell (a model may carry a
        Polarity cell that a first-order section near z = 1 turns back, as for a high-pass).
    before, delay_polarity, after : dict
        `apfdsp.metrics.mix_report` of the dry as given, after delay + polarity only, and after
        alignment (on the whole signals).
    elapsed_s : float
        Wall-clock time.
    fit : FitResult or list
        The allpass fit(s).
    settings : dict
        The settings used.
    baseline : AllpassCascade or list of AllpassCascade
        The delay + polarity model (bulk delay and polarity alone), whether kept or not.
    polarity_label : str
        ``"normal"``, ``"inverted"`` or ``"phase rotated"`` (see `broadband_polarity`).
    phase_rotation_deg : float
        The model's mean phase where the signal has its energy, after the bulk delay, in degrees.
    confidence : str
        ``"related"``, ``"weak"`` or ``"unrelated"``: how far the wet is a linear function of the dry
        (`apfdsp.confidence.verdict`).
    warnings : list of str
        What the user should know (unrelated signals, time-varying or strongly nonlinear effect, too
        little material, wet clipped); empty when nothing is amiss.
    delay_choice : str
        How the bulk delay was chosen among the correlation peaks (``"strongest"``, or
        ``"earliest within 6 dB"`` / ``"latest within 6 dB"``: the direct path, the shortest, rather than
        stronger reflections).
    delay_candidates : tuple of (float, float)
        The competing correlation peaks ``(delay_samples, peak)``.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay, align
    >>> dry = np.random.default_rng(0).standard_normal(24000)
    >>> wet = AllpassCascade([Allpass2(0.8, 800.0), Delay(7.0)], fs=48000)(dry)
    >>> result = align(dry, wet, fs=48000, n_sections=1)   # a given order: no order ladder
    >>> result.method, round(result.delay_samples), result.confidence, result.aligned.shape
    ('allpass', 7, 'related', (24000,))
    """

    aligned: np.ndarray
    cascade: object
    method: object
    delay_samples: float
    polarity: int
    before: dict
    delay_polarity: dict
    after: dict
    elapsed_s: float
    fit: object = None
    settings: dict = field(default_factory=dict)
    baseline: object = None
    polarity_label: str = "normal"
    phase_rotation_deg: float = 0.0
    confidence: str = "related"
    warnings: list = field(default_factory=list)
    delay_choice: str = "strongest"
    delay_candidates: tuple = ()

    @property
    def advanced(self):
        """True when the dry had to be advanced (the wet leads): possible offline only."""
        cascades = self.cascade if isinstance(self.cascade, list) else [self.cascade]
        return any(c.integer_delay < 0 for c in cascades)

    @property
    def causal(self):
        """True when the model(s) could run in real time (no advance, no anticausal section)."""
        cascades = self.cascade if isinstance(self.cascade, list) else [self.cascade]
        return all(c.causal for c in cascades)

    def summary(self):
        """JSON-safe dict of the main numbers.

        ``null_db_*`` are phase-only nulls (`apfdsp.metrics.null_depth_db`), ``broadband_null_db_*``
        the nulls a DAW's polarity-flip-and-sum shows (`apfdsp.metrics.broadband_null_db`).

        Returns
        -------
        dict
            Plain str, int, float, bool, None and lists of them (`json.dumps` writes it as it is): the method,
            delay, polarity, confidence, warnings and the metrics before and after alignment.

        Examples
        --------
        >>> import json
        >>> import numpy as np
        >>> from apfdsp import AllpassCascade, Delay, Polarity, align
        >>> dry = np.random.default_rng(0).standard_normal(24000)
        >>> wet = AllpassCascade([Delay(12.0), Polarity(-1)], fs=48000)(dry)
        >>> result = align(dry, wet, fs=48000, n_sections=1)
        >>> summary = result.summary()
        >>> round(summary["delay_samples"], 3), summary["polarity_label"], json.loads(json.dumps(summary)) == summary
        (12.0, 'inverted', True)
        """
        cascades = self.cascade if isinstance(self.cascade, list) else [self.cascade]
        sections = [_n_sections(cas) for cas in cascades]
        methods = self.method if isinstance(self.method, list) else [self.method]
        labels = [method_label(m, n) for m, n in zip(methods, sections)]
        out = {
            "delay_samples": float(self.delay_samples),
            "delay_ms": float(1e3 * self.delay_samples / cascades[0].fs),
            "polarity": int(self.polarity),
            "polarity_label": self.polarity_label,
            "phase_rotation_deg": float(self.phase_rotation_deg),
            "method": self.method,
            "method_label": labels if len(cascades) > 1 else labels[0],
            "n_sections": sections if len(cascades) > 1 else sections[0],
        }
        for key in ("mix_loss_db", "null_db", "broadband_null_db"):
            for stage, metrics in (("before", self.before), ("delay_polarity", self.delay_polarity),
                                   ("after", self.after)):
                out[f"{key}_{stage}"] = metrics[key]
        out.update(realtime_capable=bool(self.causal), elapsed_s=float(self.elapsed_s),
                   confidence=self.confidence, warnings=list(self.warnings), delay_choice=self.delay_choice,
                   delay_candidates=[[float(d), float(p)] for d, p in self.delay_candidates])
        return out


def _n_sections(cascade):
    return sum(1 for c in cascade if not isinstance(c, (Delay, Polarity)))


def method_label(method, n_sections):
    """The method as the summary prints it: ``"delay+polarity"`` or ``"allpass (N sections)"``.

    Parameters
    ----------
    method : str
        ``"allpass"`` or ``"delay+polarity"`` (`AlignResult.method`).
    n_sections : int
        Number of allpass sections of the model.

    Returns
    -------
    str

    Examples
    --------
    >>> method_label("allpass", 3), method_label("allpass", 1), method_label("delay+polarity", 0)
    ('allpass (3 sections)', 'allpass (1 section)', 'delay+polarity')
    """
    if method == "allpass" and n_sections:
        return f"allpass ({n_sections} section{'s' if n_sections != 1 else ''})"
    return "delay+polarity"


#: `broadband_polarity` calls a model that is not inverted "normal" when its mean response m is within
#: NORMAL_WITHIN_DEG of 0 degrees and at least NORMAL_MIN_LENGTH long, else "phase rotated".
NORMAL_WITHIN_DEG = 30.0
NORMAL_MIN_LENGTH = 0.8


def broadband_polarity(cascade, freqs, weights, delay_samples):
    r"""Does the model invert the signal? Judged on its phase where the signal has its energy.

    Parameters
    ----------
    cascade : AllpassCascade
        The model.
    freqs : array_like
        Frequencies in Hz (0 .. fs/2).
    weights : array_like
        Non-negative weights at `freqs`: where the signal has its energy (e.g. cross power).
    delay_samples : float
        The bulk delay to remove before judging (the delay the summary reports).

    Returns
    -------
    polarity : int
        -1 when the model inverts the signal broadband, else +1.
    label : str
        ``"inverted"``, ``"normal"`` or ``"phase rotated"`` (not inverted, but the phase turns, by
        frequency, far from 0 degrees: an allpass undoes that, a polarity button cannot).
    rotation_deg : float
        Angle of the mean response `m` in degrees.

    Notes
    -----
    With the model's response :math:`H(f)` and :math:`D` the bulk delay,

    .. math:: m = \frac{\sum_f w(f)\, H(f)\, e^{2\pi i f D / f_s}}{\sum_f w(f)}, \qquad |m| \le 1.

    :math:`\mathrm{Re}\, m` is the zero-lag correlation of the dry through the model (delay removed)
    with the dry, for a dry of power spectrum `w`; :math:`\arg m` is the mean phase and
    :math:`|m|` how concentrated the phase is. Inverted when :math:`\mathrm{Re}\, m < 0`: the
    sum of dry and wet is then deeper with the polarity button pressed, a null shallower, and the
    other way round. Not inverted: normal when :math:`|m| \ge 0.8` and :math:`\arg m` is within 30
    degrees of 0, phase rotated otherwise. A high-pass fitted as a polarity flip turned back by a
    section near z = 1 is not inverted: its phase is near 0 where the energy is.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass1, Delay, Polarity
    >>> f = np.linspace(0, 24000, 513)
    >>> w = np.where(f >= 40, 1 / np.maximum(f, 40), 0.0)  # a pink spectrum from 40 Hz
    >>> broadband_polarity(AllpassCascade([Delay(3.0), Polarity(-1)], fs=48000), f, w, 3.0)[:2]
    (-1, 'inverted')
    >>> hp_like = AllpassCascade([Polarity(-1), Allpass1(-0.999)], fs=48000)  # turns back at ~8 Hz
    >>> broadband_polarity(hp_like, f, w, 0.0)[:2]
    (1, 'normal')
    """
    freqs = np.asarray(freqs, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != freqs.shape or not np.all(weights >= 0) or not np.sum(weights) > 0:
        raise ParameterError("weights must be non-negative, not all zero, one per frequency")
    undelayed = cascade.response(freqs) * np.exp(2j * np.pi * freqs / cascade.fs * float(delay_samples))
    m = np.sum(weights * undelayed) / np.sum(weights)
    rotation = float(np.degrees(np.angle(m)))
    if m.real < 0:
        return -1, "inverted", rotation
    normal = abs(m) >= NORMAL_MIN_LENGTH and abs(rotation) <= NORMAL_WITHIN_DEG
    return 1, ("normal" if normal else "phase rotated"), rotation


#: A total delay within this many samples of zero is taken as none: a delay of -0.002 samples
#: (GCC-PHAT's noise on a near-identity effect) is no reason to advance the dry by a whole sample.
#: The phase error is under 0.03 rad at 20 kHz (48 kHz), 0.0013 rad at 1 kHz.
DELAY_SNAP_SAMPLES = 0.01


def _snap_delay(cascade):
    """The cascade with no delay at all when its delays add up to within DELAY_SNAP_SAMPLES of zero.

    A fit may realise a tiny delay as an advance of one sample and a Thiran unit of about one
    sample (a first-order section with coefficient near 0): such a section counts as its delay
    at DC, ``(1 - c) / (1 + c)``.
    """
    if cascade.integer_delay >= 0 and not any(isinstance(c, Delay) and c.samples < 0 for c in cascade):
        return cascade
    units = [c for c in cascade if isinstance(c, Allpass1) and not c.anticausal and c.warp == 0 and c.stretch == 1
             and abs(c.coef) < DELAY_SNAP_SAMPLES]
    delays = [c.samples for c in cascade if isinstance(c, Delay)] + [(1 - c.coef) / (1 + c.coef) for c in units]
    if not delays or abs(float(np.sum(delays))) >= DELAY_SNAP_SAMPLES:
        return cascade
    return AllpassCascade([c for c in cascade if not isinstance(c, Delay) and c not in units], fs=cascade.fs)


def _fit_one(est, *, fs, n_sections, structure, seed, max_bins, fit_options, callback, causal):
    """The frequency-domain fit of one (possibly multichannel, pooled) pair from its estimate: (allpass with
    the pair's whole delay, `FitResult`)."""
    freqs, H, weights = reduce_grid(est.freqs, est.H, est.x_psd, est.weights, max_bins)
    if freqs.size < 2:
        raise AudioError(
            "the dry and the wet share coherent energy at fewer than two frequencies, so there is no phase "
            "to fit (a DC offset far above the signal? remove it with a high-pass first)"
        )
    residual = est.delay_samples - est.integer_delay
    # The allpass may take over part of the bulk delay; a causal model never advances the dry. When the
    # wet leads (GCC-PHAT's delay is negative) an advance is unavoidable, and the fit may choose how much
    # (its sections add delay of their own, which a larger advance then compensates).
    min_delay = -est.integer_delay if causal and est.integer_delay >= 0 else -np.inf
    options = dict(n_sections=BASE_SECTIONS if n_sections is None else n_sections, structure=structure,
                   seed=seed, delay=residual,
                   min_delay=min_delay, anticausal=not causal, callback=callback)
    if causal and 0.0 <= est.delay_samples < 1.5:
        # Less than the smallest causal delay unit (0.5 samples after a zero shift): the allpass
        # sections alone carry the delay (first-order sections add any delay >= 0 at low frequencies).
        H = H * np.exp(-2j * np.pi * freqs / fs * est.integer_delay)
        options.update(delay=None, min_delay=None)
        est_shift = 0
    else:
        est_shift = est.integer_delay
    options.update(fit_options or {})
    result = fit_phase(freqs, H, fs=fs, weights=weights, **options)
    # Put the integer delay removed before the analysis back into the fitted delay.
    cells = []
    for cell in result.cascade:
        cells.extend(_shifted_delay(cell, est_shift) if isinstance(cell, Delay) else [cell])
    if not any(isinstance(c, Delay) for c in cells) and est_shift:
        cells.append(Delay(float(est_shift)))
    return _snap_delay(AllpassCascade(cells, fs=fs)), result


def _energy_weights(est):
    """Where the pair has its energy: the fit's weights (cross power times coherence), else the dry's PSD."""
    return est.weights if np.sum(est.weights) > 0 else est.x_psd


def _shifted_delay(cell, shift):
    """Cells for Delay `cell` plus `shift` samples, realised as fitted (the same Thiran unit)."""
    moved = Delay(cell.samples + shift)
    if cell.thiran is None or moved.shift == cell.shift + shift:
        return [moved]
    return [Delay(float(cell.shift + shift)), cell.thiran]  # a Delay cell would realise it otherwise


def _measured(meter, cascade, dry):
    """``cascade.apply(dry)`` and its `apfdsp.metrics.BinSums` against the wet of the `MixMeter` `meter`."""
    filtered = cascade.apply(dry)
    return filtered, meter.cross_sums(filtered)


def _aligned_pairs(fits, channel_pairs, meter, measured_baseline=None):
    """Per channel: the allpass if its null on the audio is deeper than delay + polarity's, else the latter.

    `measured_baseline` is `_measured` of the delay + polarity model of a single pair, when already known.
    Returns the aligned and the delay + polarity signals, the kept cascades and methods, and per channel
    the `apfdsp.metrics.BinSums` of (kept, delay + polarity).
    """
    aligned, by_baseline, cascades, methods, sums = [], [], [], [], []
    for (allpass, baseline, _, _), (d, w) in zip(fits, channel_pairs):
        channel_meter = meter if len(fits) == 1 else MixMeter(w, n=d.shape[-1], fs=meter.fs)
        dry_baseline, base_sums = measured_baseline or _measured(channel_meter, baseline, d)
        dry_allpass, allpass_sums = _measured(channel_meter, allpass, d)
        if channel_meter.null_db(dry_allpass, sums=allpass_sums) < channel_meter.null_db(dry_baseline, sums=base_sums):
            aligned.append(dry_allpass), cascades.append(allpass), sums.append((allpass_sums, base_sums))
            methods.append("allpass" if _n_sections(allpass) else "delay+polarity")
        else:
            aligned.append(dry_baseline), cascades.append(baseline), sums.append((base_sums, base_sums))
            methods.append("delay+polarity")
        by_baseline.append(dry_baseline)
    return aligned, by_baseline, cascades, methods, sums


#: `align` does the work that does not wait for the fit on a second thread when dry and wet together hold at
#: most this many samples (5 s of mono at 48 kHz: 480000), else in order (memory, see `_fit_pairs`).
BESIDE_MAX_SAMPLES = 2**20


def _fit_pairs(dry, wet, channel_pairs, *, max_delay_s, nperseg, automatic, **kwargs):
    """Estimate and fit each of `channel_pairs`; beside the fits, on a second thread, the work that does not
    wait for them.

    The fits are mostly Python-level work that holds the GIL; the wet's `MixMeter`, the 'before' report, the
    pair statistics, the delay + polarity candidate (`_measured`, one pair only) and the order probe are
    long FFTs and einsums that release it. The results are those of doing the same work in order, which is
    what happens on pairs longer than `BESIDE_MAX_SAMPLES`.
    Returns ``(fits, meter, before, statistics, measured_baseline)``.
    """
    fs, callback = kwargs["fs"], kwargs.pop("callback")
    # On a long pair each thread would keep its own peak of freed memory (the allocator's per-thread
    # arenas: 50 MB more on an analysis excerpt of 2^20 samples per signal), so the work runs in order there.
    background = ThreadPoolExecutor(max_workers=1) if dry.size + wet.size <= BESIDE_MAX_SAMPLES else None
    # The wet's meter is made while the estimate runs; the rest waits until the fit has polished its first
    # start: the equation-error designs, which keep both cores busy, are over by then.
    polishing = threading.Event()

    def progress(stage, done, total):
        polishing.set()
        if callback is not None:
            callback(stage, done, total)

    def beside(function, *args, after_designs=True, **keywords):
        if background is None:
            done = Future()
            done.set_result(function(*args, **keywords))
            return done

        def task():
            if after_designs:
                polishing.wait()
            return function(*args, **keywords)
        return background.submit(task)

    try:
        meter = beside(MixMeter, wet, n=dry.shape[-1], fs=fs, after_designs=False)  # the wet's STFT, once
        before = beside(lambda: meter.result().report(dry), after_designs=False)
        fits, statistics, measured_baseline = [], None, None
        for d, w in channel_pairs:
            est = estimate(d, w, fs=fs, max_delay_s=max_delay_s, nperseg=nperseg)
            baseline = _snap_delay(delay_polarity_model(est, fs=fs))
            if statistics is None:
                statistics = beside(pair_statistics, dry, wet, fs=fs, integer_delay=est.integer_delay)
            if len(channel_pairs) == 1:
                measured_baseline = beside(lambda cascade=baseline, d=d: _measured(meter.result(), cascade, d))
            probe = beside(order_probe, est, fs=fs) if automatic else None
            allpass, result = _fit_one(est, callback=progress, **kwargs)
            polishing.set()  # also when the fit did not report (a callback of `fit_options` replaces `progress`)
            if automatic:
                allpass = more_sections(d, w, est, allpass, fs=fs, causal=kwargs["causal"], seed=kwargs["seed"],
                                        probe=probe.result())
            fits.append((allpass, baseline, est, result))
        return (fits, meter.result(), before.result(), statistics.result(),
                measured_baseline and measured_baseline.result())
    finally:
        polishing.set()
        if background is not None:
            background.shutdown(cancel_futures=True)  # on an error, what has not started never starts


def _align(dry, wet, *, fs, n_sections, structure, seed, max_delay_s, per_channel, causal, max_bins, nperseg,
           fit_options, callback, keep_audio):
    """`align` (``keep_audio=True``) and `fit_alignment`: fit, choose per channel, measure, judge."""
    start = time.perf_counter()
    fs = valid_fs(fs)
    dry, wet = valid_pair(dry, wet, names=("dry", "wet"), max_ndim=2)
    if n_sections is not None:
        n_sections = valid_int(n_sections, "n_sections", minimum=1, maximum=64)
    max_bins = valid_int(max_bins, "max_bins", minimum=16)
    if not (np.isfinite(max_delay_s) and max_delay_s > 0):
        raise ParameterError(f"max_delay_s must be a positive number of seconds, got {max_delay_s!r}")
    kwargs = dict(fs=fs, n_sections=n_sections, structure=structure, seed=seed, max_bins=max_bins,
                  fit_options=fit_options, callback=callback, causal=causal)
    if per_channel and dry.ndim == 2 and dry.shape[0] > 1:
        # a mono wet serves every channel (lengths may differ: only the channel axis broadcasts)
        wets = wet if wet.ndim == 2 and wet.shape[0] == dry.shape[0] else np.broadcast_to(
            wet, dry.shape[:-1] + wet.shape[-1:])
        channel_pairs = list(zip(dry, wets))
    else:
        channel_pairs = [(dry, wet)]
    automatic = n_sections is None and structure != "stretched"
    fits, meter, before, statistics, measured_baseline = _fit_pairs(
        dry, wet, channel_pairs, max_delay_s=max_delay_s, nperseg=nperseg, automatic=automatic, **kwargs)
    single = len(fits) == 1
    aligned, by_baseline, cascades, methods, sums = _aligned_pairs(fits, channel_pairs, meter, measured_baseline)
    aligned, by_baseline = (aligned[0], by_baseline[0]) if single else (np.stack(aligned), np.stack(by_baseline))
    # One shared model: the sums measured while choosing are those of the whole result.
    after = meter.report(aligned, sums=sums[0][0] if single else None)
    delay_polarity = after if all(m == "delay+polarity" for m in methods) else meter.report(
        by_baseline, sums=sums[0][1] if single else None)
    first_est = fits[0][2]
    polarity, polarity_label, rotation = broadband_polarity(
        cascades[0], first_est.freqs, _energy_weights(first_est), first_est.delay_samples)
    confidence, warnings = verdict(statistics, null_db=after["null_db"], peak=first_est.gcc_peak)
    return AlignResult(
        aligned=aligned if keep_audio else None,
        cascade=cascades[0] if single else cascades,
        method=methods[0] if single else methods,
        delay_samples=float(first_est.delay_samples),
        polarity=polarity,
        polarity_label=polarity_label,
        phase_rotation_deg=rotation,
        before=before,
        delay_polarity=delay_polarity,
        after=after,
        elapsed_s=time.perf_counter() - start,
        fit=fits[0][3] if single else [f[3] for f in fits],
        baseline=fits[0][1] if single else [f[1] for f in fits],
        settings={"n_sections": n_sections, "structure": structure, "seed": seed,
                  "max_delay_s": max_delay_s, "per_channel": bool(per_channel), "causal": bool(causal),
                  "max_bins": max_bins,
                  "nperseg": first_est.nperseg, "fit_options": dict(fit_options or {})},
        confidence=confidence,
        warnings=warnings,
        delay_choice=first_est.delay_choice,
        delay_candidates=first_est.delay_candidates,
    )


@single_threaded_blas
def fit_alignment(dry, wet, *, fs, n_sections=None, structure="warped", seed=0, max_delay_s=0.1,
                  per_channel=False, causal=False, max_bins=2048, nperseg=None, fit_options=None,
                  callback=None):
    r"""The alignment model of a dry/wet pair and its measurements, without the aligned audio.

    What `align` computes, for callers that filter the audio themselves (long files are filtered block
    by block by `apfdsp.io.apply_file`, see `apfdsp.align_files`).

    Parameters
    ----------
    dry, wet : array_like, shape (n,) or (channels, n)
        The unprocessed and the processed signal, as `align` takes them.
    fs : float
        Sample rate of both, in Hz.
    n_sections, structure, seed, max_delay_s, per_channel, causal, max_bins, nperseg, fit_options, callback
        As in `align` (same defaults, `ALIGN_DEFAULTS`).

    Returns
    -------
    AlignResult
        As `align`, with ``aligned`` None.

    Raises
    ------
    AudioError
        Empty, silent, non-finite or too short audio.
    ParameterError
        Bad option values or channel layouts.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> dry = np.random.default_rng(0).standard_normal(48000)
    >>> effect = AllpassCascade([Allpass2(0.9, 500.0), Delay(12.0)], fs=48000)
    >>> result = fit_alignment(dry, effect(dry), fs=48000, n_sections=2)
    >>> result.aligned is None, round(result.delay_samples), bool(result.after["null_db"] < -40)
    (True, 12, True)
    >>> bool(np.allclose(result.cascade.apply(dry), align(dry, effect(dry), fs=48000, n_sections=2).aligned))
    True
    """
    return _align(dry, wet, fs=fs, n_sections=n_sections, structure=structure, seed=seed, max_delay_s=max_delay_s,
                  per_channel=per_channel, causal=causal, max_bins=max_bins, nperseg=nperseg,
                  fit_options=fit_options, callback=callback, keep_audio=False)


@single_threaded_blas
def align(dry, wet, *, fs, n_sections=None, structure="warped", seed=0, max_delay_s=0.1, per_channel=False,
          causal=False, max_bins=2048, nperseg=None, fit_options=None, callback=None):
    r"""Align `dry` with `wet`: delay, polarity and an allpass fitted to the phase between them.

    Parameters
    ----------
    dry : array_like, shape (n,) or (channels, n)
        The unprocessed signal.
    wet : array_like, shape (m,) or (channels, m)
        The processed signal (any effect: its latency, polarity and phase shift are what is undone).
        Lengths may differ; a mono dry against a stereo wet is fine.
    fs : float
        Sample rate of both, in Hz.
    n_sections : int or None
        Largest number of second-order allpass sections. None (default): chosen from the data. The
        frequency-domain fit gets up to 8; where an equation-error probe says a higher order would
        fit the measured phase much better (by 10 dB, `apfdsp.fit_audio.PROBE_MARGIN_DB`), the time-domain
        equation-error design of `apfdsp.fit_audio` with up to 32 sections
        (`apfdsp.fit_audio.MAX_SECTIONS`) is made too, and its model is kept if it beats the first
        fit's null on the audio by at least 1 dB (`apfdsp.fit_audio.ORDER_MARGIN_DB`). Where the
        measured magnitude is flat (within 0.5 dB RMS) and a time-domain allpass probe on the samples
        beats the first fit's null by 10 dB (an allpass effect; docs/maths.md, section 9.9), that
        design is made with 3 sections, then 8 and 16 while each deepens the previous one's null by
        1 dB, up to the order the probe says suffices. High-order allpass effects
        (allpass combs, long chains) get the order they need; effects that 8 sections fit pay only
        for the probes.
    structure : {"warped", "traditional", "stretched"}
        Second-order section type (see `apfdsp.fit_phase`).
    seed : int
        Seed of the fit's random starts (the result is deterministic for a given seed).
    max_delay_s : float
        Largest latency searched, in seconds, either sign.
    per_channel : bool
        Fit one model per channel instead of one shared, phase-coherent model.
    causal : bool
        Keep the model causal (the dry is only ever delayed, every section runs forwards in time), so
        that it could also run in real time. The default (False) lets the fit advance the dry a little
        and use anticausal sections (run backwards in time, see `apfdsp.Allpass2`): a causal allpass
        has a positive group delay and cannot follow the phase of a high-pass or a peaking EQ, a mixed
        cascade can (measured in the README: -20 -> -36 dB on a first-order high-pass, -20 -> -46 dB
        on a peaking EQ). Such a model applies to files of any length (`apfdsp.io.apply_file`).
        When the wet leads the dry an advance is unavoidable either way; with ``causal=True`` the
        model then has no anticausal sections, and advances as much as its fit needs.
    max_bins : int
        The Welch spectrum is merged into at most this many log-spaced bands for the fit.
    nperseg : int, optional
        Welch segment length (default: 16384 at 48 kHz, scaled with fs and the audio length).
    fit_options : dict, optional
        Further keyword arguments for `apfdsp.fit_phase`.
    callback : callable, optional
        Progress callback ``callback(stage, done, total)``.

    Returns
    -------
    AlignResult
        ``aligned`` has the shape of `dry`. If the dry must be delayed it is delayed (the tail beyond
        its length is dropped); if it must be advanced (the wet leads) it is advanced offline and
        ``result.advanced`` is True.

    Raises
    ------
    AudioError
        Empty, silent, non-finite or too short audio.
    ParameterError
        Bad option values or channel layouts.

    Notes
    -----
    The fit minimises :math:`\sum_f w(f)(1 - \cos(\phi_H(f) - \phi(f)))` with
    :math:`w = |S_{yx}|\,\gamma^2` (cross power times coherence), then the result is checked on the
    audio: the allpass model is kept only if its null depth (`apfdsp.metrics.null_depth_db`) is deeper
    than that of delay + polarity alone.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> rng = np.random.default_rng(0)
    >>> dry = rng.standard_normal(48000)
    >>> effect = AllpassCascade([Allpass2(0.9, 500.0), Allpass2(0.8, 5000.0), Delay(12.0)], fs=48000)
    >>> result = align(dry, effect(dry), fs=48000, n_sections=4)
    >>> result.method, bool(result.after["null_db"] < -40)
    ('allpass', True)
    """
    return _align(dry, wet, fs=fs, n_sections=n_sections, structure=structure, seed=seed, max_delay_s=max_delay_s,
                  per_channel=per_channel, causal=causal, max_bins=max_bins, nperseg=nperseg,
                  fit_options=fit_options, callback=callback, keep_audio=True)
