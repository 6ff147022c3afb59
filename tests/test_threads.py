"""`apfdsp.threads.single_threaded_blas`: one BLAS thread inside, the previous limits back outside."""

import threading

from threadpoolctl import threadpool_info, threadpool_limits

from apfdsp.threads import single_threaded_blas


def blas_threads():
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_overlapping_calls_from_two_threads_restore_the_limits():
    """A enters, B enters, A leaves, B leaves: the limits found before A are back (a naive per-call
    limit leaves the process at one thread for good: B saved the limit A had set when it entered)."""
    before = blas_threads()
    a_inside, b_inside, b_release = (threading.Event() for _ in range(3))

    @single_threaded_blas
    def first():
        a_inside.set()
        b_inside.wait(5)

    @single_threaded_blas
    def second():
        b_inside.set()
        b_release.wait(5)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    a_inside.wait(5)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    threads[0].join(5)
    b_release.set()
    threads[1].join(5)
    assert blas_threads() == before


def test_limits_are_restored_after_an_exception():
    @single_threaded_blas
    def fails():
        raise ValueError("boom")

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        try:
            fails()
        except ValueError:
            pass
        assert blas_threads() == before
