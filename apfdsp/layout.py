r"""The parameter map of the fits: `Layout`, a cascade's shape and how a matrix of parameters fills it.

Both fits (`apfdsp.fit.fit_phase` in frequency, `apfdsp.fit_audio.fit_audio` in time) optimise a
matrix ``t`` of normalised parameters in (-1, 1), one row per unit; a `Layout` says which unit each
row is, maps the row to physical parameters through `apfdsp.ranges.ParamRanges` (so every filter is
stable, docs/maths.md section 11), gives the differentiable phase of the whole cascade (section 5)
and turns the fitted matrix into `apfdsp.cascade` cells. Implements docs/maths.md sections 4-5.
"""

import dataclasses
from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

from .cascade import Allpass1, Allpass2, Delay, Polarity
from .filters import allpass_phase, second_order_denominator, thiran_coef
from .model import N_OUTPUTS
from .ranges import ParamRanges

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    r"""The shape of a cascade and the map from a matrix of normalised parameters to its units.

    The matrix ``t`` has shape ``(n_units, 3)`` (`n_units` rows, ``apfdsp.model.N_OUTPUTS`` columns),
    every entry in (-1, 1). Its rows are, in this order:

    * ``n2`` second-order sections: ``t[i] = (t_R, t_fc, t_warp)`` mapped by `ranges` to the pole
      radius (`ParamRanges.pole_radius`), the pole frequency on a log scale (`ParamRanges.fc_hz`) and
      the warp (`ParamRanges.warp`; ignored, i.e. 0, for ``structure="traditional"``);
    * ``n1`` first-order sections: ``t[i, 0]`` mapped to the coefficient (`ParamRanges.coef`), the
      other two columns unused;
    * with ``delay_shift`` not None, one delay unit: ``t[-1, 0]`` gives the fractional delay
      :math:`\delta = 1 + t/2` in (0.5, 1.5) samples of a first-order Thiran section, after the fixed
      integer shift ``delay_shift``.

    `cells` turns them into, in the same order, `Allpass2` cells (with ``stretch`` when
    ``structure="stretched"``), `Allpass1` cells, one `Delay` (``delay_shift`` + :math:`\delta`
    samples) and a `Polarity` cell when ``polarity`` is -1.

    Parameters
    ----------
    n2, n1 : int
        Numbers of second- and first-order sections.
    structure : {"traditional", "warped", "stretched"}
        Second-order section type.
    stretch : int
        K of the stretched sections (used only with ``structure="stretched"``).
    polarity : {1, -1}
        Fixed polarity (not a parameter).
    delay_shift : int or None
        Integer shift in samples before the Thiran unit, or None for no delay unit.
    ranges : ParamRanges
        The map from normalised to physical parameters.
    fs : float
        Sample rate in Hz.
    anticausal : tuple of bool
        One flag per section (second-order first, then first-order; the delay unit is always causal),
        or ``()`` for all causal.

    Examples
    --------
    >>> import numpy as np
    >>> from apfdsp.ranges import DEFAULT_RANGES
    >>> layout = Layout(1, 1, "warped", 1, -1, 4, DEFAULT_RANGES, 48000.0)
    >>> layout.n_units
    3
    >>> t = layout.t_from([(0.9, 1000.0, 0.2)], [0.5], 1.25)
    >>> [type(cell).__name__ for cell in layout.cells(t)]
    ['Allpass2', 'Allpass1', 'Delay', 'Polarity']
    >>> round(layout.cells(t)[2].samples, 6)
    5.25
    """

    n2: int
    n1: int
    structure: str
    stretch: int
    polarity: int
    delay_shift: object  # None: no delay unit; int: integer shift before the Thiran unit
    ranges: ParamRanges
    fs: float
    anticausal: tuple = ()  # one bool per section (second-order first), or () for all causal

    def signs(self):
        """+1 per causal and -1 per anticausal section (second-order, then first-order); None: all causal.

        Returns
        -------
        signs : ndarray, shape (n2 + n1,), or None

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> Layout(1, 1, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0, (True, False)).signs()
        array([-1.,  1.])
        """
        if not any(self.anticausal):
            return None
        return 1.0 - 2.0 * np.asarray(self.anticausal, dtype=float)

    @property
    def n_units(self):
        """Rows of the parameter matrix: sections plus the delay unit."""
        return self.n2 + self.n1 + (self.delay_shift is not None)

    def const_phase(self, w):
        r"""Phase (rad) of the fixed integer shift and polarity on digital frequencies `w` (rad/sample).

        Parameters
        ----------
        w : ndarray, shape (F,)
            Digital frequencies in rad/sample.

        Returns
        -------
        phase : ndarray, shape (F,)
            :math:`-\omega\,\mathrm{shift} - \pi [\mathrm{polarity} < 0]`.

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> Layout(0, 0, "warped", 1, -1, 2, DEFAULT_RANGES, 48000.0).const_phase(np.array([0.0, 0.5]))
        array([-3.14159265, -4.14159265])
        """
        shift = 0 if self.delay_shift is None else self.delay_shift
        return -w * shift - np.pi * (self.polarity < 0)

    def phase(self, t, w, const):
        """Cascade phase on `w` (rad/sample) plus `const`, differentiable (autograd) with respect to `t`.

        An anticausal section's phase changes sign (docs/maths.md section 3).

        Parameters
        ----------
        t : ndarray or autograd box, shape (n_units, 3)
            Normalised parameters.
        w : ndarray, shape (F,)
            Digital frequencies in rad/sample.
        const : ndarray, shape (F,)
            Phase added to the sections' (usually `const_phase` of `w`).

        Returns
        -------
        phase : ndarray, shape (F,)
            Unwrapped phase in radians.

        Examples
        --------
        >>> import numpy as np
        >>> from apfdsp.cascade import AllpassCascade
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0)
        >>> t = layout.t_from([(0.9, 1000.0, 0.2)], [])
        >>> f = np.array([100.0, 1000.0, 5000.0])
        >>> w = 2 * np.pi * f / 48000.0
        >>> phase = layout.phase(t, w, layout.const_phase(w))
        >>> bool(np.allclose(phase, AllpassCascade(layout.cells(t), fs=48000.0).phase(f)))
        True
        """
        total = const
        signs = self.signs()
        if self.n2:
            den2, warp = self.second_order_denominators(t)
            stretch = self.stretch if self.structure == "stretched" else 1
            phases = allpass_phase(w, den2, warp, stretch)
            if signs is not None:
                phases = phases * signs[: self.n2, None]
            total = total + anp.sum(phases, axis=0)
        coefs = self.first_order_coefs(t)
        if coefs is not None:
            phases = allpass_phase(w, anp.reshape(coefs, (-1, 1)))
            if signs is not None and self.n1:
                signs1 = np.r_[signs[self.n2 :], np.ones(int(self.delay_shift is not None))]
                phases = phases * signs1[:, None]
            total = total + anp.sum(phases, axis=0)
        return total

    def second_order_denominators(self, t):
        """Denominators and warps of the second-order sections at `t` (differentiable in `t`).

        Parameters
        ----------
        t : array_like, shape (n_units, 3)
            Normalised parameters; the first `n2` rows are the second-order sections.

        Returns
        -------
        den : ndarray, shape (n2, 2)
            ``[d, c]`` of each section's :math:`1 + d z^{-1} + c z^{-2}` (before warping).
        warp : ndarray, shape (n2,), or float
            Each section's warp; 0.0 for the traditional structure.

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 0, "traditional", 1, 1, None, DEFAULT_RANGES, 48000.0)
        >>> den, warp = layout.second_order_denominators(layout.t_from([(0.5, 12000.0, 0.0)], []))
        >>> [round(float(v), 6) for v in den[0]], warp
        ([0.0, 0.25], 0.0)
        """
        r, t2 = self.ranges, t[: self.n2]
        radius = r.pole_radius(t2[:, 0], fs=self.fs)
        den = second_order_denominator(radius, r.fc_hz(t2[:, 1], fs=self.fs), fs=self.fs)
        return den, (r.warp(t2[:, 2]) if self.structure != "traditional" else 0.0)

    def first_order_coefs(self, t):
        """Coefficients of the first-order units at `t`, the delay unit's Thiran coefficient last.

        Parameters
        ----------
        t : array_like, shape (n_units, 3)
            Normalised parameters.

        Returns
        -------
        ndarray, shape (n1 + 1 with a delay unit, else n1,), or None
            None when the layout has neither first-order units nor a delay unit (differentiable in `t`).

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(0, 1, "warped", 1, 1, 3, DEFAULT_RANGES, 48000.0)
        >>> coefs = layout.first_order_coefs(layout.t_from([], [0.25], 1.0))
        >>> [round(float(c), 6) for c in coefs]
        [0.25, 0.0]
        """
        coefs = []
        if self.n1:
            coefs.append(self.ranges.coef(t[self.n2 : self.n2 + self.n1, 0], fs=self.fs))
        if self.delay_shift is not None:
            coefs.append(anp.reshape(thiran_coef(1.0 + 0.5 * t[-1, 0]), (1,)))
        return anp.concatenate(coefs) if coefs else None

    def cells(self, t):
        """The `apfdsp.cascade` cells for normalised parameters `t` (see the class docstring).

        Parameters
        ----------
        t : array_like, shape (n_units, 3)
            Normalised parameters.

        Returns
        -------
        cells : list
            `Allpass2`, `Allpass1`, `Delay` (an advance and a Thiran `Allpass1` when a negative shift
            carries a fractional delay) and `Polarity` cells.

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(0, 1, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0, (True,))
        >>> layout.cells(layout.t_from([], [0.5]))[0].anticausal
        True
        """
        r = self.ranges
        t = np.asarray(t)
        cells = []
        flags = self.anticausal or (False,) * (self.n2 + self.n1)
        for row, anticausal in zip(t[: self.n2], flags):
            warp = float(r.warp(row[2])) if self.structure != "traditional" else 0.0
            stretch = self.stretch if self.structure == "stretched" else 1
            cells.append(Allpass2(float(r.pole_radius(row[0], fs=self.fs)), float(r.fc_hz(row[1], fs=self.fs)), warp,
                                  stretch, anticausal))
        for row, anticausal in zip(t[self.n2 : self.n2 + self.n1], flags[self.n2 :]):
            cells.append(Allpass1(float(r.coef(row[0], fs=self.fs)), anticausal=anticausal))
        if self.delay_shift is not None:
            samples = self.delay_shift + 1.0 + 0.5 * float(t[-1, 0])
            if abs(samples - round(samples)) < 1e-6:  # an integer delay is an exact shift
                samples = float(round(samples))
            if self.delay_shift < 0 < samples and not samples.is_integer():
                # Realised as fitted, an advance and a Thiran unit (a Delay cell would not advance).
                cells += [Delay(float(self.delay_shift)), Allpass1(float(thiran_coef(samples - self.delay_shift)))]
            else:
                cells.append(Delay(samples))
        if self.polarity < 0:
            cells.append(Polarity(-1))
        return cells

    def t_from(self, sections2, coefs1, frac_delay=1.0):
        """Normalised matrix from second-order ``(R, fc, warp)`` triples, first-order coefs and a delay.

        Parameters
        ----------
        sections2 : sequence of (float, float, float)
            Pole radius, pole frequency (Hz) and warp of each second-order section (at most `n2`).
        coefs1 : sequence of float
            First-order coefficients (at most `n1`).
        frac_delay : float
            Fractional delay of the delay unit in samples (clipped into its range), if there is one.

        Returns
        -------
        t : ndarray, shape (n_units, 3)
            Values outside the ranges are clipped just inside them; rows not given stay 0.

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> layout = Layout(1, 0, "traditional", 1, 1, 0, DEFAULT_RANGES, 48000.0)
        >>> layout.t_from([(0.5, 100.0, 0.0)], [], 1.5).round(4)
        array([[ 0.001, -0.293,  0.   ],
               [ 0.999,  0.   ,  0.   ]])
        """
        r = self.ranges
        t = np.zeros((self.n_units, N_OUTPUTS))
        n2, n1 = len(sections2), len(coefs1)
        if n2:
            radius, fc, warp = (np.array(column, dtype=float) for column in zip(*sections2))
            t[:n2, 0] = r.pole_radius_inv(radius, fs=self.fs)
            t[:n2, 1] = r.fc_hz_inv(fc, fs=self.fs)
            t[:n2, 2] = r.warp_inv(warp)
        if n1:
            t[self.n2 : self.n2 + n1, 0] = r.coef_inv(np.array(coefs1, dtype=float), fs=self.fs)
        if self.delay_shift is not None:
            t[-1, 0] = np.clip(2.0 * (frac_delay - 1.0), -0.999, 0.999)
        return t

    def replace(self, **changes):
        """A copy with some fields changed.

        Parameters
        ----------
        **changes
            New values of fields (``n2=3``, ``polarity=-1``, ...).

        Returns
        -------
        Layout

        Examples
        --------
        >>> from apfdsp.ranges import DEFAULT_RANGES
        >>> Layout(2, 0, "warped", 1, 1, None, DEFAULT_RANGES, 48000.0).replace(polarity=-1).polarity
        -1
        """
        return dataclasses.replace(self, **changes)
