"""Run one function in two forked processes at once (cache races in the tests)."""

from __future__ import annotations

import multiprocessing as mp


def run_in_two_processes(target, *args, timeout: float = 60) -> tuple[list, set[int]]:
    """Call ``target(*args, barrier, queue)`` in two forked processes that wait for each
    other at ``barrier``; each puts one result on ``queue``.

    Returns the two results and the two process ids; both processes must exit with 0.
    """
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=timeout)
        assert p.exitcode == 0
    return results, {p.pid for p in procs}
