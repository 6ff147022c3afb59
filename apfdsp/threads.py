"""Thread control: the fitting work runs with single-threaded BLAS, whatever the environment says.

The fits do thousands of small matrix operations (tens of rows). A multithreaded BLAS (numpy's default
OpenBLAS starts one thread per core) turns each of them into thread hand-offs, which on a machine busy
with other work (a DAW, a browser) made `apfdsp align` two to three times slower than with one thread.
`single_threaded_blas` limits the BLAS libraries in-process (threadpoolctl) for the duration of a call,
so users need not set ``OPENBLAS_NUM_THREADS``; the previous limits are restored afterwards, also when
calls from several threads overlap (the last one to leave restores them).

The module's place in the package (a leaf utility of the fits) is docs/architecture.md, section 2.27.
"""

import functools
import threading

from threadpoolctl import threadpool_limits

__all__ = ["single_threaded_blas"]


def single_threaded_blas(func):
    """Decorator: run `func` with every loaded BLAS library limited to one thread.

    Parameters
    ----------
    func : callable
        The function to run single-threaded.

    Returns
    -------
    callable
        `func` wrapped: each call runs inside ``threadpool_limits(1, "blas")``, the previous limits
        restored afterwards (also on an exception).

    Examples
    --------
    >>> import numpy as np
    >>> from threadpoolctl import threadpool_info
    >>> @single_threaded_blas
    ... def blas_threads():
    ...     return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    >>> blas_threads() <= {1}
    True
    """

    @functools.wraps(func)
    def limited(*args, **kwargs):
        _enter()
        try:
            return func(*args, **kwargs)
        finally:
            _leave()

    return limited


# The BLAS thread count is a process-wide setting, so overlapping calls from several threads share one
# limit: the first to enter sets it, the last to leave restores the limits found before the first.
_LOCK = threading.Lock()
_active = {"calls": 0, "limiter": None}


def _enter():
    with _LOCK:
        if _active["calls"] == 0:
            _active["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _active["calls"] += 1


def _leave():
    with _LOCK:
        _active["calls"] -= 1
        if _active["calls"] == 0:
            _active["limiter"].restore_original_limits()
            _active["limiter"] = None
