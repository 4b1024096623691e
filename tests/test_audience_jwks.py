"""Audiences registered by ``--jwks-uri`` (identity.oauth.audience_jwks): a slow, huge or dead JWKS
endpoint of one downstream service must not tie up the workers that serve every other request."""

from __future__ import annotations

import functools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from joserfc.jwk import RSAKey

from identity.oauth import audience_jwks
from identity.oauth.audience_jwks import (FETCH_DEADLINE_SECONDS, REFRESH_SECONDS, RETRY_AFTER_SECONDS, STALE_SECONDS,
                                          AudienceKeyUnavailable, RemoteKeys, fetch_jwks_with_requests)
from identity.oauth.audiences import AudienceRegistry, parse_encryption_key
from identity.tokens import EncryptionKey
from tests.conftest import API
from tests.lookup_support import present
from tests.test_oauth_flow import basic
from tests.verify_support import rsa_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@functools.lru_cache(maxsize=None)
def key(kid: str) -> EncryptionKey:
    """A stand-in audience key, told apart by its ``kid`` (RemoteKeys keeps whatever its fetch returns)."""
    return EncryptionKey(kid=kid, key=RSAKey.import_key(rsa_key("remote-keys").public_key()))


class Fetches:
    """A fetch that counts its calls and fails while ``failing``."""

    def __init__(self, key: Any) -> None:
        self.key, self.calls, self.failing = key, 0, False

    def __call__(self) -> Any:
        self.calls += 1
        if self.failing:
            raise OSError("connection refused")
        return self.key


def test_a_key_is_fetched_once_then_again_after_the_refresh_interval():
    clock, fetch = Clock(), Fetches(key("key-1"))
    keys = RemoteKeys(monotonic=clock)
    assert keys.get("aud", fetch) == key("key-1") and keys.get("aud", fetch) == key("key-1")
    assert fetch.calls == 1
    clock.now += REFRESH_SECONDS
    fetch.key = key("key-2")
    assert keys.get("aud", fetch) == key("key-2") and fetch.calls == 2


def test_a_failing_endpoint_is_asked_again_only_after_a_pause_and_the_last_key_serves_meanwhile():
    clock, fetch = Clock(), Fetches(key("key-1"))
    keys = RemoteKeys(monotonic=clock)
    keys.get("aud", fetch)
    clock.now += REFRESH_SECONDS
    fetch.failing = True
    for _ in range(20):  # a burst of requests while the endpoint is down: one try, the previous key
        assert keys.get("aud", fetch) == key("key-1")
    assert fetch.calls == 2
    clock.now += RETRY_AFTER_SECONDS
    assert keys.get("aud", fetch) == key("key-1") and fetch.calls == 3
    clock.now += STALE_SECONDS  # too old to use: the audience may have rotated it away long ago
    with pytest.raises(AudienceKeyUnavailable):
        keys.get("aud", fetch)
    with pytest.raises(AudienceKeyUnavailable):
        keys.get("aud", fetch)
    assert fetch.calls == 4
    fetch.failing = False
    clock.now += RETRY_AFTER_SECONDS
    assert keys.get("aud", fetch) == key("key-1") and fetch.calls == 5


def test_without_any_key_a_failure_answers_at_once_until_the_pause_is_over():
    clock, fetch = Clock(), Fetches(key("key"))
    fetch.failing = True
    keys = RemoteKeys(monotonic=clock)
    for _ in range(10):
        with pytest.raises(AudienceKeyUnavailable):
            keys.get("aud", fetch)
    assert fetch.calls == 1


