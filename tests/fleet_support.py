"""Two instances of the service on one store, seen through one interface: HTTP (two ``scripts/serve.py``
processes) or WSGI (two apps in this process, on one mongomock client), for tests/test_fleet.py.

``Instance.request`` answers an ``Answer`` either way; ``LoadBalancerFetcher`` is the downstream verifier's
HTTP, sent to the instances in turn as a load balancer would; ``Login`` runs a person's code flow with the
test login (``tests.security.race_wsgi.HttpTestBroker``) at whichever instance is named for each step.
"""

from __future__ import annotations

import base64
import json
import itertools
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

import requests

from identity.verify import HttpResponse
from tests.security.live import REDIRECT_URI, REQUEST_TIMEOUT, free_port, pkce_pair

REDIS_START_TIMEOUT = 10.0


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


class HttpInstance:
    """One serve.py process, reached over HTTP (a ``requests.Session`` per thread)."""

    def __init__(self, name: str, base: str) -> None:
        self.name = name
        self.base = base
        self._local = threading.local()

    def request(self, method: str, path: str, *, data: Mapping[str, str] | None = None,
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> Answer:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        response = session.request(method, self.base + path, data=data, params=params, headers=dict(headers or {}),
                                   allow_redirects=False, timeout=REQUEST_TIMEOUT)
        try:
            body = response.json()
        except ValueError:
            body = response.content
        return Answer(response.status_code, body, {k.lower(): v for k, v in response.headers.items()})


class WsgiInstance:
    """One app in this process (its own services, caches and keyring), reached through a test client."""

    def __init__(self, name: str, app: Any) -> None:
        self.name = name
        self.app = app
        self._local = threading.local()

    def request(self, method: str, path: str, *, data: Mapping[str, str] | None = None,
                params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> Answer:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.app.test_client()
        response = client.open(path, method=method, data=data, query_string=params, headers=dict(headers or {}))
        body = response.get_json(silent=True)
        return Answer(response.status_code, body if body is not None else response.get_data(),
                      {k.lower(): v for k, v in response.headers.items()})


class LoadBalancerFetcher:
    """The verifier's ``Fetcher``: each GET of an issuer URL goes to the next instance in turn."""

    def __init__(self, issuer: str, instances: list[Any]) -> None:
        self._issuer = issuer
        self._next = itertools.cycle(instances)
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def get(self, url: str) -> HttpResponse:
        assert url.startswith(self._issuer + "/"), url
        with self._lock:
            instance = next(self._next)
        self.calls.append(instance.name)
        answer = instance.request("GET", url[len(self._issuer):])
        body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        return HttpResponse(answer.status, body, headers=answer.headers)

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        raise AssertionError("introspection is not used here")


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def log_in(at: list[Any], client_id: str, email: str) -> dict[str, Any]:
    """A person's code flow, its three steps at ``at[0]``, ``at[1]``, ``at[2]`` (any instances)."""
    verifier, challenge = pkce_pair()
    started = at[0].request("GET", "/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid records:read"})
    assert started.status == 303, started
    login = urlsplit(started.headers["location"])
    done = at[1].request("GET", login.path, params={**query_of(started.headers["location"]), "email": email})
    assert done.status == 303, done
    code = query_of(done.headers["location"])["code"]
    tokens = at[2].request("POST", "/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": client_id,
        "code_verifier": verifier})
    assert tokens.status == 200, tokens
    return tokens.body


def refresh(instance: Any, client_id: str, refresh_token: str) -> Answer:
    return instance.request("POST", "/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                    "client_id": client_id})


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, in memory only; a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def __enter__(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
