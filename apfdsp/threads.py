"""Thread control: the fitting work runs with single-threaded BLAS, whatever the environment says.

The fits do thousands of small matrix operations (tens of rows). A multithreaded BLAS (numpy's default
OpenBLAS starts one thread per core) turns each of them into thread hand-offs, which on a machine busy
with other work (a DAW, a browser) made `apfdsp align` two to three times slower than with one thread.
`single_threaded_blas` limits the BLAS libraries in-process (threadpoolctl) for the duration of a call,
so users need not set ``OPENBLAS_NUM_THREADS``; the previous limits are restored afterwards.

The module's place in the package (a leaf utility of the fits) is docs/architecture.md, section 2.27.
"""

import functools

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
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return limited
