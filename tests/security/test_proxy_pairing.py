"""serve.py behind the reverse proxy README "Production" asks for: nginx with ``docs/nginx.conf``.

Two things granian leaves to the proxy are tried through the pairing: a client trickling a request body
(granian has no body timeout; nginx holds the body until it is complete, so the worker stays free) and
bare-LF framing (hyper reads a bare LF as a line end; nginx reads it the same way and rebuilds the request
with CRLF). The ambiguous requests nginx refuses itself, and a chunked body (refused by serve.py alone with
411) reaches the app de-chunked. Skipped, saying so, where nginx is not installed (CI installs
Debian's nginx-light).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.security.live import REPO, Serve, deploy, free_port
from tests.security.test_http_parsing import AMBIGUOUS, BODY, CL, CT, exchange, post

pytestmark = pytest.mark.slow
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def nginx_config(root: Path, listen: int, upstream: int) -> Path:
    """``docs/nginx.conf`` on 127.0.0.1 without TLS, inside a minimal main configuration."""
    site = (REPO / "docs" / "nginx.conf").read_text()
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    site = "\n".join(line for line in site.splitlines() if not line.strip().startswith("ssl_"))
    (root / "site.conf").write_text(site)
    temp = root / "temp"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (f"{user}worker_processes 1;\npid {root / 'nginx.pid'};\nerror_log stderr warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/f;\n  uwsgi_temp_path {temp}/u;\n  scgi_temp_path {temp}/s;\n"
            f"  include {root / 'site.conf'};\n}}\n")
    (root / "nginx.conf").write_text(main)
    return root / "nginx.conf"


@pytest.fixture(scope="module")
def pairing(tmp_path_factory, key_template) -> Iterator[tuple[Serve, int]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light; CI installs it)")
    root = tmp_path_factory.mktemp("pairing")
    deployment = deploy(root, key_template)
    port = free_port()
    config = nginx_config(root, port, deployment.port)
    with Serve(deployment, workers=1, threads=1, app="tests.serve_wsgi:app") as server:
        proxy = subprocess.Popen([NGINX, "-p", str(root), "-c", str(config), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if proxy.poll() is not None:
                    raise RuntimeError(f"nginx exited: {proxy.stderr.read() if proxy.stderr else ''}")
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
            else:
                raise RuntimeError("nginx did not answer in time")
            yield server, port
        finally:
            proxy.terminate()
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(timeout=10)


def test_a_trickled_body_waits_in_the_proxy_not_in_the_worker(pairing):
    server, port = pairing  # one worker with one thread: a held thread would stall everything
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /token HTTP/1.1\r\nHost: id\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\ngrant_type=")  # and the rest never comes
        time.sleep(0.3)
        started = time.monotonic()
        answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.status_code == 200 and time.monotonic() - started < 2


def test_bare_lf_is_rebuilt_by_the_proxy_and_read_as_crlf(pairing):
    _, port = pairing
    follow_up = b"GET /healthz HTTP/1.1\nHost: id\nConnection: close\n\n"
    lf = exchange(port, post(CT, CL, eol=b"\n") + follow_up)
    crlf = exchange(port, post(CT, CL) + follow_up.replace(b"\n", b"\r\n"))
    status = [line.split(b" ")[1] for line in (lf, crlf)]
    assert status[0] == status[1] == b"401", (lf[:200], crlf[:200])
    assert lf.count(b"HTTP/1.1 ") == crlf.count(b"HTTP/1.1 ") == 2
    assert lf.endswith(b'{"status":"ok"}\n')


@pytest.mark.parametrize("name", ["content-length and transfer-encoding", "two different content-lengths",
                                  "obsolete line folding", "chunked is not the last coding"])
def test_the_proxy_refuses_ambiguous_framing_itself(pairing, name):
    _, port = pairing
    answer = exchange(port, AMBIGUOUS[name])
    assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.1 501 "), answer[:100]
    assert answer.count(b"HTTP/1.1 ") == 1 and b"access_token" not in answer


def test_a_chunked_body_reaches_the_app_de_chunked(pairing):
    server, port = pairing
    chunked = post(CT, b"Transfer-Encoding: chunked", b"Connection: close",
                   body=b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n")
    assert exchange(server.deployment.port, chunked).startswith(b"HTTP/1.1 411 ")  # serve.py alone
    assert exchange(port, chunked).startswith(b"HTTP/1.1 401 ")  # the form was read: no client credentials
