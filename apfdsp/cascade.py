"""Allpass cells and `AllpassCascade`, the list-like container that filters audio with `sosfilt`.

Implements docs/maths.md, sections 1.3, 2.5, 2.6 (running a cascade), 3 and 4; its place in the
package is docs/architecture.md, section 2.4.
"""

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from scipy import signal

from ._validate import LIMITS, valid_audio, valid_bool, valid_freqs, valid_fs, valid_int, valid_range
from .exceptions import ParameterError
from .filters import (
    allpass_group_delay,
    allpass_phase,
    allpass_section_sos,
    second_order_denominator,
    thiran_coef,
)

__all__ = ["Allpass2", "Allpass1", "Delay", "Polarity", "AllpassCascade", "FilterState"]


def _warp_suffix(cell):
    """", warp=..., stretch=..., anticausal" for the parameters that differ from a traditional section."""
    return ((f", warp={cell.warp:.6g}" if cell.warp else "") + (f", stretch={cell.stretch}" if cell.stretch > 1 else "")
            + (", anticausal" if cell.anticausal else ""))


def _structure(warp, stretch):
    if stretch > 1:
        return "warped+stretched"
    return "warped" if warp != 0.0 else "traditional"


@dataclass(frozen=True)
class Allpass2:
    """Second-order allpass section (traditional, warped or warped + stretched).

    Parameters
    ----------
    pole_radius : float
        Pole radius R, ``0 <= R < 1``.
    fc_hz : float
        Pole frequency in Hz, ``0 <= fc_hz <= fs/2`` (checked by the cascade, which knows fs).
    warp : float
        Warping coefficient a, ``|a| < 1``; 0 for a traditional section.
    stretch : int
        Stretch factor K >= 1; the section then has order 2K.
    anticausal : bool
        Run the section backwards in time (offline only). Its response is the complex conjugate of the
        causal section's: the phase changes sign, the group delay is negative. Such a section is the
        stable realisation of an allpass whose poles lie outside the unit circle, at
        1/conj(p), and is what lets a cascade follow the phase of a minimum-phase filter
        (a high-pass, a peaking EQ) that no causal allpass can follow.

    Examples
    --------
    The section is an allpass whose phase falls by 2 pi from DC to Nyquist; its SOS agree with scipy:

    >>> import numpy as np
    >>> from scipy import signal
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0)], fs=48000)
    >>> f = np.array([0.0, 1000.0, 24000.0])
    >>> np.round(cascade.phase(f)[[0, 2]] / np.pi, 6).tolist()
    [0.0, -2.0]
    >>> _, h = signal.sosfreqz(cascade.sos, worN=f, fs=48000)
    >>> bool(np.allclose(h, cascade.response(f))), bool(np.allclose(np.abs(h), 1))
    (True, True)
    >>> Allpass2(0.9, 1000.0, warp=-0.5).structure, Allpass2(0.9, 1000.0, anticausal=True).order
    ('warped', 2)
    """

    pole_radius: float
    fc_hz: float
    warp: float = 0.0
    stretch: int = 1
    anticausal: bool = False

    def __post_init__(self):
        object.__setattr__(self, "pole_radius", valid_range(self.pole_radius, "pole_radius", 0.0, 1.0, hi_open=True))
        object.__setattr__(self, "fc_hz", valid_range(self.fc_hz, "fc_hz", 0.0, np.inf, hi_open=True))
        object.__setattr__(self, "warp", valid_range(self.warp, "warp", -1.0, 1.0, lo_open=True, hi_open=True))
        object.__setattr__(self, "stretch", valid_int(self.stretch, "stretch", minimum=1))
        object.__setattr__(self, "anticausal", valid_bool(self.anticausal, "anticausal"))

    order = property(lambda self: 2 * self.stretch, doc="Order of the section (2K).")
    structure = property(lambda self: _structure(self.warp, self.stretch),
                         doc='"traditional", "warped" or "warped+stretched".')

    def den(self, fs):
        r"""Denominator coefficients ``[d, c]`` in the warped delay.

        Parameters
        ----------
        fs : float
            Sample rate in Hz.

        Returns
        -------
        ndarray, shape (2,)
            ``[d, c]`` with :math:`d = -2R\cos(2\pi f_c/f_s)`, :math:`c = R^2` (docs/maths.md, section 1.1).

        Examples
        --------
        >>> d, c = Allpass2(0.5, 8000.0).den(48000)   # pole pair 0.5 exp(+-j pi/3): d = -2 R cos(pi/3)
        >>> round(float(d), 12), float(c)
        (-0.5, 0.25)
        """
        return second_order_denominator(self.pole_radius, self.fc_hz, fs=fs)

    def __str__(self):
        return f"Allpass2(R={self.pole_radius:.6g}, fc={self.fc_hz:.6g} Hz{_warp_suffix(self)})"


