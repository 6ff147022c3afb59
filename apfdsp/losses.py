r"""Loss functions: frequency-domain phase losses and the paper's audio losses.

All functions use `autograd.numpy` only: they are differentiable with autograd w.r.t. their first
arguments, NaN-safe (magnitudes are computed as :math:`\sqrt{|z|^2 + \epsilon}`) and return scalars.

Implements docs/maths.md, sections 5.1 (the phase losses) and 5.4 (the audio losses); the module's place
in the package is docs/architecture.md, section 2.7.
"""

import autograd.numpy as anp
import numpy as np

from .exceptions import ParameterError

__all__ = [
    "phase_loss",
    "complex_response_loss",
    "group_delay_loss",
    "sum_magnitude_stft_loss",
    "multi_resolution_sum_magnitude_loss",
    "mse_loss",
    "ncc_loss",
    "stft",
]

_EPS = 1e-12


def _mean_weighted(values, weights):
    if weights is None:
        return anp.mean(values)
    return anp.sum(weights * values) / anp.sum(weights)


def phase_loss(phase, target_phase, weights=None):
    r"""Weighted wrapped-phase error :math:`\sum_f w(f)\,(1 - \cos(\phi(f) - \phi_t(f))) / \sum_f w(f)`.

    Zero iff the phases agree modulo :math:`2\pi`; blind to level. It is the frequency-domain form of
    the paper's sum-magnitude loss. For small errors it is half the weighted mean square phase error.

    Parameters
    ----------
    phase, target_phase : array_like, shape (F,)
        Phases in radians (wrapped or not).
    weights : array_like, shape (F,), optional
        Non-negative weights; uniform when None.

    Returns
    -------
    loss : float
        In [0, 2].

    Examples
    --------
    >>> import numpy as np
    >>> round(float(phase_loss(np.array([0.0, np.pi]), np.array([2 * np.pi, np.pi]))), 12)
    0.0
    """
    return _mean_weighted(1.0 - anp.cos(phase - target_phase), weights)


def complex_response_loss(response, target_response, weights=None):
    r"""Weighted mean squared complex error :math:`\sum_f w |H(f) - H_t(f)|^2 / \sum_f w`.

    Sensitive to magnitude as well as phase; for unit-magnitude responses it equals twice
    `phase_loss` (docs/maths.md, section 5.1).

    Parameters
    ----------
    response, target_response : array_like, shape (F,)
        Complex frequency responses.
    weights : array_like, shape (F,), optional
        Non-negative weights; uniform when None.

    Returns
    -------
    loss : float
        Non-negative; 0 iff the responses agree wherever the weight is positive.

    Examples
    --------
    >>> import numpy as np
    >>> phase, target = np.array([0.1, -0.4, 2.0]), np.array([0.0, 0.3, 2.5])
    >>> bool(np.isclose(complex_response_loss(np.exp(1j * phase), np.exp(1j * target)),
    ...                 2 * phase_loss(phase, target)))
    True
    >>> float(complex_response_loss(np.array([2.0 + 0j]), np.array([1.0 + 0j])))
    1.0
    """
    diff = response - target_response
    return _mean_weighted(anp.real(diff) ** 2 + anp.imag(diff) ** 2, weights)


def group_delay_loss(group_delay, target_group_delay, weights=None):
    r"""Weighted mean squared group-delay error :math:`\sum_f w (\tau - \tau_t)^2 / \sum_f w` (samples^2).

    Parameters
    ----------
    group_delay, target_group_delay : array_like, shape (F,)
        Group delays in samples.
    weights : array_like, shape (F,), optional
        Non-negative weights; uniform when None.

    Returns
    -------
    loss : float
        In samples squared.

    Examples
    --------
    >>> import numpy as np
    >>> float(group_delay_loss(np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([1.0, 3.0])))
    1.0
    """
    return _mean_weighted((group_delay - target_group_delay) ** 2, weights)


