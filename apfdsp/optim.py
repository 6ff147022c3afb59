"""Optimisers: a hand-written Adam (pure step function) and an L-BFGS polish through scipy.

Implements docs/maths.md, section 5.3 (and the cosine schedule there); the module's place in the package
is docs/architecture.md, section 2.8.
"""

import math
from typing import NamedTuple

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad
from autograd.misc.flatten import flatten
from scipy import optimize

__all__ = ["AdamState", "adam_init", "adam_step", "adam", "lbfgs", "cosine_schedule"]


class AdamState(NamedTuple):
    """State of Adam: flat parameters, first and second moments, step count.

    Attributes
    ----------
    params : ndarray
        The flat parameter vector.
    m, v : ndarray
        Running means of the gradient and of its square (Adam's first and second moments).
    step : int
        Number of steps taken.

    Examples
    --------
    >>> import numpy as np
    >>> state = adam_step(adam_init(np.zeros(2)), np.array([1.0, -1.0]), lr=0.1)
    >>> state.step, np.round(state.params, 6).tolist()
    (1, [-0.1, 0.1])
    """

    params: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: int


def adam_init(flat_params):
    """Initial `AdamState` for a flat parameter vector.

    Parameters
    ----------
    flat_params : array_like, shape (n,)
        Starting parameters (copied).

    Returns
    -------
    state : AdamState
        Zero moments, step 0.

    Examples
    --------
    >>> adam_init([1.0, 2.0])
    AdamState(params=array([1., 2.]), m=array([0., 0.]), v=array([0., 0.]), step=0)
    """
    flat_params = np.asarray(flat_params, dtype=float)
    return AdamState(flat_params.copy(), np.zeros_like(flat_params), np.zeros_like(flat_params), 0)


def adam_step(state, grad, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, clip=None):
    r"""One Adam step: state in, state out (pure).

    Parameters
    ----------
    state : AdamState
    grad : ndarray
        Gradient at ``state.params``.
    lr : float
        Step size.
    b1, b2, eps : float
        Adam's moment decay rates and denominator guard.
    clip : float, optional
        Clip the gradient to this global L2 norm first.

    Returns
    -------
    state : AdamState

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> state = adam_init(np.array([1.0]))
    >>> for _ in range(2000):
    ...     state = adam_step(state, 2 * state.params, lr=0.01)
    >>> bool(abs(state.params[0]) < 1e-3)
    True
    """
    grad = np.asarray(grad, dtype=float)
    if clip is not None:
        norm = np.linalg.norm(grad)
        if norm > clip:
            grad = grad * (clip / norm)
    step = state.step + 1
    m = b1 * state.m + (1 - b1) * grad  # first moment: running mean of the gradient
    v = b2 * state.v + (1 - b2) * grad * grad  # second moment: running mean of its square
    m_hat = m / (1 - b1**step)  # bias corrections for the zero initialisation
    v_hat = v / (1 - b2**step)
    params = state.params - lr * m_hat / (np.sqrt(v_hat) + eps)
    return AdamState(params, m, v, step)


def adam(loss, params, *, n_iter=500, lr=1e-3, schedule=None, clip=None, callback=None):
    """Minimise `loss(params)` (any autograd pytree) with Adam.

    Parameters
    ----------
    loss : callable
        Scalar autograd-differentiable function of the pytree `params`.
    params : pytree
        Starting parameters.
    n_iter : int
        Number of steps.
    lr : float
        Base learning rate.
    schedule : callable, optional
        ``schedule(i) -> factor`` multiplying `lr` at step i (e.g. cosine decay).
    clip : float, optional
        Global gradient-norm clip.
    callback : callable, optional
        ``callback(params, i, loss_value)``; returning True stops early.

    Returns
    -------
    params : pytree
        Best parameters seen.
    history : ndarray
        Loss value at each step.

    Examples
    --------
    A pytree (a dict of arrays) is fine; the best parameters seen are returned:

    >>> import numpy as np
    >>> params, history = adam(lambda p: ((p["a"] - 2.0) ** 2).sum(), {"a": np.zeros(3)}, n_iter=600, lr=0.05,
    ...                        schedule=cosine_schedule(600))
    >>> np.round(params["a"], 3).tolist(), bool(history[-1] < history[0])
    ([2.0, 2.0, 2.0], True)
    """
    flat0, unflatten = flatten(params)
    objective = value_and_grad(lambda flat: loss(unflatten(flat)))
    state = adam_init(flat0)
    history = np.empty(n_iter)
    best_value, best_flat = np.inf, flat0
    for i in range(n_iter):
        value, grad = objective(state.params)
        history[i] = value
        if value < best_value:
            best_value, best_flat = value, state.params
        if callback is not None and callback(unflatten(state.params), i, value):
            history = history[: i + 1]
            break
        if not np.all(np.isfinite(grad)):
            history = history[: i + 1]
            break
        factor = 1.0 if schedule is None else schedule(i)
        state = adam_step(state, grad, lr=lr * factor, clip=clip)
    return unflatten(best_flat), history


