r"""Parameterisations that produce normalised allpass parameters: direct, and the sinusoidal MLP.

A parameterisation maps its trainable parameters (an autograd pytree) to a matrix ``t`` of
normalised values in (-1, 1), one row per *unit* (a section, or the fractional delay), three columns
(for a second-order section: pole radius, pole frequency, warp; first-order units use column 0).
`apfdsp.ranges.ParamRanges` turns ``t`` into physical parameters, so every filter is stable by
construction (docs/maths.md, section 11, "Parameterisations"; the module's place in the package is
docs/architecture.md, section 2.6).

References
----------
.. [1] A. R. Bargum, S. Serafin, C. Erkut and J. D. Parker, "Differentiable Allpass Filters for Phase
   Response Estimation and Automatic Signal Alignment", Proc. DAFx 2023, arXiv:2306.00860, Sec. 3
   (the BiasNet-style model: per-section MLPs on a learnable constant input, sin activations,
   tanh outputs).
"""

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

from ._validate import valid_int
from .exceptions import ParameterError

__all__ = ["Direct", "SinusoidalMLP", "get_parameterization", "N_OUTPUTS"]

N_OUTPUTS = 3
_T_LIMIT = 1 - 1e-7


def _atanh(t):
    return np.arctanh(np.clip(np.asarray(t, dtype=float), -_T_LIMIT, _T_LIMIT))


@dataclass(frozen=True)
class Direct:
    r"""Direct parameterisation, one free number u per parameter (the baseline).

    :math:`t = u / \sqrt{1 + u^2}`: smooth, bounded in (-1, 1), and (unlike tanh) its gradient decays
    only polynomially, so parameters near the range limits still move.

    Examples
    --------
    >>> import numpy as np
    >>> direct = Direct()
    >>> t = np.array([[0.5, -0.25, 0.0]])
    >>> params = direct.init(t)
    >>> bool(np.allclose(direct.forward(params), t)), direct.n_params(1)
    (True, 3)
    """

    name = "direct"

    def init(self, t_start, *, rng=None):
        r"""Parameters whose output equals `t_start` (shape (n_units, 3)).

        Parameters
        ----------
        t_start : array_like, shape (n_units, 3)
            Normalised values in (-1, 1) (clipped just inside).
        rng : numpy.random.Generator, optional
            Unused (the map is deterministic); accepted for a common signature.

        Returns
        -------
        params : ndarray, shape (n_units, 3)
            :math:`u = t / \sqrt{1 - t^2}`.

        Examples
        --------
        >>> import numpy as np
        >>> Direct().init(np.array([[0.6, 0.0, -0.6]])).round(6).tolist()
        [[0.75, 0.0, -0.75]]
        """
        t = np.clip(np.asarray(t_start, dtype=float), -_T_LIMIT, _T_LIMIT)
        return t / np.sqrt(1.0 - t * t)

    def forward(self, params):
        r"""Normalised outputs ``t`` (n_units, 3) in (-1, 1). Differentiable.

        Parameters
        ----------
        params : array_like, shape (n_units, 3)
            Free parameters u.

        Returns
        -------
        t : ndarray, shape (n_units, 3)
            :math:`u / \sqrt{1 + u^2}`.

        Examples
        --------
        >>> import numpy as np
        >>> Direct().forward(np.array([[0.75, 0.0, -0.75]])).tolist()
        [[0.6, 0.0, -0.6]]
        """
        return params / anp.sqrt(1.0 + params * params)

    def n_params(self, n_units):
        """Number of free parameters for `n_units` units.

        Parameters
        ----------
        n_units : int

        Returns
        -------
        int
            Three per unit.

        Examples
        --------
        >>> Direct().n_params(4)
        12
        """
        return n_units * N_OUTPUTS


