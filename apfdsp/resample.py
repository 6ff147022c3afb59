r"""Move an allpass model to another sample rate: `resample_cascade`.

A cascade fitted at one sample rate cannot simply be run at another: its coefficients are defined in
samples, so every pole frequency would scale with the rate. `resample_cascade` re-fits the model's
phase curve for the new rate instead (`apfdsp.fit_phase` on the exact phase of the old cascade), and
carries the delay over in seconds.

Band limit
----------
The phase is matched on a log grid from 20 Hz to ``0.45 * min(fs_old, fs_new)``. Below the Nyquist
frequency of both rates the old model defines the target; above ``0.45 * min(...)`` nothing constrains
the new cascade. Going up in rate (48 kHz -> 96 kHz), the model's phase between 21.6 kHz and 48 kHz is
whatever the fit produces; going down (192 kHz -> 48 kHz), everything the old model did above 21.6 kHz
is dropped. The returned phase error is measured on the same grid.

Implements docs/maths.md, section 8.6 (the refit); docs/architecture.md, section 2.17.
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from ._validate import valid_fs, valid_int
from .cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from .fit import fit_phase
from .metrics import weighted_phase_error
from .ranges import DEFAULT_RANGES

__all__ = ["resample_cascade", "resample_grid", "ResampleResult", "RESAMPLE_F_MIN_HZ", "RESAMPLE_BAND_FRACTION"]

#: Lowest frequency of the grid on which the phase is matched (Hz).
RESAMPLE_F_MIN_HZ = 20.0
#: The grid ends at this fraction of the lower of the two sample rates.
RESAMPLE_BAND_FRACTION = 0.45
_N_FREQS = 512
_R_LIMIT = 0.99999  # the largest pole radius a resampled model may be given


class ResampleResult(NamedTuple):
    """What `resample_cascade` returns (unpacks as ``cascade, phase_error_rad``).

    Attributes
    ----------
    cascade : AllpassCascade
        The model at the new sample rate.
    phase_error_rad : float
        RMS wrapped phase difference (rad) between the new and the old model on the log grid from
        20 Hz to ``0.45 * min(fs_old, fs_new)`` (every octave weighted equally).

    Examples
    --------
    >>> from apfdsp import AllpassCascade, Allpass2, resample_cascade
    >>> cascade, error = resample_cascade(AllpassCascade([Allpass2(0.8, 1000.0)], fs=48000), 96000)
    >>> cascade.fs, bool(error < 1e-3)
    (96000.0, True)
    """

    cascade: AllpassCascade
    phase_error_rad: float


def resample_grid(fs_old, fs_new, n=_N_FREQS):
    """Log-spaced frequencies (Hz) on which `resample_cascade` matches the phase.

    Parameters
    ----------
    fs_old, fs_new : float
        Sample rates (Hz) of the model and of its resampled twin.
    n : int
        Number of frequencies.

    Returns
    -------
    ndarray, shape (n,)
        Frequencies from 20 Hz to ``0.45 * min(fs_old, fs_new)``, log-spaced.

    Examples
    --------
    >>> f = resample_grid(48000, 44100, n=4)
    >>> float(f[0]), round(float(f[-1]), 6)        # 20 Hz to 0.45 * min(fs_old, fs_new)
    (20.0, 19845.0)
    """
    f_max = RESAMPLE_BAND_FRACTION * min(fs_old, fs_new)
    return np.geomspace(RESAMPLE_F_MIN_HZ, f_max, n)


def _ranges_for(cascade, ratio, fs):
    """Parameter ranges wide enough for the old poles moved to the new rate (radius r -> r**ratio)."""
    poles = cascade.poles()
    radius = float(np.max(np.abs(poles))) ** ratio if poles.size else 0.0
    limit = min(_R_LIMIT, 1.0 - 0.5 * (1.0 - radius)) if radius > 0 else 0.0
    return dataclasses.replace(
        DEFAULT_RANGES,
        r_max=max(DEFAULT_RANGES.radius_limit(fs), limit),
        coef_max=max(DEFAULT_RANGES.coef_limit(fs), limit),
    )


def resample_cascade(cascade, fs, *, n_sections=None, structure="warped", seed=0):
    r"""Re-fit an allpass cascade for another sample rate.

    Parameters
    ----------
    cascade : AllpassCascade
        The model, at its own rate ``cascade.fs``.
    fs : float
        The new sample rate in Hz.
    n_sections : int, optional
        Largest number of second-order sections of the new model (see `apfdsp.fit_phase`). Default:
        ``order // 2 + 1``, where ``order`` is the total order of the old model's allpass sections.
    structure : {"warped", "traditional", "stretched"}
        Section type of the new model (warped + stretched sections do not carry over between rates,
        so the default is ``"warped"`` whatever the old structure).
    seed : int
        Seed of the fit's random starts: the result is deterministic.

    Returns
    -------
    ResampleResult
        ``(cascade, phase_error_rad)``: the new model and its RMS phase error (rad) against the old
        model on the common band.

    Raises
    ------
    TypeError
        If `cascade` is not an `AllpassCascade`.
    ParameterError
        For a bad `fs`, `n_sections` or `structure`.

    See Also
    --------
    apfdsp.fit_phase

    Notes
    -----
    The delay is kept in seconds: the Delay cells of the old model, ``D`` samples in total, become
    ``D' = D * fs / cascade.fs`` samples at the new rate.

    * If ``D'`` is a whole number it is kept exactly as ``Delay(D')``, and the allpass sections are
      fitted to the rest, :math:`\phi_t(f) = \phi_\mathrm{old}(f) + 2\pi f D'/f_s`.
    * A fractional ``D'`` cannot be matched up to the Nyquist frequency by any delay filter (a real
      filter has a phase of a multiple of :math:`\pi` there), so it is fitted jointly with the
      sections, starting from ``D'`` (`apfdsp.fit_phase` with ``delay=D'``), which reaches a smaller
      error near the band edge than a fixed Thiran section.
    * A ``D'`` between 0 and 0.5 samples would need a one-sample advance (`apfdsp.Delay` realises
      fractional delays as a shift plus a Thiran section of 0.5 to 1.5 samples); when the old model
      was causal, the sections carry it instead, so that a causal model stays causal (streamable).
      A model that advances already (offline) may come back with a larger advance, and one with
      anticausal sections may have anticausal sections again; a causal model stays causal.

    The polarity of the old model is kept. By default the new model may have one second-order section
    more than the old one's order needs: the spare section bends the phase near the new Nyquist
    frequency, which the old model did not have to do. The fit matches the phase modulo
    :math:`2\pi` (`apfdsp.losses.phase_loss`): a model whose phase turns by several :math:`2\pi` over a
    few hertz (poles very close to the unit circle) may be matched with fewer turns.

    Matching is done on the log grid from 20 Hz to ``0.45 * min(cascade.fs, fs)`` (module docstring,
    "Band limit"): above it the new model's phase is unconstrained.

    Examples
    --------
    >>> from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay
    >>> old = AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(-0.5), Delay(4.0)], fs=48000)
    >>> new, error = resample_cascade(old, 96000)
    >>> new.fs, new.integer_delay, bool(error < 0.01)
    (96000.0, 8, True)
    """
    if not isinstance(cascade, AllpassCascade):
        raise TypeError(f"cascade must be an AllpassCascade, got {type(cascade).__name__}")
    fs = valid_fs(fs)
    if n_sections is not None:
        n_sections = valid_int(n_sections, "n_sections", minimum=1, maximum=64)
    fs_old = cascade.fs
    if fs == fs_old:
        return ResampleResult(cascade.copy(), 0.0)

    freqs = resample_grid(fs_old, fs)
    old_phase = cascade.phase(freqs)
    order = sum(c.order for c in cascade if isinstance(c, (Allpass1, Allpass2)))
    delay = sum(c.samples for c in cascade if isinstance(c, Delay)) * fs / fs_old
    if abs(delay - round(delay)) < 1e-9:
        delay = float(round(delay))
    fixed = []  # cells kept as they are: an integer delay, exactly preserved
    fit_delay = None  # starting value of a delay fitted jointly with the sections
    if delay.is_integer():
        fixed = [Delay(delay)] if delay else []
    elif int(np.round(delay)) - 1 >= 0 or cascade.integer_delay < 0:  # fit_phase's split: no advance
        fit_delay = delay
    else:
        order += 1  # 0 < delay < 0.5 sample would need an advance: the sections carry it

    if order == 0 and fit_delay is None:
        cells = fixed + ([Polarity(-1)] if cascade.polarity < 0 else [])
    else:
        if n_sections is None:
            n_sections = order // 2 + 1  # one spare section (see Notes)
        target = old_phase - AllpassCascade(fixed, fs=fs).phase(freqs)
        result = fit_phase(freqs, target, fs=fs, structure=structure, n_sections=n_sections,
                           polarity=cascade.polarity, delay=fit_delay, seed=seed,
                           ranges=_ranges_for(cascade, fs_old / fs, fs),
                           anticausal=bool(cascade.sos_anticausal.shape[0]),
                           # a model that advances already is offline: its fit may advance further
                           min_delay=-np.inf if cascade.integer_delay < 0 else None)
        cells = list(result.cascade) + fixed
    # One Delay cell: the carried-over delay plus any sections the fit collapsed into pure delays.
    total = sum(c.samples for c in cells if isinstance(c, Delay))
    cells = [c for c in cells if not isinstance(c, Delay)] + ([Delay(total)] if total else [])
    new = AllpassCascade(cells, fs=fs)
    return ResampleResult(new, weighted_phase_error(new.phase(freqs), old_phase))
