"""Keep granian's I/O thread from preempting the thread that runs the app (Linux): a thin WSGI layer.

A granian worker has two kinds of threads: its I/O runtime (Rust, tokio: ``tokio-rt-worker``), which reads
requests and writes responses, and the Python thread that runs the app. When both want one core (a worker
per core, every core busy), each response the app hands over wakes the I/O thread, and the kernel's wake-up
preemption switches to it at once: about five context switches a request, after each of which the app's
code and data are no longer in the core's caches. An in-process request costs 527 µs with warm caches and
633-683 µs when 1-4 MB of other memory was touched before it; that cold-cache tax is most of the gap between
the in-process and the served cost of a token.

Under ``SCHED_BATCH`` (sched(7): an unprivileged policy for CPU-bound threads, no priority change) a woken
thread does not preempt the running one; it runs at the next scheduling point and then serves every ready
connection at once. The I/O thread is still woken on an idle core as before, so only a busy core behaves
differently. Measured on one pinned core, client_credentials at c=32 (BENCHMARKS.md "phase 4"): 6,600
context switches a second become about 500, tokens per second rise from 1,256-1,289 to 1,521-1,530 and the
p99 falls from 28.5-30.0 to 24.1-27.9 ms; at c=1 nothing changes (p50 0.81 ms either way).

The threads exist only once granian serves, after the app is loaded in the worker, so the policy is set on the
first request each worker answers; ``scripts/serve.py`` installs the layer outside everything else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from .headers import WsgiApp


IO_THREAD_NAME = "tokio-rt-worker"  # its threads' name under granian 2.8 (tests/test_serve.py notices a rename)
TASKS = Path("/proc/self/task")

log = logging.getLogger(__name__)


def batch_io_threads(tasks: Path = TASKS, name: str = IO_THREAD_NAME) -> int:
    """Put this process's threads called ``name`` under ``SCHED_BATCH``; how many were changed.

    Does nothing where the policy or ``/proc`` does not exist (not Linux); a refusal (a sandbox that forbids
    ``sched_setscheduler``) is logged once and leaves the threads as they were: it costs speed, never
    correctness.
    """
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None or not tasks.is_dir():
        return 0
    changed = 0
    for task in tasks.iterdir():
        try:
            if (task / "comm").read_text().strip() != name:
                continue
            os.sched_setscheduler(int(task.name), batch, os.sched_param(0))
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        except OSError as exc:
            log.warning("could not put the server's I/O thread under SCHED_BATCH (%s): serving on, slower "
                        "when it shares a core with the app", exc.strerror or exc)
            return changed
        changed += 1
    return changed


class BatchIoThreads:
    """On the first request in each worker process, :func:`batch_io_threads`; then only passes requests on.

    Built before the workers are forked: each worker starts with its own copy of ``_pending``.
    """

    def __init__(self, wsgi_app: WsgiApp) -> None:
        self._next = wsgi_app
        self._pending = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._pending:
            self._pending = False
            batch_io_threads()
        return self._next(environ, start_response)
