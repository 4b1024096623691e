"""``/metrics`` under ``scripts/serve.py``: its own listener (``IDENTITY_METRICS_BIND``), every worker's values
added up, a fresh directory per run, never on the public port."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from identity.metrics_exporter import metrics_app, parse_bind, same_listener
from tests.security.live import REPO, Serve, deploy, free_port

APP = "tests.serve_wsgi:app"


@pytest.fixture(autouse=True, scope="module")
def _identity_log_level():
    """deploy() builds an app with log level WARNING in this process: give later modules theirs back."""
    logger = logging.getLogger("identity")
    level = logger.level
    yield
    logger.setLevel(level)


def requests_counted(text: str, route: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "identity_http_requests" for sample in family.samples
               if sample.name == "identity_http_requests_total" and sample.labels.get("route") == route)


def test_every_workers_requests_are_added_up_on_the_metrics_listener_only(tmp_path_factory, key_template):
    deployment = deploy(tmp_path_factory.mktemp("metrics"), key_template)
    port = free_port()
    stale = tmp_path_factory.mktemp("multiproc")
    (stale / "counter_99999.db").write_bytes(b"\0" * 64)  # a previous run's file: must not be added up
    env = {"IDENTITY_METRICS_BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(stale)}
    with Serve(deployment, workers=2, app=APP, env=env) as server:
        assert not (stale / "counter_99999.db").exists()
        pids = set()
        for _ in range(60):
            pids.add(requests.get(f"{server.url}/_test/environ", timeout=10).json()["pid"])
        assert len(pids) == 2  # both workers served
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert requests_counted(metrics.text, "/_test/environ") == 60
        assert "identity_signing_key_age_seconds" in metrics.text and "identity_store_up 1.0" in metrics.text
        # never on the public port; nothing else on the metrics one
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 404
        assert requests.post(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 405
        exporter = server.exporter_pid()
        assert exporter is not None and exporter not in server.worker_pids()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{exporter}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{exporter}").exists()  # stopped with serve.py


def test_the_private_directory_is_made_for_the_run_and_removed_after(tmp_path_factory, key_template):
    deployment = deploy(tmp_path_factory.mktemp("metrics-dir"), key_template)
    port = free_port()
    with Serve(deployment, workers=1, app=APP, env={"IDENTITY_METRICS_BIND": f"127.0.0.1:{port}"}) as server:
        pid = server.worker_pids()[0]
        directory = Path(os.readlink(next(p for p in Path(f"/proc/{pid}/fd").iterdir()
                                          if os.readlink(p).endswith(".db")))).parent
        assert directory.name.startswith("identity-metrics-") and (directory.stat().st_mode & 0o777) == 0o700
    assert not directory.exists()


def serve_refusal(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    base.update({"IDENTITY_ENV": "development", "PYTHONPATH": str(REPO)})
    base.update(env)
    return subprocess.run([sys.executable, str(REPO / "scripts" / "serve.py"), "--bind", f"127.0.0.1:{port}",
                           "--workers", "1", "--app", APP], env=base, capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.mark.parametrize("value, reason", [
    ("127.0.0.1:{port}", "is the public address"),
    ("0.0.0.0:{port}", "is the public address"),
    ("localhost", "expected HOST:PORT"),
    ("127.0.0.1:99999", "expected HOST:PORT"),
])
def test_metrics_on_the_public_port_or_a_bad_address_stop_the_start(value, reason):
    port = free_port()
    done = serve_refusal({"IDENTITY_METRICS_BIND": value.format(port=port)}, port)
    assert done.returncode == 1 and reason in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("refusing to start: IDENTITY_METRICS_BIND")


def test_a_taken_metrics_address_stops_the_start_before_any_worker(tmp_path, key_template):
    import socket

    deployment = deploy(tmp_path, key_template)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = serve_refusal({**deployment.environment(), "IDENTITY_METRICS_BIND": address}, deployment.port)
    assert done.returncode == 1 and "cannot serve metrics" in done.stderr and "Spawning worker" not in done.stdout


def test_bind_parsing_and_overlap():
    assert parse_bind("[::1]:9100") == ("::1", 9100) and parse_bind("0.0.0.0:9100") == ("0.0.0.0", 9100)
    for bad in ("", ":9100", "host:", "host:0", "host:x"):
        with pytest.raises(ValueError):
            parse_bind(bad)
    assert same_listener(("0.0.0.0", 8000), ("127.0.0.1", 8000)) and same_listener(("::", 1), ("10.0.0.1", 1))
    assert not same_listener(("127.0.0.1", 9100), ("127.0.0.1", 8000))
    assert not same_listener(("127.0.0.1", 8000), ("127.0.0.2", 8000))


def test_a_failed_scrape_is_the_scrapers_500_not_the_exporters_death():
    def broken() -> bytes:
        raise RuntimeError("disk gone")

    app = metrics_app(broken)
    statuses: list[str] = []
    body = b"".join(app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s)))
    assert statuses == ["500 Internal Server Error"] and b"RuntimeError" in body and b"disk gone" not in body
