"""``scripts/serve.py``, the production start command, tried black-box on 127.0.0.1.

Keep-alive, the idle timeout, the size limits, a killed worker replaced, SIGTERM letting a request in
flight finish while refusing new connections, a bad setting refused before any worker starts, the
framing layer installed (``identity.web.http_strict``), the I/O thread under SCHED_BATCH
(``identity.web.io_threads``), and no ``IDENTITY_*`` secret in request environs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from pathlib import Path

import pytest
import requests

from identity.web.io_threads import IO_THREAD_NAME

from tests.security.live import REPO, Serve, deploy

APP = "tests.serve_wsgi:app"


def head_and_body(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send one request on ``sock`` and read one Content-Length-framed response."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


@pytest.fixture(autouse=True, scope="module")
def _identity_log_level():
    """deploy() builds an app with log level WARNING in this process: give later modules theirs back."""
    logger = logging.getLogger("identity")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def served(tmp_path_factory, key_template):
    """serve.py with its default worker count (one per core) and a 1-second idle timeout."""
    deployment = deploy(tmp_path_factory.mktemp("serve"), key_template)
    with Serve(deployment, workers=None, app=APP, args=("--idle-timeout", "1")) as server:
        yield server


def test_workers_default_to_one_per_core_and_the_framing_layer_is_installed(served):
    assert len(served.worker_pids()) == len(os.sched_getaffinity(0))
    answer = requests.get(f"{served.url}/healthz", timeout=10)
    assert answer.status_code == 200 and answer.headers["Server"] == "identity"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    refused = requests.request("PURGE", f"{served.url}/healthz", timeout=10)
    assert refused.status_code == 501 and refused.headers["Connection"] == "close"
    with socket.create_connection(("127.0.0.1", served.deployment.port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")  # refused by hyper itself: no software named either
        raw = sock.recv(4096).decode("latin-1").lower()
    assert raw.startswith("http/1.1 400") and "granian" not in raw and "server:" not in raw


def test_no_identity_setting_reaches_the_request_environ(served):
    assert requests.get(f"{served.url}/_test/environ", timeout=10).json()["identity_keys"] == []


def test_a_worker_that_answered_runs_its_io_thread_under_batch(served):
    answer = requests.get(f"{served.url}/_test/environ", timeout=10).json()
    pid = answer["pid"]
    assert os.sched_getscheduler(answer["thread"]) == os.SCHED_OTHER  # the app's own thread is never batched
    policies: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        policies.setdefault(name, set()).add(os.sched_getscheduler(int(task.name)))
    assert policies.pop(IO_THREAD_NAME) == {os.SCHED_BATCH}  # granian's I/O thread
    assert set().union(*policies.values()) == {os.SCHED_OTHER}  # the app's thread and the rest unchanged


def test_keep_alive_serves_several_requests_on_one_connection_then_idles_out(served):
    with socket.create_connection(("127.0.0.1", served.deployment.port), timeout=10) as sock:
        for _ in range(3):
            head, body = head_and_body(sock, b"GET /healthz HTTP/1.1\r\nHost: id\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body) == {"status": "ok"}
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server: idle for longer than --idle-timeout
        assert time.monotonic() - started < 5


def test_a_slow_request_head_is_cut_off(served):
    with socket.create_connection(("127.0.0.1", served.deployment.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: id\r\n")  # and never the end of the head
        started = time.monotonic()
        assert b" 200 " not in sock.recv(1000)
        assert time.monotonic() - started < 5


def test_oversized_heads_and_bodies_are_refused(served):
    huge_head = requests.get(f"{served.url}/healthz", timeout=10,
                             headers={f"X-H{i}": "a" * 4000 for i in range(20)})  # 80 KB of headers
    assert huge_head.status_code == 431
    body = requests.post(f"{served.url}/token", data={"grant_type": "client_credentials", "x": "a" * 70_000},
                         timeout=10)
    assert body.status_code == 413
    assert requests.get(f"{served.url}/healthz?" + "a" * 9000, timeout=10).status_code == 414


def test_a_killed_worker_is_replaced(served):
    victim = served.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = served.worker_pids()
        if victim not in pids and len(pids) == served.workers:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"worker {victim} was not replaced: {served.worker_pids()}")
    served.wait_for_workers()
    answered_by = {requests.get(f"{served.url}/_test/environ", timeout=10).json()["pid"] for _ in range(20)}
    assert victim not in answered_by


def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(tmp_path, key_template):
    deployment = deploy(tmp_path, key_template)
    server = Serve(deployment, workers=1, app=APP)
    server.start()
    try:
        outcome: dict[str, object] = {}

        def slow() -> None:
            try:
                outcome["response"] = requests.get(f"{server.url}/_test/slow?seconds=2", timeout=30)
            except requests.RequestException as exc:
                outcome["error"] = exc

        in_flight = threading.Thread(target=slow)
        in_flight.start()
        time.sleep(0.5)  # the request is in the worker now
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        refused = False
        deadline = time.monotonic() + 1.2  # well before the slow request ends
        while time.monotonic() < deadline and not refused:
            try:
                with socket.create_connection(("127.0.0.1", deployment.port), timeout=1):
                    time.sleep(0.05)
            except OSError:
                refused = True
        in_flight.join(timeout=30)
        assert refused, "new connections were still accepted after SIGTERM"
        response = outcome.get("response")
        assert isinstance(response, requests.Response) and response.status_code == 200, outcome
        assert server.process.wait(timeout=30) == 0
    finally:
        server.stop()


def test_a_bad_setting_stops_the_start_with_one_line(tmp_path, key_template):
    deployment = deploy(tmp_path, key_template)
    env = deployment.environment(IDENTITY_ENV="production")  # development keys, http issuer, no passphrase
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "serve.py"), "--bind",
                           f"127.0.0.1:{deployment.port}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr[-500:]
    assert "production" in done.stderr.lower() and "Traceback" not in done.stderr
    assert "Spawning worker" not in done.stdout


@pytest.mark.parametrize("argv", [["--bind", "nowhere"], ["--workers", "0"], ["--idle-timeout", "600"]])
def test_bad_arguments_are_refused(argv):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "serve.py"), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error:" in done.stderr


def test_the_access_log_line_never_names_the_clients_address(tmp_path, key_template):
    """``make run`` serves with ``--access-log``: granian's default line starts with the client's address, which
    no log line of this service carries."""
    deployment = deploy(tmp_path, key_template)
    with Serve(deployment, workers=1, app=APP, args=("--access-log",)) as server:
        assert requests.get(f"{server.url}/healthz?probe=access-log", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("/healthz" in line for line in list(server.log)):
            time.sleep(0.05)
        lines = [line for line in list(server.log) if "/healthz" in line]
    assert lines and not any("127.0.0.1" in line for line in lines), lines