def test_concurrent_requests_share_one_fetch():
    release, started = threading.Event(), threading.Event()
    calls = []

    def slow_fetch() -> EncryptionKey:
        calls.append(1)
        started.set()
        release.wait(5)
        return key("key")

    keys = RemoteKeys()
    results: list[EncryptionKey] = []
    threads = [threading.Thread(target=lambda: results.append(keys.get("aud", slow_fetch))) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    time.sleep(0.1)
    release.set()
    for thread in threads:
        thread.join(5)
    assert results == [key("key")] * 6 and len(calls) == 1


def test_while_one_request_refreshes_a_key_the_others_use_the_previous_one_without_waiting():
    clock = Clock()
    keys = RemoteKeys(monotonic=clock)
    keys.get("aud", lambda: key("old"))
    clock.now += REFRESH_SECONDS
    release, started = threading.Event(), threading.Event()

    def slow_fetch() -> EncryptionKey:
        started.set()
        release.wait(5)
        return key("new")

    refresher = threading.Thread(target=keys.get, args=("aud", slow_fetch))
    refresher.start()
    assert started.wait(5)
    began = time.monotonic()
    assert keys.get("aud", slow_fetch) == key("old") and time.monotonic() - began < 0.5
    release.set()
    refresher.join(5)
    assert keys.get("aud", lambda: key("unused")) == key("new")


# -- the fetch itself, against a real HTTP server on loopback ----------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    body: bytes = b"{}"
    trickle: float = 0.0  # seconds between bytes


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Any = self.server
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(server.body)))
        self.end_headers()
        try:
            if server.trickle:
                for byte in server.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(server.trickle)
            else:
                self.wfile.write(server.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/jwks"


def test_a_jwks_is_fetched_as_json(jwks_server):
    jwks_server.body = json.dumps({"keys": []}).encode()
    assert fetch_jwks_with_requests(url(jwks_server)) == {"keys": []}


def test_a_server_sending_a_byte_at_a_time_is_cut_off_at_the_deadline(jwks_server, monkeypatch):
    monkeypatch.setattr(audience_jwks, "FETCH_DEADLINE_SECONDS", 0.5)
    jwks_server.body, jwks_server.trickle = b'{"keys": [' + b" " * 200 + b"]}", 0.05  # each read well in time
    began = time.monotonic()
    with pytest.raises(AudienceKeyUnavailable, match="longer than"):
        fetch_jwks_with_requests(url(jwks_server))
    assert time.monotonic() - began < 0.5 + audience_jwks.READ_TIMEOUT_SECONDS + 0.5


def test_a_huge_answer_is_refused(jwks_server):
    jwks_server.body = b'{"keys": [' + b" " * (audience_jwks.MAX_JWKS_BYTES + 10) + b"]}"
    with pytest.raises(AudienceKeyUnavailable, match="larger than"):
        fetch_jwks_with_requests(url(jwks_server))


def test_the_deadline_is_short_enough_for_a_request_path():
    assert FETCH_DEADLINE_SECONDS <= 5 and audience_jwks.READ_TIMEOUT_SECONDS < FETCH_DEADLINE_SECONDS


# -- at the token endpoint ---------------------------------------------------------------------------

def test_a_dead_jwks_endpoint_costs_one_try_then_503s_answered_at_once(oauth_client, oauth, audience_keys,
                                                                        monkeypatch):
    """An audience whose JWKS cannot be fetched: client_credentials for it answers 503
    temporarily_unavailable, and a burst of requests makes one fetch, not one each."""
    calls = []

    def dead(uri: str) -> dict[str, Any]:
        calls.append(uri)
        raise OSError("connection refused")

    remote = "https://remote.example.org"
    registry: AudienceRegistry = oauth.audiences
    monkeypatch.setattr(registry, "_fetch", dead)
    registry.add(remote, key=None, jwks_uri=f"{remote}/jwks")
    backend, secret = oauth.clients.register(name="Remote job", public=False, redirect_uris=[], grant_types=None,
                                             scopes=["records:read"], audiences=[remote])
    for _ in range(5):
        refused = oauth_client.post("/token", data={"grant_type": "client_credentials", "scope": "records:read"},
                                    headers=basic(backend.client_id, secret))
        assert refused.status_code == 503 and refused.json["error"] == "temporarily_unavailable"
    assert calls == [f"{remote}/jwks"]
    # an audience with a registered key is not affected
    assert registry.encryption_key(present(registry.get(API))).kid == parse_encryption_key(audience_keys[API].public_pem).kid
