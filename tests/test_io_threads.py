"""``identity.web.io_threads``: the server's I/O thread under SCHED_BATCH, nothing else touched.

Real threads of this process, named as granian's I/O thread is; ``tests/test_serve.py`` checks the same on
serve.py's workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from identity.web import io_threads
from identity.web.io_threads import IO_THREAD_NAME, BatchIoThreads, batch_io_threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names and policies: Linux")

PR_SET_NAME = 15


@contextmanager
def named_thread(name: str) -> Iterator[int]:
    """A thread of this process whose kernel name is ``name``, alive for the block; yields its thread id."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    ready, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def run() -> None:
        libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield tid[0]
    finally:
        done.set()
        thread.join(10)


def test_only_the_io_threads_are_put_under_batch():
    me = threading.get_native_id()
    with named_thread(IO_THREAD_NAME) as io, named_thread("python-other") as other:
        assert os.sched_getscheduler(io) == os.SCHED_OTHER
        assert batch_io_threads() == 1
        assert os.sched_getscheduler(io) == os.SCHED_BATCH
        assert os.sched_getscheduler(other) == os.SCHED_OTHER
        assert os.sched_getscheduler(me) == os.SCHED_OTHER
        assert os.sched_getparam(io).sched_priority == 0  # no priority change


def test_without_an_io_thread_nothing_changes():
    with named_thread("python-other") as other:
        assert batch_io_threads() == 0
        assert os.sched_getscheduler(other) == os.SCHED_OTHER


def test_a_refused_policy_change_is_logged_and_serving_goes_on(monkeypatch, caplog):
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(io_threads.os, "sched_setscheduler", refuse)
    with named_thread(IO_THREAD_NAME) as io, caplog.at_level(logging.WARNING, logger="identity.web.io_threads"):
        assert batch_io_threads() == 0
        assert os.sched_getscheduler(io) == os.SCHED_OTHER
    assert "SCHED_BATCH" in caplog.text and "Operation not permitted" in caplog.text


def test_no_proc_no_policy(tmp_path):
    assert batch_io_threads(tasks=tmp_path / "absent") == 0


def test_the_layer_sets_the_policy_on_the_first_request_only_and_passes_everything_on(monkeypatch):
    calls: list[None] = []

    def batch_io_threads():
        calls.append(None)
        return 1

    monkeypatch.setattr(io_threads, "batch_io_threads", batch_io_threads)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    layer = BatchIoThreads(app)
    statuses: list[str] = []
    for path in ("/a", "/b", "/c"):
        assert layer({"PATH_INFO": path}, lambda status, headers, exc_info=None: statuses.append(status)) == [
            path.encode()]
    assert len(calls) == 1 and statuses == ["200 OK"] * 3