@dataclass(frozen=True)
class Allpass1:
    """First-order allpass section ``(b + v) / (1 + b v)`` in the warped, stretched delay v.

    Parameters
    ----------
    coef : float
        Coefficient b, ``|b| < 1`` (the pole, in v, is at ``-b``).
    warp : float
        Warping coefficient, ``|a| < 1``.
    stretch : int
        Stretch factor K >= 1; the section then has order K.
    anticausal : bool
        Run the section backwards in time (offline only); see `Allpass2`.

    Examples
    --------
    >>> import numpy as np
    >>> cascade = AllpassCascade([Allpass1(-0.5)], fs=48000)
    >>> np.round(cascade.phase(np.array([0.0, 24000.0])) / np.pi, 6).tolist()
    [0.0, -1.0]
    >>> cascade.poles().tolist()   # the pole of (b + z^-1)/(1 + b z^-1) is -b
    [(0.5+0j)]
    """

    coef: float
    warp: float = 0.0
    stretch: int = 1
    anticausal: bool = False

    def __post_init__(self):
        object.__setattr__(self, "coef", valid_range(self.coef, "coef", -1.0, 1.0, lo_open=True, hi_open=True))
        object.__setattr__(self, "warp", valid_range(self.warp, "warp", -1.0, 1.0, lo_open=True, hi_open=True))
        object.__setattr__(self, "stretch", valid_int(self.stretch, "stretch", minimum=1))
        object.__setattr__(self, "anticausal", valid_bool(self.anticausal, "anticausal"))

    order = property(lambda self: self.stretch, doc="Order of the section (K).")
    structure = property(lambda self: _structure(self.warp, self.stretch),
                         doc='"traditional", "warped" or "warped+stretched".')

    def den(self, fs=None):
        """Denominator coefficients ``[b]`` in the warped delay.

        Parameters
        ----------
        fs : float, optional
            Unused (a first-order section is defined without it); accepted like `Allpass2.den`.

        Returns
        -------
        ndarray, shape (1,)
            ``[b]``.

        Examples
        --------
        >>> Allpass1(-0.5).den().tolist()
        [-0.5]
        """
        return np.array([self.coef])

    def __str__(self):
        return f"Allpass1(coef={self.coef:.6g}{_warp_suffix(self)})"


#: A delay within this many samples of an integer is realised as that integer shift: the Thiran unit of
#: a delay d > 0 near zero has its pole at -(1 - d)/(1 + d), on the unit circle once d is below about
#: 1e-16 (a GCC-PHAT estimate of 7e-21 samples on a mostly silent file built Allpass1(1.0)), and beyond
#: the radius a model file may hold (``LIMITS["model_pole_radius"]``) below this tolerance, 5e-7 samples
#: (a phase error of 1.3e-6 rad at 20 kHz, 48 kHz).
_INTEGER_DELAY_TOLERANCE = (1.0 - LIMITS["model_pole_radius"]) / (1.0 + LIMITS["model_pole_radius"])


