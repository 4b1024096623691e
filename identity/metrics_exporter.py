"""``/metrics`` on its own listener (``IDENTITY_METRICS_BIND=HOST:PORT``), never on the public port.

``scripts/serve.py`` prepares a fresh directory for the workers' metric files (``prepare_directory``, before
anything imports prometheus_client), builds the app, binds the metrics address (``MetricsExporter.bind``: a
taken or refused address stops the start with one line) and forks the exporter before granian forks the
workers. The exporter is a small process of its own: it answers ``GET /metrics`` with every worker's values
added up and the state gauges read at that moment (``identity.metrics.StateCollector``), on a store connection
of its own (opened in the exporter after the fork, never shared with a worker), answers anything else with
404, and exits when serve.py does (or when it finds itself orphaned).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ORPHAN_CHECK_SECONDS = 1.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # identity.metrics.MULTIPROC_ENV, without importing prometheus_client


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as (host, port); ``ValueError`` saying what is expected."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def same_listener(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two bind addresses would be (or overlap with) one listener: same port, same or wildcard host."""
    wildcard = {"0.0.0.0", "::", ""}
    return a[1] == b[1] and (a[0] == b[0] or a[0] in wildcard or b[0] in wildcard)


def prepare_directory(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[Path, bool]:
    """The workers' metric-file directory, emptied, and whether it was made here (to remove at exit).

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used and cleaned of old ``*.db`` files (values of a previous
    run would otherwise be added to this one's); otherwise a private directory (mode 0700) is made. Either way
    the variable is set, before prometheus_client is imported, so every process writes its own file there.
    """
    given = env.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        made = False
    else:
        directory = Path(tempfile.mkdtemp(prefix="identity-metrics-"))
        made = True
    env[MULTIPROC_ENV] = str(directory)
    return directory, made


def remove_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the scraper's requests are not logged
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def metrics_app(render: Callable[[], bytes]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering ``GET /metrics`` (and HEAD) with ``render()``; 404 and 405 otherwise."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            return [b"not found\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
            return [b""]
        try:
            body = render()
        except Exception as exc:  # noqa: BLE001 - a failed scrape is the scraper's 500, never the exporter's death
            body = f"# scrape failed: {type(exc).__name__}\n".encode()
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"),
                                                         ("Content-Length", str(len(body)))])
            return [body]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]

    return app


class MetricsExporter:
    """The exporter process: ``bind()`` in serve.py's process, then ``start()`` (fork), ``stop()`` at exit."""

    def __init__(self, address: tuple[str, int], render: Callable[[], bytes]) -> None:
        self.address = address
        self._render = render
        self._socket: socket.socket | None = None
        self.pid: int | None = None

    def bind(self) -> None:
        """Bind and listen now, so that a taken address stops the start before any worker exists (OSError)."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    def start(self) -> int:
        """Fork the exporter; this process closes its copy of the socket (the workers never hold it)."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the exporter
            code = 0
            try:
                self._serve(parent)
            except BaseException as exc:  # noqa: BLE001 - whatever happens, never return into serve.py's code
                print(f"metrics exporter stopped: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        self._socket.close()
        self._socket = None
        self.pid = pid
        return pid

    def _serve(self, parent: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: serve.py decides
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # serve.py's SIGHUP replaces the workers, not us
        assert self._socket is not None
        server = _ThreadingServer(self.address, _QuietHandler, bind_and_activate=False)
        server.socket.close()
        server.socket = self._socket  # the one bound in serve.py's process: adopted, already listening
        server.server_address = self._socket.getsockname()[:2]
        server.server_name, server.server_port = self.address
        server.setup_environ()
        server.set_app(metrics_app(self._render))
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
        server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.pid = None


def _exit_when_orphaned(parent: int) -> None:
    """serve.py was killed without stopping us: exit rather than serve stale files forever."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    sys.stderr.flush()
    os._exit(0)