@dataclass(frozen=True)
class SinusoidalMLP:
    r"""The paper's over-parameterised MLP ("BiasNet"): constant learnable input, sin hidden layers, tanh output.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer widths. The paper uses (512, 256, 128) after a 1024-wide input.
    input_size : int
        Size of the learnable constant input vector (1024 in the paper).
    shared : bool
        One net for all units (outputs reshaped) instead of one net per unit (the paper's layout).
    omega0 : float
        Frequency factor of the sin activations, :math:`h_{k+1} = \sin(\omega_0 (W h_k + b))`.

    Notes
    -----
    Per-unit nets are evaluated together with batched matrix products (units x layers), no Python
    loop over units. Weights use the SIREN initialisation :math:`U(-\sqrt{6/n}, \sqrt{6/n}) / \omega_0`.
    `init` sets the output layer's bias to ``arctanh(t_start)`` and scales its weights by 1e-3, so the
    net starts at a chosen filter (for instance from the equation-error design).

    Examples
    --------
    >>> import numpy as np
    >>> mlp = SinusoidalMLP(hidden=(16, 8), input_size=32)
    >>> t = np.array([[0.5, -0.2, 0.1], [0.9, 0.3, 0.0]])
    >>> params = mlp.init(t, rng=np.random.default_rng(0))
    >>> bool(np.allclose(mlp.forward(params), t, atol=1e-12)), mlp.name, mlp.n_params(2)
    (True, 'mlp', 1446)
    """

    hidden: tuple = (512, 256, 128)
    input_size: int = 1024
    shared: bool = False
    omega0: float = 1.0

    @property
    def name(self):
        """``"mlp"`` (one net per unit) or ``"shared-mlp"`` (one net for all units)."""
        return "shared-mlp" if self.shared else "mlp"

    def _sizes(self, n_units):
        n_out = N_OUTPUTS * n_units if self.shared else N_OUTPUTS
        return [self.input_size, *self.hidden, n_out]

    def n_params(self, n_units):
        """Number of trainable numbers (constant inputs, weights and biases) for `n_units` units.

        Parameters
        ----------
        n_units : int

        Returns
        -------
        int

        Examples
        --------
        >>> SinusoidalMLP(hidden=(4,), input_size=8).n_params(1)   # 8 inputs + (8+1)*4 + (4+1)*3
        59
        """
        sizes = self._sizes(n_units)
        per_net = sizes[0] + sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        return per_net * (1 if self.shared else n_units)

    def init(self, t_start, *, rng):
        """Random net whose output is (almost exactly) `t_start` (shape (n_units, 3)).

        Parameters
        ----------
        t_start : array_like, shape (n_units, 3)
            Normalised values in (-1, 1) the net should start from.
        rng : numpy.random.Generator
            Source of the random weights and constant inputs.

        Returns
        -------
        params : dict
            ``{"input": (n_nets, input_size), "layers": [(weight, bias), ...]}``, an autograd pytree.

        Examples
        --------
        >>> import numpy as np
        >>> mlp = SinusoidalMLP(hidden=(8,), input_size=16, shared=True)
        >>> params = mlp.init(np.zeros((3, 3)), rng=np.random.default_rng(1))
        >>> params["input"].shape, [w.shape for w, _ in params["layers"]]
        ((1, 16), [(1, 16, 8), (1, 8, 9)])
        """
        t_start = np.asarray(t_start, dtype=float)
        n_units = t_start.shape[0]
        n_nets = 1 if self.shared else n_units
        sizes = self._sizes(n_units)
        const = rng.uniform(-1.0, 1.0, size=(n_nets, sizes[0]))
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = np.sqrt(6.0 / fan_in) / self.omega0
            weight = rng.uniform(-bound, bound, size=(n_nets, fan_in, fan_out))
            bias = rng.uniform(-bound, bound, size=(n_nets, fan_out))
            layers.append((weight, bias))
        # Start exactly at t_start: shrink the output weights and absorb their offset in the bias.
        params = {"input": const, "layers": layers}
        weight, _ = layers[-1]
        weight *= 1e-3
        hidden = self._hidden(params)
        bias = _atanh(t_start).reshape(n_nets, -1) - np.einsum("ni,nio->no", hidden, weight)
        layers[-1] = (weight, bias)
        return params

    def _hidden(self, params):
        h = params["input"]
        for weight, bias in params["layers"][:-1]:
            h = anp.sin(self.omega0 * (anp.einsum("ni,nio->no", h, weight) + bias))
        return h

    def forward(self, params):
        """Normalised outputs ``t`` (n_units, 3) in (-1, 1). Differentiable.

        Parameters
        ----------
        params : dict
            The pytree of `init`.

        Returns
        -------
        t : ndarray, shape (n_units, 3)

        Examples
        --------
        >>> import numpy as np
        >>> mlp = SinusoidalMLP(hidden=(8,), input_size=16)
        >>> t = np.full((2, 3), 0.25)
        >>> bool(np.allclose(mlp.forward(mlp.init(t, rng=np.random.default_rng(2))), t))
        True
        """
        h = self._hidden(params)
        weight, bias = params["layers"][-1]
        return anp.reshape(anp.tanh(anp.einsum("ni,nio->no", h, weight) + bias), (-1, N_OUTPUTS))


def get_parameterization(name, **options):
    """Return the parameterisation called `name`: ``"direct"``, ``"mlp"`` or ``"shared-mlp"``.

    Parameters
    ----------
    name : str or parameterisation
        The name; an object with ``init`` and ``forward`` is returned as it is.
    **options
        Fields of `SinusoidalMLP` (``hidden``, ``input_size``, ``omega0``) for the MLPs.

    Returns
    -------
    Direct or SinusoidalMLP

    Raises
    ------
    ParameterError
        For an unknown name or a bad hidden width.

    Examples
    --------
    >>> get_parameterization("direct")
    Direct()
    >>> get_parameterization("shared-mlp", hidden=(64, 32)).name
    'shared-mlp'
    """
    if not isinstance(name, str):
        if hasattr(name, "forward") and hasattr(name, "init"):
            return name
        raise TypeError(f"parameterization must be a name or a parameterisation object, got {name!r}")
    if name == "direct":
        return Direct()
    if name in ("mlp", "shared-mlp"):
        if "hidden" in options:
            options["hidden"] = tuple(valid_int(h, "hidden width", minimum=1) for h in options["hidden"])
        return SinusoidalMLP(shared=(name == "shared-mlp"), **options)
    raise ParameterError(f"parameterization must be 'direct', 'mlp' or 'shared-mlp', got {name!r}")
