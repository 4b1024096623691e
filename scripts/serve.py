#!/usr/bin/env python3
"""Serve the identity service in production: ``python scripts/serve.py --bind HOST:PORT --workers N``.

The one start command (``make run``, the README, the benchmarks). Settings come from the ``IDENTITY_*``
environment variables as always. The app is built once here, before any worker starts, so a bad setting
stops the start with one line on stderr (exit 1) instead of a crash-looping worker; the workers are forked
from this process and share its parsed keys. Behind it is granian (a Rust HTTP server on hyper: HTTP is
parsed outside Python; chosen by measurement, BENCHMARKS.md "Servers"), with the app wrapped in
``identity.web.http_strict.StrictHttp`` for the framing rules hyper leaves to the app, and each worker's
I/O thread kept from preempting the app's thread (``identity.web.io_threads``: 1.2x the tokens per busy core).

What the server gives, and the settings (constants below):

* one worker process per core by default (``--workers``), each with one Python thread (``--threads``;
  raise it where upstream login calls, which wait on the network, are a large share of the traffic);
* keep-alive; a connection idle for ``--idle-timeout`` seconds (default ``IDLE_TIMEOUT``), or whose
  request line and headers take longer than that to arrive, is closed;
* request line plus headers at most ``MAX_HEAD_BYTES`` (431 above it; the app refuses smaller limits per
  header and query string, and bodies over 64 KiB with 413);
* SIGTERM: stop accepting, let requests in flight finish (at most ``GRACEFUL_TIMEOUT`` seconds), exit;
  SIGHUP: replace every worker gracefully;
* a worker that dies is replaced at once (a worker dying again within seconds of its replacement stops
  the server: run it under a supervisor that restarts it, e.g. systemd ``Restart=always``).

hyper reads request bodies as the app reads them, with no timeout of its own: put a reverse proxy that
buffers request bodies and re-serialises requests in front (README "Production").

With ``IDENTITY_METRICS_BIND=HOST:PORT`` set, ``GET /metrics`` is served there by an exporter process of its
own (``identity.metrics_exporter``), never on ``--bind``: every worker writes its metrics to a file in a
directory made for this run (``PROMETHEUS_MULTIPROC_DIR`` if set, emptied at start; otherwise a private
temporary one, removed at exit), and the exporter adds them up at each scrape.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

IDLE_TIMEOUT = 10  # seconds; behind a load balancer, above the balancer's own idle timeout
MAX_HEAD_BYTES = 64 * 1024
GRACEFUL_TIMEOUT = 30
BACKLOG = 1024
# granian's default line names the client's address: no log line of this service does (docs/deploy.md)
ACCESS_LOG_FORMAT = '[%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f'
DEFAULT_APP = "wsgi:app"


def default_workers() -> int:
    """The cores this process may run on (``taskset`` and cgroup cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def seconds(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 60:
        raise argparse.ArgumentTypeError(f"expected 1 to 60 seconds, got {value!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="serve.py", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", type=parse_bind, default=("127.0.0.1", 8000), metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8000)")
    parser.add_argument("--workers", type=positive, default=None, metavar="N",
                        help=f"worker processes (default: one per core, here {default_workers()})")
    parser.add_argument("--threads", type=positive, default=1, metavar="N",
                        help="Python threads per worker (default 1: token issuance is CPU-bound)")
    parser.add_argument("--idle-timeout", type=seconds, default=IDLE_TIMEOUT, metavar="S",
                        help="close a connection idle (or sending its request head) this long; 1-60 "
                             f"(default {IDLE_TIMEOUT}; behind a load balancer, above its idle timeout)")
    parser.add_argument("--access-log", action="store_true",
                        help="granian's line for every request (time, method, path, status, duration; never the "
                             "client's address)")
    parser.add_argument("--app", default=DEFAULT_APP, metavar="MODULE:NAME",
                        help="the WSGI app to serve (default: the service, wsgi:app)")
    return parser.parse_args(argv)


def load_app(spec: str) -> Callable[..., Any]:
    """Import ``MODULE:NAME`` from the working directory, as gunicorn does: the repository root, whose
    ``wsgi.py`` exits with one line on a bad setting. ``scripts/`` leaves the import path first, so that its
    modules shadow nothing."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"error: no module {module_name!r} in {os.getcwd()}: start serve.py from the repository root, "
              "or name the app with --app MODULE:NAME", file=sys.stderr)
        raise SystemExit(1) from None
    return getattr(module, name or "app")


def strict(app: Callable[..., Any]) -> Callable[..., Any]:
    """The app inside the framing checks hyper leaves to us (``identity.web.http_strict``)."""
    from identity.web.http_strict import StrictHttp

    services = getattr(app, "extensions", {}).get("identity")
    https = bool(services and services.settings.issuer_is_https)
    return StrictHttp(app, https=https)


def forget_settings_environment() -> None:
    """Drop ``IDENTITY_*`` from this process's environment once the app is built.

    granian copies ``os.environ`` into every request's WSGI environ; passphrases and secrets read at start
    need not ride along with every request (and the workers, forked after this, never read them again).
    """
    for name in [n for n in os.environ if n.startswith("IDENTITY_")]:
        del os.environ[name]


def server(args: argparse.Namespace) -> Any:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    host, port = args.bind
    return Server(
        args.app, address=host, port=port, interface=Interfaces.WSGI, http=HTTPModes.http1, websockets=False,
        workers=args.workers or default_workers(), blocking_threads=args.threads, runtime_threads=1,
        backlog=BACKLOG,
        http1_settings=HTTP1Settings(header_read_timeout=args.idle_timeout * 1000, keep_alive=True,
                                     max_buffer_size=MAX_HEAD_BYTES),
        respawn_failed_workers=True, respawn_interval=1.0, workers_kill_timeout=GRACEFUL_TIMEOUT,
        log_access=args.access_log, log_access_format=ACCESS_LOG_FORMAT, log_level=LogLevels.info,
    )


def metrics_address(bind: tuple[str, int]) -> tuple[str, int] | None:
    """``IDENTITY_METRICS_BIND`` as (host, port), None when unset; exits with one line when it cannot be used."""
    from identity.metrics_exporter import parse_bind, same_listener

    value = (os.environ.get("IDENTITY_METRICS_BIND") or "").strip()
    if not value:
        return None
    try:
        address = parse_bind(value)
    except ValueError as exc:
        raise SystemExit(f"refusing to start: IDENTITY_METRICS_BIND: {exc}") from None
    if same_listener(address, bind):
        raise SystemExit(f"refusing to start: IDENTITY_METRICS_BIND ({value}) is the public address (--bind): "
                         "metrics are served on a listener of their own, never to the public")
    return address


def metrics_exporter(app: Any, address: tuple[str, int]) -> Any:
    """The exporter for ``app`` (the state gauges need its settings and store), its address bound now."""
    from identity.metrics import StateCollector, render, scrape_registry
    from identity.metrics_exporter import MetricsExporter

    services = getattr(getattr(app, "_next", app), "extensions", {}).get("identity")
    state = StateCollector(keys_dir=services.settings.keys_dir, store=services.store) if services else None
    registry = scrape_registry(state)
    exporter = MetricsExporter(address, lambda: render(registry))
    try:
        exporter.bind()
    except OSError as exc:
        raise SystemExit(f"refusing to start: cannot serve metrics on {address[0]}:{address[1]} "
                         f"(IDENTITY_METRICS_BIND): {exc.strerror}") from None
    return exporter


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    address = metrics_address(args.bind)
    directory = None
    if address is not None:  # before anything imports prometheus_client: every process writes its own file
        from identity.metrics_exporter import prepare_directory

        directory = prepare_directory()
    from identity.web.io_threads import BatchIoThreads
    from identity.web.ratelimit import exit_if_refused

    exit_if_refused(args.workers or default_workers())  # e.g. per-process rate-limit counters with several workers
    app = strict(load_app(args.app))
    exporter = metrics_exporter(app, address) if address is not None else None
    forget_settings_environment()
    try:
        if exporter is not None:
            pid = exporter.start()
            host, port = exporter.address
            print(f"serve.py: metrics at http://{host}:{port}/metrics (exporter PID {pid})", file=sys.stderr,
                  flush=True)
        # The workers are forked from this process: each gets the app built above.
        served = BatchIoThreads(app)
        server(args).serve(target_loader=lambda: served, wrap_loader=False)
    finally:
        if exporter is not None:
            exporter.stop()
        if directory is not None and directory[1]:
            from identity.metrics_exporter import remove_directory

            remove_directory(directory[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
