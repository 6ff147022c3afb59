r"""Parameterisations that produce normalised allpass parameters: direct, and the sinusoidal MLP.

A parameterisation maps its trainable parameters (an autograd pytree) to a matrix ``t`` of
normalised values in (-1, 1), one row per *unit* (a section, or the fractional delay), three columns
(for a second-order section: pole radius, pole frequency, warp; first-order units use column 0).
`apfdsp.ranges.ParamRanges` turns ``t`` into physical parameters, so every filter is stable by
construction.

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
    """

    name = "direct"

    def init(self, t_start, *, rng=None):
        """Parameters whose output equals `t_start` (shape (n_units, 3))."""
        t = np.clip(np.asarray(t_start, dtype=float), -_T_LIMIT, _T_LIMIT)
        return t / np.sqrt(1.0 - t * t)

    def forward(self, params):
        """Normalised outputs ``t`` (n_units, 3) in (-1, 1). Differentiable."""
        return params / anp.sqrt(1.0 + params * params)

    def n_params(self, n_units):
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
    """

    hidden: tuple = (512, 256, 128)
    input_size: int = 1024
    shared: bool = False
    omega0: float = 1.0

    @property
    def name(self):
        return "shared-mlp" if self.shared else "mlp"

    def _sizes(self, n_units):
        n_out = N_OUTPUTS * n_units if self.shared else N_OUTPUTS
        return [self.input_size, *self.hidden, n_out]

    def n_params(self, n_units):
        sizes = self._sizes(n_units)
        per_net = sizes[0] + sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        return per_net * (1 if self.shared else n_units)

    def init(self, t_start, *, rng):
        """Random net whose output is (almost exactly) `t_start` (shape (n_units, 3))."""
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
        """Normalised outputs ``t`` (n_units, 3) in (-1, 1). Differentiable."""
        h = self._hidden(params)
        weight, bias = params["layers"][-1]
        return anp.reshape(anp.tanh(anp.einsum("ni,nio->no", h, weight) + bias), (-1, N_OUTPUTS))


def get_parameterization(name, **options):
    """Return the parameterisation called `name`: ``"direct"``, ``"mlp"`` or ``"shared-mlp"``."""
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
