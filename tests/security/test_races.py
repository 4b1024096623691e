"""Races against a real server: scripts/serve.py (the production command), several workers, the SQLite
store, logins over HTTP.

* 1,000 concurrent first logins over 100 e-mail addresses → exactly 100 pseudonyms, and every login
  of one address got the same one;
* 200 concurrent uses of one refresh token → exactly one succeeds;
* a worker killed with SIGKILL during load → no identity lost, duplicated or half-written, and the
  service keeps answering (the server replaces the worker).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import API

from .live import (
    Serve,
    Login,
    LoginClient,
    LoginFailed,
    assert_identities_whole,
    deploy,
    fire_at_once,
    form_post,
    identity_rows,
    integrity,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_dir():
    """The store on tmpfs when there is one: the races are about locking and uniqueness, not fsync speed."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="identity-race-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(tmp_path, fast_dir, key_template, audience_keys):
    deployment = deploy(tmp_path, key_template, db_dir=fast_dir, audience_key=audience_keys[API].public_pem)
    with Serve(deployment, workers=4, threads=2) as running:
        yield running


def run_all(function, items, threads: int) -> list[BaseException | None]:
    def guarded(item):
        try:
            function(item)
            return None
        except (LoginFailed, requests.RequestException) as exc:
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(guarded, items))


def test_1000_concurrent_first_logins_over_100_addresses_make_exactly_100_pseudonyms(server):
    client = LoginClient(server.url, server.deployment.client_id)
    # the ten logins of each address side by side, so that they reach the vault at the same moment
    logins = [Login(f"person{n:03d}@example.org") for n in range(100) for _ in range(10)]
    assert run_all(client.authorize, logins, 32) == [None] * 1000   # 1,000 parked requests, no identity yet
    assert identity_rows(server.deployment.db_path) == []
    assert run_all(client.complete, logins, 64) == [None] * 1000    # the first logins, all at once
    assert run_all(client.exchange, logins, 32) == [None] * 1000

    by_address: dict[str, set[str]] = {}
    for login in logins:
        by_address.setdefault(login.email, set()).add(login.pseudonym)
    assert all(len(pseudonyms) == 1 for pseudonyms in by_address.values())
    issued = {next(iter(p)) for p in by_address.values()}
    rows = identity_rows(server.deployment.db_path)
    assert len(issued) == 100 and len(rows) == 100
    assert {row["pseudonym"] for row in rows} == issued
    assert_identities_whole(rows)
    assert integrity(server.deployment.db_path) == "ok"


def test_200_concurrent_uses_of_one_refresh_token_let_exactly_one_succeed(server):
    """Each round: 200 connections opened, then 200 refreshes with one token sent within about a millisecond."""
    client = LoginClient(server.url, server.deployment.client_id)
    for round_number in range(8):  # several rounds: a broken compare-and-set shows in most of them
        refresh_token = client.log_in(f"refresher{round_number}@example.org").tokens["refresh_token"]
        request = form_post("/token", {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                       "client_id": server.deployment.client_id})
        statuses = fire_at_once(server.deployment.port, [request] * 200)
        assert statuses.count(200) == 1 and statuses.count(400) == 199, (round_number, sorted(set(statuses)))


def test_a_worker_killed_during_load_loses_duplicates_and_corrupts_nothing(tmp_path, fast_dir, key_template,
                                                                          audience_keys):
    deployment = deploy(tmp_path, key_template, db_dir=fast_dir, audience_key=audience_keys[API].public_pem)
    with Serve(deployment, workers=3, threads=2) as server:
        client = LoginClient(server.url, deployment.client_id)
        logins = [Login(f"load{n:02d}@example.org") for _ in range(10) for n in range(30)]
        done = [0]
        killed: list[int] = []

        def one(login: Login) -> None:
            try:
                client.authorize(login)
                client.complete(login)
                client.exchange(login)
            finally:
                done[0] += 1

        def killer() -> None:
            for threshold in (60, 160):
                deadline = time.monotonic() + 60
                while done[0] < threshold and time.monotonic() < deadline:
                    time.sleep(0.01)
                while not server.worker_pids() and time.monotonic() < deadline:
                    time.sleep(0.01)  # a replacement worker is still being forked
                # the oldest worker: two different slots (granian stops altogether when one slot dies
                # twice within seconds, a crash loop; README "Production")
                victim = min(server.worker_pids())
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        chaos = threading.Thread(target=killer)
        chaos.start()
        failures = run_all(one, logins, 24)
        chaos.join(timeout=90)
        assert len(killed) == 2
        server.wait_for_workers()
        assert not set(killed) & set(server.worker_pids())  # replaced by new workers

        # the service keeps answering; logins that died with the worker succeed when tried again
        assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
        retried = [login for login, failure in zip(logins, failures) if failure is not None]
        for login in retried:
            login.tokens, login.code = {}, ""
            one(login)

        by_address: dict[str, set[str]] = {}
        for login in logins:
            by_address.setdefault(login.email, set()).add(login.pseudonym)
        assert all(len(p) == 1 for p in by_address.values()), by_address
        rows = identity_rows(deployment.db_path)
        assert len(rows) == 30 and {r["pseudonym"] for r in rows} == {next(iter(p)) for p in by_address.values()}
        assert_identities_whole(rows)
        assert integrity(deployment.db_path) == "ok"
        # and nobody lost their identity: logging in again gives the same pseudonym
        again = LoginClient(server.url, deployment.client_id)
        for email, pseudonyms in sorted(by_address.items())[:10]:
            assert again.log_in(email).pseudonym == next(iter(pseudonyms))