def stft(x, *, n_fft, hop):
    r"""Differentiable STFT with a periodic Hann window along the last axis.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Signal (n >= n_fft).
    n_fft, hop : int
        Frame length and hop in samples.

    Returns
    -------
    X : ndarray, shape (..., n_frames, n_fft // 2 + 1)
        Complex spectra of the frames that fit entirely inside the signal.

    Raises
    ------
    ParameterError
        If the signal is shorter than `n_fft`.

    Examples
    --------
    A sine on a bin centre puts half its amplitude times the window's sum (n_fft / 2) into that bin:

    >>> import numpy as np
    >>> x = np.cos(2 * np.pi * 8 * np.arange(256) / 64)
    >>> X = stft(x, n_fft=64, hop=16)
    >>> X.shape, bool(np.allclose(np.abs(X[:, 8]), 0.5 * 32))
    ((13, 33), True)
    """
    n = x.shape[-1]
    n_frames = 1 + (n - n_fft) // hop
    if n_frames < 1:
        raise ParameterError(f"signal of {n} samples is shorter than n_fft={n_fft}; use a smaller n_fft")
    index = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return anp.fft.rfft(x[..., index] * window, axis=-1)


def _magnitude(z):
    return anp.sqrt(anp.real(z) ** 2 + anp.imag(z) ** 2 + _EPS)


def sum_magnitude_stft_loss(x, y, *, n_fft=2048, hop=512):
    r"""The paper's sum-magnitude loss: how much :math:`|X + Y|` falls short of :math:`|X| + |Y|`.

    .. math:: L = \frac{\sum_{t,f} |X| + |Y| - |X + Y|}{\sum_{t,f} |X| + |Y|}

    with X, Y the STFTs of x and y. Zero iff every bin is in phase; blind to level differences;
    in [0, 1].

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Signals (for alignment: the filtered dry and the wet).
    n_fft, hop : int
        STFT frame length and hop.

    Returns
    -------
    loss : float
        In [0, 1]: 0 for signals in phase in every bin, 1 for an inversion.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8192)
    >>> round(float(sum_magnitude_stft_loss(x, 0.5 * x)), 9), round(float(sum_magnitude_stft_loss(x, -x)), 6)
    (0.0, 1.0)
    """
    spec_x, spec_y = stft(x, n_fft=n_fft, hop=hop), stft(y, n_fft=n_fft, hop=hop)
    mag_sum = _magnitude(spec_x) + _magnitude(spec_y)
    return anp.sum(mag_sum - _magnitude(spec_x + spec_y)) / anp.sum(mag_sum)


def multi_resolution_sum_magnitude_loss(x, y, *, fft_sizes=(512, 1024, 2048), hop_ratio=0.25):
    """Mean of `sum_magnitude_stft_loss` over several STFT sizes (hop = `hop_ratio` * size).

    Parameters
    ----------
    x, y : array_like, shape (..., n)
        Signals, at least ``max(fft_sizes)`` samples long.
    fft_sizes : sequence of int
        STFT frame lengths.
    hop_ratio : float
        Hop as a fraction of each frame length.

    Returns
    -------
    loss : float
        In [0, 1].

    Examples
    --------
    White noise against itself one sample late (a phase error that grows to pi at Nyquist):

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8192)
    >>> late = np.r_[0.0, x[:-1]]
    >>> loss = multi_resolution_sum_magnitude_loss(x, late)
    >>> round(float(loss), 2), bool(np.isclose(loss, np.mean(
    ...     [sum_magnitude_stft_loss(x, late, n_fft=n, hop=n // 4) for n in (512, 1024, 2048)])))
    (0.36, True)
    """
    total = 0.0
    for n_fft in fft_sizes:
        total = total + sum_magnitude_stft_loss(x, y, n_fft=n_fft, hop=max(1, int(n_fft * hop_ratio)))
    return total / len(fft_sizes)


def mse_loss(x, y):
    r"""Mean squared error :math:`\frac1n \sum (x - y)^2` (level sensitive).

    Parameters
    ----------
    x, y : array_like
        Signals of the same shape.

    Returns
    -------
    loss : float

    Examples
    --------
    >>> import numpy as np
    >>> float(mse_loss(np.array([1.0, 2.0]), np.array([1.0, 0.0])))
    2.0
    """
    return anp.mean((x - y) ** 2)


def ncc_loss(x, y):
    r"""Negative normalised cross-correlation at lag 0: :math:`1 - \frac{\sum x y}{\|x\| \|y\|}`.

    In [0, 2]; 0 when x and y are positively proportional. (The original code had the sign that
    rewards anti-correlation.)

    Parameters
    ----------
    x, y : array_like
        Signals of the same shape.

    Returns
    -------
    loss : float
        In [0, 2].

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> round(float(ncc_loss(x, 3 * x)), 9), round(float(ncc_loss(x, -x)), 9)
    (0.0, 2.0)
    """
    num = anp.sum(x * y)
    den = anp.sqrt(anp.sum(x * x) * anp.sum(y * y) + _EPS)
    return 1.0 - num / den
