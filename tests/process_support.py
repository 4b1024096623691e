"""Forked processes let go at one instant: races between worker processes on one database file."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Sequence


def race_in_processes(work: Callable[..., Any], calls: Sequence[tuple[Any, ...]], timeout: float = 60) -> list[Any]:
    """``work(*args)`` in one forked process per ``args``, every process started before any is let go.

    Returns what each call returned, in the order they finished; a call that raised gives its ``repr``.
    """
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_when_released, args=(work, args, start, out)) for args in calls]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=timeout)
    return results


def _when_released(work: Callable[..., Any], args: tuple[Any, ...], start: Any, out: Any) -> None:
    start.wait()
    try:
        out.put(work(*args))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out.put(repr(exc))
