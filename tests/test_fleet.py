"""Several instances on one store and one keys directory, a client alternating between them.

Two variants run the same scenarios:

* ``sqlite``: two ``scripts/serve.py`` processes on different ports, one SQLite file, one keys directory, rate-
  limit counters in a Redis server both use (Debian's ``redis-server``, installed by ``.ci/run``);
* ``mongodb``: two apps in this process (each with its own services, caches and keyring) on one mongomock
  client, since mongomock cannot be shared between processes.

What only a real replica set can show (docs/deploy.md, "Several instances"): majority writes surviving a
primary's failover, retryable writes during an election, and a secondary's replication lag (the service reads
from the primary only). mongomock has one in-memory copy and no network.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import mongomock
import pytest
from pymongo import MongoClient

from identity import create_app
from identity.config import Settings
from identity.keys.keyring import RELOAD_INTERVAL_SECONDS
from identity.keys.lifecycle import describe, rotate_signing_keys
from identity.oauth.audiences import parse_encryption_key
from identity.verify import TokenVerifier, VerificationError
from identity.web.ratelimit import CLIENT_AUTH_FAILURES_PER_CLIENT
from tests.conftest import API
from tests.fleet_support import (
    HttpInstance,
    LoadBalancerFetcher,
    RedisServer,
    WsgiInstance,
    basic,
    log_in,
    refresh,
)
from tests.http_login import HttpTestBroker
from tests.security.live import REPO, Serve, deploy, free_port

LOAD_THREADS = 4
LOAD_SECONDS = 6.0  # the rotation happens in the middle
RELOAD_SLACK_SECONDS = 1.5  # one request's time on a loaded two-core test machine, on top of the interval
FAILURES_ALLOWED = int(CLIENT_AUTH_FAILURES_PER_CLIENT.split()[0])


@dataclass
class Fleet:
    """Two instances of one deployment and what the tests need to drive them."""

    kind: str
    a: Any
    b: Any
    issuer: str
    keys_dir: Path
    public_client: str
    confidential: tuple[str, str]
    audience_key: Any
    rotate: Callable[[], None]
    rate_limits_shared: bool

    def verifier(self) -> tuple[TokenVerifier, LoadBalancerFetcher]:
        fetcher = LoadBalancerFetcher(self.issuer, [self.a, self.b])
        verifier = TokenVerifier(issuer=self.issuer, audience=API, decryption_keys=[self.audience_key],
                                 jwks_uri=f"{self.issuer}/.well-known/jwks.json", fetcher=fetcher)
        return verifier, fetcher


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer | None]:
    if not RedisServer.available():
        yield None  # the tests that need shared counters skip and say why
        return
    with RedisServer() as server:
        yield server


def rate_limit_settings(redis: RedisServer | None) -> dict[str, str]:
    if redis is None:
        return {"IDENTITY_RATE_LIMITS_ENABLED": "false"}
    return {"IDENTITY_RATE_LIMITS_ENABLED": "true", "IDENTITY_RATE_LIMIT_STORAGE_URI": redis.url}


def publish_next_key(keys_dir: Path) -> None:
    """What an operator does once after ``keys.py init``: a next key published before anything rotates."""
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=time.time())


@pytest.fixture(scope="module")
def sqlite_fleet(tmp_path_factory, key_template, audience_keys, redis) -> Iterator[Fleet]:
    deployment = deploy(tmp_path_factory.mktemp("fleet"), key_template, audience_key=audience_keys[API].public_pem)
    app = create_app(deployment.settings())
    try:
        rs, secret = app.extensions["identity"].oauth.clients.register(
            name="Resource server", public=False, redirect_uris=[], grant_types=None, scopes=["records:read"],
            audiences=[API], introspects=[API])
    finally:
        app.extensions["identity"].store.close()
    publish_next_key(deployment.keys_dir)
    env = rate_limit_settings(redis)

    def rotate() -> None:  # the operator's command, on the shared keys directory
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "keys.py"), "rotate"], cwd=REPO,
                              env=deployment.environment(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    other = dataclasses.replace(deployment, port=free_port())  # same store, keys and issuer; another port
    with Serve(deployment, workers=1, env=env) as a, Serve(other, workers=1, env=env) as b:
        yield Fleet("sqlite", HttpInstance("a", a.url), HttpInstance("b", b.url), deployment.issuer,
                    deployment.keys_dir, deployment.client_id, (rs.client_id, secret), audience_keys[API].private_key,
                    rotate, redis is not None)


@pytest.fixture(scope="module")
def mongodb_fleet(tmp_path_factory, key_template, audience_keys, redis) -> Iterator[Fleet]:
    import shutil

    root = tmp_path_factory.mktemp("fleet-mongo")
    keys_dir = root / "keys"
    shutil.copytree(key_template, keys_dir)
    publish_next_key(keys_dir)
    client: MongoClient[dict[str, Any]] = mongomock.MongoClient()
    limits = rate_limit_settings(redis)
    settings = Settings(issuer="http://127.0.0.1:5999", env_explicit=True, db_uri="mongodb://localhost/fleet",
                        keys_dir=keys_dir, log_level="WARNING",
                        rate_limits_enabled=limits["IDENTITY_RATE_LIMITS_ENABLED"] == "true",
                        rate_limit_storage_uri=limits.get("IDENTITY_RATE_LIMIT_STORAGE_URI", "memory://"))
    apps = [create_app(settings, login_broker=HttpTestBroker(), mongo_client_factory=lambda: client)
            for _ in range(2)]
    oauth = apps[0].extensions["identity"].oauth
    oauth.audiences.add(API, key=parse_encryption_key(audience_keys[API].public_pem), jwks_uri=None)
    public, _ = oauth.clients.register(name="App", public=True, redirect_uris=["https://app.example.org/callback"],
                                       grant_types=None, scopes=["openid", "records:read"], audiences=[API])
    rs, secret = oauth.clients.register(name="Resource server", public=False, redirect_uris=[], grant_types=None,
                                        scopes=["records:read"], audiences=[API], introspects=[API])
    yield Fleet("mongodb", WsgiInstance("a", apps[0]), WsgiInstance("b", apps[1]), settings.issuer, keys_dir,
                public.client_id, (rs.client_id, secret), audience_keys[API].private_key,
                lambda: publish_next_key(keys_dir), redis is not None)


@pytest.fixture(scope="module", params=["sqlite", "mongodb"])
def fleet(request) -> Fleet:
    return request.getfixturevalue(f"{request.param}_fleet")


def active_and_next(keys_dir: Path) -> tuple[str, str]:
    keys = describe(keys_dir)
    return (next(k["kid"] for k in keys if k["state"] == "active"),
            next(k["kid"] for k in keys if k["state"] == "next"))


def published_kids(instance: Any) -> set[str]:
    answer = instance.request("GET", "/.well-known/jwks.json")
    assert answer.status == 200
    return {key["kid"] for key in answer.body["keys"]}


# -- key rotation under load --------------------------------------------------------------------

def test_a_key_rotation_under_load_fails_no_verification_and_both_instances_follow_it(fleet):
    verifier, fetcher = fleet.verifier()
    verifier.warm_up()
    old_active, coming = active_and_next(fleet.keys_dir)
    rs, secret = fleet.confidential
    stop = threading.Event()
    results: list[tuple[str, str]] = []  # (instance, signing kid) of every token verified
    failures: list[str] = []

    def client(number: int) -> None:
        instances = [fleet.a, fleet.b] if number % 2 == 0 else [fleet.b, fleet.a]
        turn = 0
        while not stop.is_set():
            instance = instances[turn % 2]
            turn += 1
            answer = instance.request("POST", "/token", data={"grant_type": "client_credentials"},
                                      headers=basic(rs, secret))
            if answer.status != 200:
                failures.append(f"{instance.name}: HTTP {answer.status} {answer.body!r}")
                continue
            try:
                results.append((instance.name, verifier.verify(answer.body["access_token"]).signing_kid))
            except VerificationError as exc:
                failures.append(f"{instance.name}: {type(exc).__name__}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_SECONDS / 2)
        fleet.rotate()
        rotated_at = time.monotonic()
        _, newest = active_and_next(fleet.keys_dir)
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - rotated_at < 10:
            for instance in (fleet.a, fleet.b):
                if instance.name not in seen and newest in published_kids(instance):
                    seen[instance.name] = time.monotonic() - rotated_at
            time.sleep(0.05)
        time.sleep(max(0.0, LOAD_SECONDS / 2 - (time.monotonic() - rotated_at)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert failures == []
    assert len(results) >= 40, len(results)
    # both instances serve the new JWKS within the reload interval (plus a request's time here)
    assert set(seen) == {"a", "b"}, seen
    assert max(seen.values()) <= RELOAD_INTERVAL_SECONDS + RELOAD_SLACK_SECONDS, seen
    # the rotation happened during the load: both instances signed with the old key, then the new one
    for name in ("a", "b"):
        kids = [kid for who, kid in results if who == name]
        assert kids[0] == old_active and kids[-1] == coming, (name, kids[:3], kids[-3:])
    # the verifier needed no unknown-kid refetch: the new key was published (as next) before it signed
    assert len(fetcher.calls) == 1


# -- refresh tokens and revocation across instances ----------------------------------------------

def test_a_refresh_token_from_one_instance_is_accepted_once_at_the_other_and_its_reuse_refused_at_either(fleet):
    tokens = log_in([fleet.a, fleet.b, fleet.a], fleet.public_client, f"refresh-{fleet.kind}@example.org")
    first = tokens["refresh_token"]
    renewed = refresh(fleet.b, fleet.public_client, first)
    assert renewed.status == 200, renewed
    for instance in (fleet.a, fleet.b):
        reused = refresh(instance, fleet.public_client, first)
        assert reused.status == 400 and reused.body["error"] == "invalid_grant", reused
    # the reuse revoked the session (RFC 9700 §4.14.2): the token issued by B is refused at A too
    assert refresh(fleet.a, fleet.public_client, renewed.body["refresh_token"]).status == 400


def test_a_revocation_at_one_instance_is_seen_at_the_other(fleet):
    tokens = log_in([fleet.b, fleet.a, fleet.b], fleet.public_client, f"revoke-{fleet.kind}@example.org")
    rs, secret = fleet.confidential

    def active_at(instance: Any) -> bool:
        answer = instance.request("POST", "/introspect", data={"token": tokens["access_token"]},
                                  headers=basic(rs, secret))
        assert answer.status == 200
        return answer.body["active"]

    assert active_at(fleet.a) and active_at(fleet.b)
    revoked = fleet.a.request("POST", "/revoke", data={"token": tokens["refresh_token"],
                                                      "client_id": fleet.public_client})
    assert revoked.status == 200
    assert not active_at(fleet.b) and not active_at(fleet.a)
    assert refresh(fleet.b, fleet.public_client, tokens["refresh_token"]).status == 400


# -- rate limits ------------------------------------------------------------------------------------

def test_rate_limit_counters_are_shared_by_the_instances(fleet):
    if not fleet.rate_limits_shared:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it): "
                    "shared rate-limit counters cannot be tried")
    rs, secret = fleet.confidential
    for attempt in range(FAILURES_ALLOWED):  # failed authentications, half at each instance
        instance = fleet.a if attempt % 2 == 0 else fleet.b
        wrong = instance.request("POST", "/token", data={"grant_type": "client_credentials"},
                                 headers=basic(rs, "wrong-" + str(attempt)))
        assert wrong.status == 401, wrong
    for instance in (fleet.a, fleet.b):  # each saw only half, yet both refuse: the counter is one
        refused = instance.request("POST", "/token", data={"grant_type": "client_credentials"},
                                   headers=basic(rs, secret))
        assert refused.status == 429 and int(refused.headers["retry-after"]) > 0, refused


@pytest.fixture(autouse=True, scope="module")
def _identity_log_level():
    """The fixtures build apps at log level WARNING in this process: give later modules theirs back."""
    import logging

    logger = logging.getLogger("identity")
    level = logger.level
    yield
    logger.setLevel(level)