def lbfgs(loss, params, *, max_iter=200, tol=1e-14, stall_rtol=1e-3, stall_iter=20, callback=None,
          loss_and_grad=None):
    """Minimise `loss(params)` with L-BFGS-B (`scipy.optimize.minimize`, gradients from autograd).

    Stops after `max_iter` iterations, when L-BFGS-B converges (`tol`: its ``ftol``, tiny so that exact
    targets are followed down to rounding level), or when the loss has stalled: fallen by less than
    the fraction `stall_rtol` over the last `stall_iter` iterations (0 disables this). A noisy target's
    fit creeps on for hundreds of iterations that move its null depth by thousandths of a dB.
    `loss_and_grad`, if given, is a function of an array `params` returning the loss and its gradient
    (same shape) computed by hand; it replaces autograd's (`loss` is then not called).

    Parameters
    ----------
    loss : callable
        Scalar autograd-differentiable function of the pytree `params` (unused with `loss_and_grad`).
    params : pytree
        Starting parameters.
    max_iter : int
        Largest number of L-BFGS iterations.
    tol : float
        L-BFGS-B's ``ftol``.
    stall_rtol : float
        Relative fall of the loss over `stall_iter` iterations below which the polish stops (0: never).
    stall_iter : int
        Window of the stall test, in iterations.
    callback : callable, optional
        ``callback(params, i, loss_value)`` after each iteration.
    loss_and_grad : callable, optional
        ``loss_and_grad(params) -> (value, gradient)`` computed by hand, replacing autograd's.

    Returns
    -------
    params : pytree
        The final parameters.
    history : ndarray
        Loss value after each iteration.

    Examples
    --------
    >>> import numpy as np
    >>> params, history = lbfgs(lambda p: ((p - 3.0) ** 2).sum(), np.zeros(2))
    >>> np.round(params, 6).tolist(), bool(history[-1] < 1e-12)
    ([3.0, 3.0], True)
    """
    if isinstance(params, np.ndarray):  # a plain array: a reshape (autograd's unflatten traces a VJP per call)
        flat0, shape = np.array(params, dtype=float).ravel(), params.shape

        def unflatten(flat):
            # numpy's own reshape where nothing is traced (autograd's costs a wrapper call per evaluation)
            return anp.reshape(flat, shape) if loss_and_grad is None else flat.reshape(shape)
    else:
        flat0, unflatten = flatten(params)
    if loss_and_grad is None:
        objective = value_and_grad(lambda flat: loss(unflatten(flat)))
    else:
        def objective(flat):
            value, grad = loss_and_grad(unflatten(flat))
            return value, np.ravel(grad)
    history, last = [], [np.nan]

    def fun(flat):
        value, grad = objective(flat)
        value = float(value)
        if not math.isfinite(value) or not np.isfinite(grad).all():
            return np.inf, np.zeros_like(flat)
        last[0] = value
        return value, np.asarray(grad, dtype=float)

    def step_callback(flat):
        # Called once per accepted iteration: the last evaluation is the loss at the new iterate.
        history.append(last[0])
        if callback is not None:
            callback(unflatten(flat), len(history), last[0])
        if stall_rtol and len(history) > stall_iter:
            before = history[-1 - stall_iter]
            if before - history[-1] <= stall_rtol * before:
                raise StopIteration  # ends scipy's minimize with the current iterate

    result = optimize.minimize(
        fun, flat0, jac=True, method="L-BFGS-B", callback=step_callback,
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-12, "maxcor": 20},
    )
    if not history:
        history.append(float(result.fun))
    return unflatten(result.x), np.asarray(history)


def cosine_schedule(n_iter, *, final=0.05):
    """Cosine decay from 1 to `final` over `n_iter` steps, for `adam(schedule=...)`.

    Parameters
    ----------
    n_iter : int
        Number of steps of the decay.
    final : float
        Factor reached at step `n_iter` (and kept after it).

    Returns
    -------
    schedule : callable
        ``schedule(i)``: the learning-rate factor at step `i`.

    Examples
    --------
    >>> schedule = cosine_schedule(100)
    >>> [round(float(schedule(i)), 3) for i in (0, 50, 100, 200)]
    [1.0, 0.525, 0.05, 0.05]
    """
    return lambda i: final + (1 - final) * 0.5 * (1 + anp.cos(np.pi * min(i, n_iter) / n_iter))
