"""Races against a real server: scripts/serve.py (the production command), several workers, the SQLite
store, logins over HTTP.

* 1,000 concurrent first logins over 100 e-mail addresses → exactly 100 pseudonyms, and every login
  of one address got the same one;
* 200 concurrent uses of one refresh token → exactly one succeeds, and the family is revoked;
* a worker killed with SIGKILL during load → no identity lost, duplicated or half-written, and the
  service keeps answering (the server replaces the worker);
* every worker killed with SIGKILL right after issuing, rotating and revoking tokens (their writes wait
  for no disk flush), then the whole server: after a restart, introspection and revocation answer
  exactly as before the crash.
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
from tests.lookup_support import present

from .live import (
    Serve,
    Login,
    LoginClient,
    LoginFailed,
    assert_identities_whole,
    deploy,
    fire_at_once,
    form_post,
    grant_row,
    identity_rows,
    integrity,
    register_confidential,
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
        by_address.setdefault(login.email, set()).add(present(login.pseudonym))
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
        # the one winner rotated the family once, and the losers revoked it
        grant = grant_row(server.deployment.db_path, refresh_token)
        assert grant["revoked_reason"] in ("refresh token reused", "refresh token used concurrently"), grant
        assert grant["refreshed_at"] is not None


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
            by_address.setdefault(login.email, set()).add(present(login.pseudonym))
        assert all(len(p) == 1 for p in by_address.values()), by_address
        rows = identity_rows(deployment.db_path)
        assert len(rows) == 30 and {r["pseudonym"] for r in rows} == {next(iter(p)) for p in by_address.values()}
        assert_identities_whole(rows)
        assert integrity(deployment.db_path) == "ok"
        # and nobody lost their identity: logging in again gives the same pseudonym
        again = LoginClient(server.url, deployment.client_id)
        for email, pseudonyms in sorted(by_address.items())[:10]:
            assert again.log_in(email).pseudonym == next(iter(pseudonyms))


def test_introspection_and_revocation_are_right_after_every_worker_is_killed_and_the_server_restarted(
        tmp_path, key_template, audience_keys):
    """Issued tokens, a rotation and revocations answered, then SIGKILL: none of those writes waited for a
    disk flush (identity.oauth.grants), yet each was in the store before its answer left, so the restarted
    service introspects, refreshes and revokes exactly as the killed one would have."""
    deployment = deploy(tmp_path, key_template, audience_key=audience_keys[API].public_pem)  # on disk
    rs_id, rs_secret = register_confidential(deployment)
    rs_auth = (rs_id, rs_secret)
    with Serve(deployment, workers=2, threads=1) as server:
        client = LoginClient(server.url, deployment.client_id)
        people = {name: client.log_in(f"{name}@example.org").tokens for name in ("kept", "rotated", "revoked")}
        old_refresh = people["rotated"]["refresh_token"]
        rotated = client.refresh(old_refresh)
        assert rotated.status_code == 200
        people["rotated"] = rotated.json()
        machine = [requests.post(f"{server.url}/token", data={"grant_type": "client_credentials"}, auth=rs_auth,
                                 timeout=30).json()["access_token"] for _ in range(2)]
        assert requests.post(f"{server.url}/revoke", data={"token": machine[1]}, auth=rs_auth,
                             timeout=30).status_code == 200
        assert requests.post(f"{server.url}/revoke", timeout=30, data={
            "token": people["revoked"]["refresh_token"], "client_id": deployment.client_id}).status_code == 200
        for pid in server.worker_pids():  # right after the last answer: nothing had time to be flushed
            os.kill(pid, signal.SIGKILL)
        server.crash()

    with Serve(deployment, workers=2, threads=1) as server:
        def active(token: str) -> bool:
            answer = requests.post(f"{server.url}/introspect", data={"token": token}, auth=rs_auth, timeout=30)
            assert answer.status_code == 200
            return answer.json()["active"]

        assert [active(machine[0]), active(machine[1])] == [True, False]
        assert [active(people[name]["access_token"]) for name in ("kept", "rotated", "revoked")] == [True, True, False]
        client = LoginClient(server.url, deployment.client_id)
        assert client.refresh(people["revoked"]["refresh_token"]).status_code == 400
        assert client.refresh(people["kept"]["refresh_token"]).status_code == 200
        assert client.refresh(old_refresh).status_code == 400  # rotated before the crash: a reuse...
        assert client.refresh(people["rotated"]["refresh_token"]).status_code == 400  # ...that ends the family
        assert not active(people["rotated"]["access_token"])
        # and revocation still works on what was issued before the crash
        assert requests.post(f"{server.url}/revoke", data={"token": machine[0]}, auth=rs_auth,
                             timeout=30).status_code == 200
        assert not active(machine[0])
    assert integrity(deployment.db_path) == "ok"