@dataclass(frozen=True)
class Delay:
    """A delay of `samples` samples (negative = advance, offline only).

    An integer delay is an exact shift. A fractional delay is realised as an integer shift
    ``round(samples) - 1`` followed by a first-order Thiran allpass of delay ``samples - shift``
    (between 0.5 and 1.5 samples), which is exact at DC; responses report the realised filter.
    A delay between 0 and 0.5 samples is never realised with an advance: its shift is 0 and the
    Thiran section carries all of it (causal; accurate at low and mid frequencies). A delay within
    5e-7 samples of an integer is that integer's exact shift (a Thiran unit for less would have its
    pole nearer the unit circle than a model file may hold, `apfdsp._validate.LIMITS`).

    Parameters
    ----------
    samples : float
        Delay in samples, finite; negative for an advance.

    Examples
    --------
    A fractional delay is an integer shift and a Thiran section whose group delay at DC is exact:

    >>> import numpy as np
    >>> cell = Delay(3.4)
    >>> cell.shift, round(cell.thiran.coef, 6)
    (2, -0.166667)
    >>> float(AllpassCascade([cell], fs=48000).group_delay(np.array([0.0]))[0])
    3.4
    >>> Delay(5.0).thiran is None
    True
    """

    samples: float

    def __post_init__(self):
        object.__setattr__(self, "samples", valid_range(self.samples, "samples"))

    def _is_integer(self):
        return abs(self.samples - round(self.samples)) <= _INTEGER_DELAY_TOLERANCE

    @property
    def shift(self):
        """The integer part of the delay, applied as a shift."""
        if self._is_integer():
            return int(round(self.samples))
        shift = int(np.round(self.samples)) - 1
        return max(shift, 0) if self.samples > 0 else shift

    @property
    def thiran(self):
        """The Thiran section realising the fractional part, or None for an integer delay."""
        if self._is_integer():
            return None
        return Allpass1(thiran_coef(self.samples - self.shift))

    def __str__(self):
        return f"Delay({self.samples:.6g} samples)"


@dataclass(frozen=True)
class Polarity:
    """A polarity flip (``sign=-1``) or none (``sign=1``).

    Parameters
    ----------
    sign : int
        -1 (inverted, the default) or 1.

    Examples
    --------
    >>> import numpy as np
    >>> inverted = AllpassCascade([Polarity(-1)], fs=48000)
    >>> inverted.apply(np.array([1.0, -2.0])).tolist(), inverted.polarity, float(inverted.phase(np.array([100.0]))[0])
    ([-1.0, 2.0], -1, -3.141592653589793)
    """

    sign: int = -1

    def __post_init__(self):
        if self.sign not in (1, -1) or isinstance(self.sign, bool):
            raise ParameterError(f"sign must be 1 or -1, got {self.sign!r}")
        object.__setattr__(self, "sign", int(self.sign))

    def __str__(self):
        return "Polarity(inverted)" if self.sign < 0 else "Polarity(normal)"


_CELL_TYPES = {"allpass2": Allpass2, "allpass1": Allpass1, "delay": Delay, "polarity": Polarity}
_CELL_NAMES = {cls: name for name, cls in _CELL_TYPES.items()}


class FilterState(NamedTuple):
    """State carried between blocks by `AllpassCascade.apply`: sosfilt state and delay line.

    Attributes
    ----------
    zi : ndarray
        `scipy.signal.sosfilt` state of the SOS, shape ``(n_sections, ..., 2)``.
    delay_line : ndarray
        The last `integer_delay` input samples along the time axis.

    Examples
    --------
    Filtering block by block with the state carried gives the samples of one call:

    >>> import numpy as np
    >>> cascade = AllpassCascade([Allpass2(0.9, 500.0), Delay(3.0)], fs=48000)
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> state = cascade.initial_state(x[:400].shape)
    >>> first, state = cascade.apply(x[:400], zi=state)
    >>> second, state = cascade.apply(x[400:], zi=state)
    >>> bool(np.array_equal(np.r_[first, second], cascade.apply(x))), state.delay_line.shape
    (True, (3,))
    """

    zi: np.ndarray
    delay_line: np.ndarray


class AllpassCascade:
    """A cascade of allpass cells at sample rate `fs`: list-like and callable.

    Parameters
    ----------
    cells : iterable of Allpass2, Allpass1, Delay, Polarity
        The cells, applied in order (their order does not change the response).
    fs : float
        Sample rate in Hz.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import sosfilt, unit_impulse
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(-0.5), Polarity(-1)], fs=48000)
    >>> x = unit_impulse(256)
    >>> bool(np.allclose(cascade(x), sosfilt(cascade.sos, x)))
    True
    >>> bool(np.allclose(np.abs(cascade.response([100.0, 1e3, 1e4])), 1.0))
    True
    """

    def __init__(self, cells=(), *, fs):
        self.fs = valid_fs(fs)
        self._cells = []
        self._sos = None
        self.extend(cells)

    # -- list behaviour -------------------------------------------------------------------------
    def _check_cell(self, cell):
        if type(cell) not in _CELL_NAMES:
            raise TypeError(
                f"cells must be Allpass2, Allpass1, Delay or Polarity objects, got {type(cell).__name__}"
            )
        if isinstance(cell, Allpass2) and not cell.fc_hz <= self.fs / 2:
            raise ParameterError(f"fc_hz must lie in [0, fs/2] = [0, {self.fs / 2:g}] Hz, got {cell.fc_hz!r}")
        return cell

    def append(self, cell):
        """Append one cell.

        Parameters
        ----------
        cell : Allpass2, Allpass1, Delay or Polarity

        Examples
        --------
        >>> cascade = AllpassCascade([Allpass2(0.9, 500.0)], fs=48000)
        >>> cascade.append(Delay(2.0))
        >>> len(cascade), cascade.integer_delay
        (2, 2)
        """
        self._cells.append(self._check_cell(cell))
        self._sos = None  # cells are immutable: the SOS only changes when the list does

    def extend(self, cells):
        """Append several cells.

        Parameters
        ----------
        cells : iterable of Allpass2, Allpass1, Delay, Polarity

        Examples
        --------
        >>> cascade = AllpassCascade([], fs=48000)
        >>> cascade.extend([Allpass2(0.5, 3000.0), Polarity(-1)])
        >>> len(cascade), cascade.polarity
        (2, -1)
        """
        for cell in cells:
            self.append(cell)

    def __len__(self):
        return len(self._cells)

    def __iter__(self):
        return iter(self._cells)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return AllpassCascade(self._cells[index], fs=self.fs)
        return self._cells[index]

    def __eq__(self, other):
        return isinstance(other, AllpassCascade) and self.fs == other.fs and self._cells == other._cells

    def copy(self):
        """Return a shallow copy (cells are immutable).

        Returns
        -------
        AllpassCascade
            A new cascade with the same cells and `fs`.

        Examples
        --------
        >>> cascade = AllpassCascade([Allpass2(0.9, 500.0)], fs=48000)
        >>> twin = cascade.copy(); twin.append(Allpass2(0.5, 100.0))
        >>> len(cascade), len(twin)
        (1, 2)
        """
        return AllpassCascade(self._cells, fs=self.fs)

    # -- derived quantities --------------------------------------------------------------------------
    @property
    def polarity(self):
        """+1 or -1: the product of the Polarity cells."""
        return int(np.prod([c.sign for c in self._cells if isinstance(c, Polarity)] or [1]))

    @property
    def integer_delay(self):
        """Total integer shift in samples (applied by `apply` outside the SOS)."""
        return int(sum(c.shift for c in self._cells if isinstance(c, Delay)))

    @property
    def order(self):
        """Total filter order of the SOS parts (causal and anticausal)."""
        return int(sum(c.order for c in self._filter_cells()) + sum(c.order for c in self._filter_cells(True)))

    @property
    def causal(self):
        """True when the cascade can run in real time: no anticausal sections and no advance."""
        return self.integer_delay >= 0 and not self._filter_cells(True)

    def _filter_cells(self, anticausal=False):
        """Causal allpass sections (each fractional delay expanded into its Thiran section), or the
        anticausal ones."""
        out = []
        for cell in self._cells:
            if isinstance(cell, (Allpass1, Allpass2)):
                if cell.anticausal == anticausal:
                    out.append(cell)
            elif isinstance(cell, Delay) and cell.thiran is not None and not anticausal:
                out.append(cell.thiran)
        return out

    def _sos_rows(self, cells):
        return [allpass_section_sos(c.den(self.fs), c.warp, c.stretch) for c in cells]

    @property
    def sos(self):
        """Second-order sections of the causal part, shape (n_sections, 6), polarity folded into the first row.

        The integer shift `integer_delay` is not part of the SOS: apply it separately (as `apply` does);
        nor are anticausal sections (`sos_anticausal`).
        """
        return self._sos_parts()[0].copy()

    @property
    def sos_anticausal(self):
        """Second-order sections of the anticausal part, shape (n, 6), n = 0 when there is none.

        They are run backwards in time: ``sosfilt(sos_anticausal, x[::-1])[::-1]``.
        """
        return self._sos_parts()[1].copy()

    def _sos_parts(self):
        """(causal SOS, anticausal SOS), cached: cells are immutable, so they only change with the list."""
        if self._sos is None:
            rows = self._sos_rows(self._filter_cells())
            sos = np.concatenate(rows) if rows else np.array([[1.0, 0, 0, 1.0, 0, 0]])
            sos[0, :3] *= self.polarity
            anticausal = self._sos_rows(self._filter_cells(True))
            self._sos = (sos, np.concatenate(anticausal) if anticausal else np.zeros((0, 6)))
        return self._sos

    def poles(self):
        """All poles of the SOS parts as they are run (complex array); all lie inside the unit circle.

        An anticausal section, run backwards, realises poles at 1/conj(p) of the poles p listed here.

        Returns
        -------
        ndarray of complex
            One entry per pole, sections in order.

        Examples
        --------
        >>> import numpy as np
        >>> poles = AllpassCascade([Allpass2(0.9, 12000.0)], fs=48000).poles()
        >>> np.round(np.sort_complex(poles), 12).tolist(), bool(np.all(np.abs(poles) < 1))
        ([-0.9j, 0.9j], True)
        """
        # An empty part has no rows; an empty cascade's identity row has no poles but z = 0, dropped here.
        poles = np.concatenate([signal.sos2zpk(sos)[1] for sos in self._sos_parts() if sos.shape[0]])
        return poles[np.abs(poles) > 0]

    def _grouped(self):
        """(order, stretch, sign) -> (den array, warp array) for vectorised evaluation; sign -1 = anticausal."""
        groups = {}
        for sign, cells in ((1, self._filter_cells()), (-1, self._filter_cells(True))):
            for cell in cells:
                key = (len(cell.den(self.fs)), cell.stretch, sign)
                groups.setdefault(key, ([], []))
                groups[key][0].append(cell.den(self.fs))
                groups[key][1].append(cell.warp)
        return {k: (np.array(d), np.array(a)) for k, (d, a) in groups.items()}

    def _w(self, f):
        return 2 * np.pi * valid_freqs(np.atleast_1d(np.asarray(f, dtype=float)), fs=self.fs, name="f") / self.fs

    def phase(self, f):
        """Exact unwrapped phase in radians at frequencies `f` (Hz); a polarity flip adds -pi.

        Parameters
        ----------
        f : array_like, shape (F,)
            Frequencies in Hz, in [0, fs/2].

        Returns
        -------
        ndarray, shape (F,)
            Phase in radians, the integer shift included (docs/maths.md, section 1.3).

        Examples
        --------
        >>> import numpy as np
        >>> cascade = AllpassCascade([Allpass2(0.8, 2000.0, warp=0.3), Delay(5.0)], fs=48000)
        >>> f = np.linspace(0, 24000, 9)
        >>> bool(np.allclose(np.exp(1j * cascade.phase(f)), cascade.response(f)))
        True
        """
        w = self._w(f)
        total = -w * self.integer_delay - np.pi * (self.polarity < 0)
        for (_, stretch, sign), (den, warp) in self._grouped().items():
            total = total + sign * np.sum(allpass_phase(w, den, warp, stretch), axis=0)
        return total

    def response(self, f):
        """Complex frequency response at frequencies `f` (Hz).

        Parameters
        ----------
        f : array_like, shape (F,)
            Frequencies in Hz, in [0, fs/2].

        Returns
        -------
        ndarray of complex, shape (F,)
            Unit magnitude; the integer shift included.

        Examples
        --------
        The SOS run by `scipy.signal.sosfreqz`, with the integer shift, give the same response:

        >>> import numpy as np
        >>> from scipy import signal
        >>> cascade = AllpassCascade([Allpass2(0.8, 2000.0, warp=0.3), Delay(5.0)], fs=48000)
        >>> f = np.linspace(0, 24000, 9)
        >>> _, h = signal.sosfreqz(cascade.sos, worN=f, fs=48000)
        >>> h = h * np.exp(-2j * np.pi * f / 48000 * cascade.integer_delay)
        >>> bool(np.allclose(cascade.response(f), h))
        True
        """
        return np.exp(1j * self.phase(f))

    def group_delay(self, f):
        """Group delay in samples at frequencies `f` (Hz), integer shift included.

        Parameters
        ----------
        f : array_like, shape (F,)
            Frequencies in Hz, in [0, fs/2].

        Returns
        -------
        ndarray, shape (F,)
            Group delay in samples (docs/maths.md, section 1.4).

        Examples
        --------
        >>> import numpy as np
        >>> cascade = AllpassCascade([Allpass2(0.8, 2000.0), Delay(5.0)], fs=48000)
        >>> f = np.linspace(0, 24000, 9)
        >>> bool(np.all(cascade.group_delay(f) > 5.0))   # a causal allpass only adds delay
        True
        """
        w = self._w(f)
        total = np.full(w.shape, float(self.integer_delay))
        for (_, stretch, sign), (den, warp) in self._grouped().items():
            total = total + sign * np.sum(allpass_group_delay(w, den, warp, stretch), axis=0)
        return total

    # -- filtering -----------------------------------------------------------------------------
    def initial_state(self, shape, *, axis=-1):
        """Zero `FilterState` for blocks of shape `shape` filtered along `axis`.

        Parameters
        ----------
        shape : tuple of int
            Shape of the blocks that will be filtered.
        axis : int
            Their time axis.

        Returns
        -------
        FilterState
            Zero sosfilt state and zero delay line.

        Examples
        --------
        >>> cascade = AllpassCascade([Allpass2(0.9, 500.0), Delay(3.0)], fs=48000)
        >>> state = cascade.initial_state((2, 512))                   # stereo blocks of 512 samples
        >>> state.zi.shape, state.delay_line.shape
        ((1, 2, 2), (2, 3))
        """
        shape = list(shape)
        axis = axis % len(shape)
        sos = self.sos
        zi_shape = [sos.shape[0]] + [s for i, s in enumerate(shape) if i != axis] + [2]
        line_shape = list(shape)
        line_shape[axis] = max(self.integer_delay, 0)
        return FilterState(np.zeros(zi_shape), np.zeros(line_shape))

    def apply(self, x, *, axis=-1, zi=None):
        """Filter `x` along `axis` through the cascade (`scipy.signal.sosfilt`, then the integer shift).

        Parameters
        ----------
        x : array_like
            Signal(s); time along `axis`.
        axis : int
            Time axis.
        zi : FilterState, optional
            State from `initial_state` or a previous call: filter block by block. Streaming needs a
            causal cascade (`causal`): an advance or an anticausal section needs the whole signal
            (`apfdsp.io.apply_file` handles files of any length with a backward pass).

        Returns
        -------
        y : ndarray
            Same shape as `x`. Offline, a delay drops the tail and an advance pads zeros at the end.
        state : FilterState
            Only when `zi` is given.

        Examples
        --------
        >>> import numpy as np
        >>> cascade = AllpassCascade([Allpass2(0.8, 1000.0), Delay(2.0)], fs=48000)
        >>> x = np.random.default_rng(0).standard_normal((2, 1000))   # stereo, time on the last axis
        >>> y = cascade.apply(x)
        >>> y.shape, bool(np.array_equal(y[0], cascade.apply(x[0])))
        ((2, 1000), True)
        """
        x = valid_audio(x, allow_silent=True)
        x = np.moveaxis(x, axis, -1)
        shift = self.integer_delay
        sos = self.sos
        if zi is None:
            y = signal.sosfilt(sos, x, axis=-1)
            sos_anticausal = self.sos_anticausal
            if sos_anticausal.shape[0]:
                y = signal.sosfilt(sos_anticausal, y[..., ::-1], axis=-1)[..., ::-1]
            y = _shift(y, shift)
            return np.moveaxis(y, -1, axis)
        if shift < 0:
            raise ParameterError(
                f"this cascade advances the signal by {-shift} samples, which streaming cannot do; "
                "filter the whole signal at once (zi=None)"
            )
        if self._filter_cells(True):
            raise ParameterError(
                "this cascade has anticausal sections, which run backwards in time and cannot stream; "
                "filter the whole signal at once (zi=None) or use apfdsp.io.apply_file"
            )
        if not isinstance(zi, FilterState):
            raise TypeError("zi must be a FilterState from AllpassCascade.initial_state()")
        sos_zi = np.asarray(zi.zi)
        y, zf = signal.sosfilt(sos, x, axis=-1, zi=sos_zi)
        line = np.moveaxis(np.asarray(zi.delay_line), axis, -1)
        joined = np.concatenate([line, y], axis=-1)
        n = x.shape[-1]
        y_out, new_line = joined[..., :n], joined[..., n:]
        return np.moveaxis(y_out, -1, axis), FilterState(zf, np.moveaxis(new_line, -1, axis))

    __call__ = apply

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self):
        """JSON-safe dict; `from_dict` restores an equal cascade bit for bit.

        Returns
        -------
        dict
            ``fs`` and the list of cells, each a dict of its type and parameters (plain floats, ints, bools).

        Examples
        --------
        >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0), Polarity(-1)], fs=48000)
        >>> data = cascade.to_dict()
        >>> data["fs"], [cell["type"] for cell in data["cells"]]
        (48000.0, ['allpass2', 'polarity'])
        """
        cells = []
        for cell in self._cells:
            entry = {"type": _CELL_NAMES[type(cell)]}
            entry.update({f.name: getattr(cell, f.name) for f in fields(cell)})
            if entry.get("anticausal") is False:
                del entry["anticausal"]  # the default: files of causal models stay as they were
            cells.append(entry)
        return {"fs": self.fs, "cells": cells}

    @classmethod
    def from_dict(cls, data):
        """Build a cascade from `to_dict` output; raises ParameterError naming what is wrong.

        Parameters
        ----------
        data : dict
            As `to_dict` writes it (typically read back from JSON).

        Returns
        -------
        AllpassCascade

        Examples
        --------
        >>> import json
        >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.25, anticausal=True), Delay(2.5)],
        ...                          fs=44100)
        >>> AllpassCascade.from_dict(json.loads(json.dumps(cascade.to_dict()))) == cascade
        True
        """
        if not isinstance(data, dict) or "fs" not in data or "cells" not in data:
            raise ParameterError("a cascade dict needs the keys 'fs' and 'cells'")
        cells = []
        for i, entry in enumerate(data["cells"]):
            if not isinstance(entry, dict) or entry.get("type") not in _CELL_TYPES:
                raise ParameterError(
                    f"cell {i}: 'type' must be one of {sorted(_CELL_TYPES)}, got {entry!r:.80}"
                )
            cell_cls = _CELL_TYPES[entry["type"]]
            kwargs = {k: v for k, v in entry.items() if k != "type"}
            names = {f.name for f in fields(cell_cls)}
            if not set(kwargs) <= names:
                raise ParameterError(f"cell {i}: unknown field(s) {sorted(set(kwargs) - names)}")
            try:
                cells.append(cell_cls(**kwargs))
            except TypeError as err:
                raise ParameterError(f"cell {i}: {err}") from None
        return cls(cells, fs=data["fs"])

    def sos_rows_text(self):
        """How many SOS rows run the cascade, as reports print it: ``"N SOS rows"``, ``"N SOS rows (M backwards)"``.

        Returns
        -------
        str

        Examples
        --------
        >>> AllpassCascade([Allpass2(0.9, 1000.0), Allpass1(0.5, anticausal=True)], fs=48000).sos_rows_text()
        '2 SOS rows (1 backwards)'
        """
        causal, anticausal = self._sos_parts()
        return _rows_text(causal.shape[0], anticausal.shape[0])

    def __repr__(self):
        lines = [
            f"AllpassCascade(fs={self.fs:g} Hz, {len(self)} cells, order {self.order}, "
            f"{self.sos_rows_text()}, delay {self.integer_delay} samples, "
            f"polarity {'inverted' if self.polarity < 0 else 'normal'})"
        ]
        for i, cell in enumerate(self._cells):
            extra = f"  [{cell.structure}]" if isinstance(cell, (Allpass1, Allpass2)) else ""
            lines.append(f"  {i:2d}: {cell}{extra}")
        return "\n".join(lines)


def _rows_text(forwards, backwards):
    """"N SOS rows" or "N SOS rows (M backwards)" for reprs and reports."""
    return f"{forwards + backwards} SOS rows" + (f" ({backwards} backwards)" if backwards else "")


def _shift(y, shift):
    """Delay (shift > 0) or advance (shift < 0) along the last axis, keeping the length."""
    if shift == 0:
        return y
    out = np.zeros_like(y)
    n = y.shape[-1]
    if abs(shift) >= n:
        return out
    if shift > 0:
        out[..., shift:] = y[..., : n - shift]
    else:
        out[..., : n + shift] = y[..., -shift:]
    return out
