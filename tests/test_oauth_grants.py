"""Refresh rotation against revocation and against itself, with the interleavings forced, on both backends;
the refresh-token family on the grant's document; which writes are durable.

A store wrapper runs an injected step at an exact point of a refresh: just after the endpoint has
read the grant (its check), or just before the rotation's write. Whatever lands there, the refresh
either wins outright or issues nothing.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing
from typing import Any, Callable

import pytest

from identity import create_app
from identity.oauth.audiences import parse_encryption_key
from identity.oauth.grants import GrantAlreadyRevoked, RefreshTokenSuperseded
from identity.oauth.records import (
    ACTIVE,
    AUTHORIZATION_CODES,
    GRANTS,
    ISSUED_ACCESS_TOKENS,
    REVOKED_ACCESS_TOKENS,
    REFRESH_TOKENS,
    ROTATED,
    new_secret_value,
    token_hash,
)
from identity.pairwise.mapping import SECTOR_SUBJECTS, SECTORS
from identity.store import Collection, SQLiteStore, StoreUnavailable, find_one
from identity.store.migrate import migrate
from identity.store.sqlite_statements import Statements
from tests.conftest import API, REDIRECT_URI
from tests.lookup_support import present
from tests.test_oauth_token import assert_oauth_error, code_grant, get_code, refresh

# The whole module runs twice: /token through its fast path, then through Flask; answers compared.
pytestmark = pytest.mark.usefixtures("token_path")


class Interleave:
    """A store that runs ``step`` once, the first time ``when(operation, collection, args)`` holds."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._armed: tuple[Callable[..., bool], Callable[[], None]] | None = None

    def arm(self, when: Callable[..., bool], step: Callable[[], None]) -> None:
        self._armed = (when, step)

    def _maybe(self, operation: str, coll: Collection, *args: Any) -> None:
        if self._armed is not None and self._armed[0](operation, coll, *args):
            step, self._armed = self._armed[1], None
            step()

    def get(self, coll: Collection, key: Any):
        found = self._inner.get(coll, key)
        self._maybe("get", coll, key)  # after the read: the caller has seen the old state
        return found

    def find(self, coll: Collection, where: Any, **options: Any):
        found = list(self._inner.find(coll, where, **options))
        self._maybe("find", coll, where)  # after the read, as get
        return iter(found)

    def update(self, coll: Collection, where: Any, changes: Any, **options: Any) -> int:
        self._maybe("update", coll, where, changes)  # before the write
        return self._inner.update(coll, where, changes, **options)

    def insert(self, coll: Collection, doc: Any, **options: Any) -> None:
        self._maybe("insert", coll, doc)  # before the write
        self._inner.insert(coll, doc, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def after_the_grant_check(operation: str, coll: Collection, *args: Any) -> bool:
    return operation in ("get", "find") and coll is GRANTS


def before_the_rotation(operation: str, coll: Collection, *args: Any) -> bool:
    return operation == "update" and coll is GRANTS and "refresh_hash" in args[1]


@pytest.fixture
def interleaved(store):
    return Interleave(store)


def app_on(store, settings, broker, clock, audience_keys):
    """The service on a wrapped ``store``, with the test audiences registered."""
    application = create_app(settings, store=store, login_broker=broker, clock=clock)
    application.config["TESTING"] = True
    broker.app = application
    for keys in audience_keys.values():
        application.extensions["identity"].oauth.audiences.add(
            keys.uri, key=parse_encryption_key(keys.public_pem), jwks_uri=None)
    return application


@pytest.fixture
def app(settings, broker, clock, audience_keys, interleaved):
    return app_on(interleaved, settings, broker, clock, audience_keys)


@pytest.fixture
def oauth(app):
    return app.extensions["identity"].oauth


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def mobile(oauth):
    client, _ = oauth.clients.register(name="Mobile app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["openid", "records:read"], audiences=[API])
    return client


@pytest.fixture
def session(client, mobile):
    code, verifier = get_code(client, mobile)
    return code_grant(client, mobile, code, verifier).json


def family(store, grant_id: str) -> tuple[str | None, int | None]:
    """(the newest refresh token's hash, when the family last rotated) of a grant."""
    doc = store.get(GRANTS, grant_id)
    return doc["refresh_hash"], doc.get("refreshed_at")


def grant_of(store, refresh_token: str) -> str:
    """The grant whose family the refresh token names (identity.oauth.grants: by its family id's hash)."""
    return present(find_one(store, GRANTS, {"refresh_family": token_hash(refresh_token.split(".")[0])}))["grant_id"]


# -- a revocation that lands between the check and the rotation ---------------------------------------------


@pytest.mark.parametrize("point", [after_the_grant_check, before_the_rotation])
@pytest.mark.parametrize("revocation", ["the grant's write only", "the whole revocation"])
def test_a_revocation_between_check_and_rotation_leaves_no_working_token(
        client, oauth, mobile, session, interleaved, store, point, revocation):
    grant_id = grant_of(store, session["refresh_token"])
    before = family(store, grant_id)

    def revoke() -> None:
        if revocation == "the whole revocation":  # RFC 7009, as the client sends it
            oauth.token_status.revoke({"token": session["refresh_token"], "client_id": mobile.client_id}, None)
        else:  # a revocation caught half-way: its first write (the grant) done, its refresh tokens not yet
            store.update(GRANTS, {"grant_id": grant_id}, {"revoked_at": 1, "revoked_reason": "test"})

    interleaved.arm(point, revoke)
    answer = refresh(client, mobile, session["refresh_token"])
    assert_oauth_error(answer, "invalid_grant")
    assert "access_token" not in answer.json
    assert family(store, grant_id) == before  # nothing was issued under the revoked grant
    assert store.get(GRANTS, grant_id)["revoked_reason"] in ("test", "revoked by the client")  # not overwritten


def test_a_revocation_after_the_rotation_ends_what_it_issued(client, oauth, mobile, session, interleaved, store,
                                                            service_client):
    """The rotation won: its tokens are issued, and the revocation that follows ends them too."""
    rs, secret = service_client
    answer = refresh(client, mobile, session["refresh_token"])
    assert answer.status_code == 200
    oauth.token_status.revoke({"token": answer.json["refresh_token"], "client_id": mobile.client_id}, None)
    assert_oauth_error(refresh(client, mobile, answer.json["refresh_token"]), "invalid_grant")
    introspected = client.post("/introspect", data={"token": answer.json["access_token"],
                                                    "client_id": rs.client_id, "client_secret": secret})
    assert introspected.json == {"active": False}


@pytest.fixture
def service_client(oauth):
    return oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                  scopes=["records:read"], audiences=[API])


# -- two uses of one refresh token: exactly one wins ---------------------------------------------------------


def test_two_uses_interleaved_at_the_rotation_let_exactly_one_win(client, oauth, mobile, session, interleaved, store):
    """The second use runs whole while the first waits at its rotation write; the first then loses."""
    form = {"grant_type": "refresh_token", "refresh_token": session["refresh_token"], "client_id": mobile.client_id}
    inner: dict[str, Any] = {}

    def second_use() -> None:
        inner["body"] = oauth.token_endpoint.handle(form, None)

    interleaved.arm(before_the_rotation, second_use)
    first = refresh(client, mobile, session["refresh_token"])
    assert "access_token" in inner["body"]  # the second use won the rotation
    assert_oauth_error(first, "invalid_grant")  # the first lost it, and revoked the family (RFC 9700 §4.14.2)
    assert store.get(GRANTS, grant_of(store, session["refresh_token"]))["revoked_reason"] == \
        "refresh token used concurrently"
    assert_oauth_error(refresh(client, mobile, inner["body"]["refresh_token"]), "invalid_grant")


# -- two exchanges of one code: exactly one creates the grant, and the other revokes it --------------------


def test_two_exchanges_of_one_code_interleaved_let_one_issue_and_revoke_what_it_issued(
        client, oauth, mobile, interleaved, store, service_client):
    """The second exchange runs whole while the first waits at its grant's creation: the second wins, the first
    finds the grant there (a code used twice, RFC 6749 §4.1.2) and revokes it with what it issued."""
    code, verifier = get_code(client, mobile)
    form = {"grant_type": "authorization_code", "code": code, "client_id": mobile.client_id,
            "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    inner: dict[str, Any] = {}

    def second_exchange() -> None:
        inner["body"] = oauth.token_endpoint.handle(form, None)

    interleaved.arm(lambda operation, coll, *args: operation == "insert" and coll is GRANTS, second_exchange)
    first = code_grant(client, mobile, code, verifier)
    assert "access_token" in inner["body"]
    assert_oauth_error(first, "invalid_grant")
    assert store.get(GRANTS, grant_of(store, inner["body"]["refresh_token"]))["revoked_reason"] == \
        "authorization code replayed"
    assert_oauth_error(refresh(client, mobile, inner["body"]["refresh_token"]), "invalid_grant")
    rs, secret = service_client
    assert client.post("/introspect", data={"token": inner["body"]["access_token"], "client_id": rs.client_id,
                                            "client_secret": secret}).json == {"active": False}


# -- a store failure never leaves the client without the tokens it spent its code or refresh token on ---------


class Steps:
    """A store that lists each operation of the service as (operation, collection) and, when ``fail_at``
    is set, raises ``StoreUnavailable`` instead of running the one at that index (a failed write is not
    applied: the failure the client may retry)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seen: list[tuple[str, str]] = []
        self.fail_at: int | None = None

    def _step(self, operation: str, coll: Collection) -> None:
        self.seen.append((operation, coll.name))
        if len(self.seen) - 1 == self.fail_at:
            raise StoreUnavailable(f"{operation} on {coll.name} failed (injected)")

    def get(self, coll: Collection, key: Any):
        self._step("get", coll)
        return self._inner.get(coll, key)

    def find(self, coll: Collection, where: Any, **options: Any):
        self._step("find", coll)
        return iter(list(self._inner.find(coll, where, **options)))

    def count(self, coll: Collection, where: Any) -> int:
        self._step("count", coll)
        return self._inner.count(coll, where)

    def insert(self, coll: Collection, doc: Any, **options: Any) -> None:
        self._step("insert", coll)
        self._inner.insert(coll, doc, **options)

    def update(self, coll: Collection, where: Any, changes: Any, **options: Any) -> int:
        self._step("update", coll)
        return self._inner.update(coll, where, changes, **options)

    def delete(self, coll: Collection, where: Any) -> int:
        self._step("delete", coll)
        return self._inner.delete(coll, where)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


SPENDING_WRITE = {"authorization_code": ("insert", GRANTS.name),  # the grant's creation spends the code
                  "refresh_token": ("update", GRANTS.name)}  # the rotation spends the refresh token


@pytest.fixture
def steps(store):
    return Steps(store)


@pytest.fixture
def fresh_worker(steps, settings, broker, clock):
    """Another worker of the service on the same store, started now: nothing cached (clients, audiences,
    pairwise subjects), so a request there takes every store step it can."""
    return lambda: create_app(settings, store=steps, login_broker=broker, clock=clock)


@pytest.fixture
def on_steps(steps, settings, broker, clock, audience_keys):
    return app_on(steps, settings, broker, clock, audience_keys)


def pending_request(http, app_client, grant_type: str) -> Callable[[Any], Any]:
    """A token request of ``grant_type`` ready to send (from any worker's test client), for a new person."""
    code, verifier = get_code(http, app_client)
    if grant_type == "authorization_code":
        return lambda worker: code_grant(worker, app_client, code, verifier)
    refresh_token = code_grant(http, app_client, code, verifier).json["refresh_token"]
    return lambda worker: refresh(worker, app_client, refresh_token)


@pytest.mark.parametrize("grant_type", sorted(SPENDING_WRITE))
def test_the_write_that_spends_the_code_or_refresh_token_is_the_last_store_step(
        on_steps, steps, fresh_worker, broker, grant_type):
    """Nothing after it can fail with ``StoreUnavailable`` (a 503 whose retry would be a replay or a reuse)."""
    http, oauth = on_steps.test_client(), on_steps.extensions["identity"].oauth
    mobile, _ = oauth.clients.register(name="Mobile", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=["openid", "records:read"], audiences=[API])
    for person in ("first@example.org", "second@example.org"):  # a first subject in the sectors, then another
        broker.email = person
        send = pending_request(http, mobile, grant_type)
        worker = fresh_worker().test_client()
        steps.seen.clear()
        assert send(worker).status_code == 200
        assert SPENDING_WRITE[grant_type] in steps.seen
        assert steps.seen[steps.seen.index(SPENDING_WRITE[grant_type]) + 1:] == [], steps.seen


@pytest.mark.parametrize("grant_type", sorted(SPENDING_WRITE))
def test_a_store_failure_at_any_step_answers_503_and_the_retry_gets_the_tokens(
        on_steps, steps, fresh_worker, broker, grant_type):
    """Each store step of the request fails in turn (in a worker with nothing cached, for a new person):
    the client gets a 503, and its retry of the same request gets the tokens, revoking nothing."""
    http, oauth = on_steps.test_client(), on_steps.extensions["identity"].oauth
    mobile, _ = oauth.clients.register(name="Mobile", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=["openid", "records:read"], audiences=[API])
    failed: list[tuple[str, str]] = []
    while True:
        broker.email = f"person{len(failed)}@example.org"
        send = pending_request(http, mobile, grant_type)
        worker = fresh_worker().test_client()
        steps.seen.clear()
        steps.fail_at = len(failed)
        first = send(worker)
        steps.fail_at = None
        if len(steps.seen) <= len(failed):  # every step has failed once
            assert first.status_code == 200
            break
        failed.append(steps.seen[len(failed)])
        assert first.status_code == 503, (failed[-1], first.json)
        retry = send(worker)
        assert retry.status_code == 200, (failed[-1], retry.json)
    assert SPENDING_WRITE[grant_type] in failed and (SECTOR_SUBJECTS.name in {name for _, name in failed})


def test_a_code_marked_used_by_an_earlier_release_is_a_replay(client, mobile, store):
    code, verifier = get_code(client, mobile)
    store.update(AUTHORIZATION_CODES, {"code_hash": token_hash(code)}, {"used": True})
    assert_oauth_error(code_grant(client, mobile, code, verifier), "invalid_grant")
    grant_id = store.get(AUTHORIZATION_CODES, token_hash(code))["grant_id"]
    assert store.get(GRANTS, grant_id)["revoked_reason"] == "authorization code replayed"  # a placeholder, revoked


def test_rotation_records_the_newest_token_on_the_grant(client, oauth, mobile, session, store):
    grant_id = grant_of(store, session["refresh_token"])
    assert store.get(GRANTS, grant_id)["refresh_hash"] == token_hash(session["refresh_token"])
    rotated = refresh(client, mobile, session["refresh_token"]).json["refresh_token"]
    assert grant_of(store, rotated) == grant_id
    assert store.get(GRANTS, grant_id)["refresh_hash"] == token_hash(rotated)
    assert oauth.grants.find_refresh_token(session["refresh_token"]).status == ROTATED
    assert oauth.grants.find_refresh_token(rotated).status == ACTIVE
    assert store.count(REFRESH_TOKENS, {}) == 0  # the family lives on the grant: no record per refresh token


def test_any_other_token_naming_a_family_is_a_reuse_and_revokes_it(client, oauth, mobile, session, store):
    """Only tokens of a family carry its grant's id: one that is not the newest was issued earlier, or made
    from one that was. Either way the family is revoked (RFC 9700 §4.14.2)."""
    grant_id = grant_of(store, session["refresh_token"])
    forged = f"{session['refresh_token'].split('.')[0]}.{new_secret_value()}"
    assert_oauth_error(refresh(client, mobile, forged), "invalid_grant")
    assert store.get(GRANTS, grant_id)["revoked_reason"] == "refresh token reused"
    assert_oauth_error(refresh(client, mobile, session["refresh_token"]), "invalid_grant")
    first = store.get(GRANTS, grant_id)
    oauth.grants.revoke(grant_id, reason="revoked by the client")  # e.g. the app's /revoke afterwards
    assert store.get(GRANTS, grant_id) == first  # the first revocation's time and reason stay on record


@pytest.mark.parametrize("value", ["unknown-grant.x", ".", "a.b.c", "no-separator", "x" * 200])
def test_a_token_naming_no_known_family_is_invalid_and_revokes_nothing(client, mobile, session, store, value):
    grant_id = grant_of(store, session["refresh_token"])
    assert_oauth_error(refresh(client, mobile, value), "invalid_grant")
    assert store.get(GRANTS, grant_id)["revoked_at"] is None
    assert refresh(client, mobile, session["refresh_token"]).status_code == 200


def test_a_client_without_refresh_gets_no_family_and_cannot_fake_one(client, oauth, store):
    """A grant without a refresh token has no family; its id names none either, and revokes nothing."""
    app, _ = oauth.clients.register(name="No refresh", public=True, redirect_uris=[REDIRECT_URI],
                                    grant_types=["authorization_code"], scopes=["openid", "records:read"],
                                    audiences=[API])
    code, verifier = get_code(client, app)
    tokens = code_grant(client, app, code, verifier).json
    assert "refresh_token" not in tokens
    grant_id = oauth.grants.find_access_token(tokens["access_token"])["grant_id"]
    assert store.get(GRANTS, grant_id)["refresh_hash"] is None
    assert oauth.grants.find_refresh_token(f"{grant_id}.{new_secret_value()}") is None
    assert store.get(GRANTS, grant_id)["revoked_at"] is None


def test_the_store_holds_no_family_id_a_copy_could_use(client, mobile, session, store):
    """Only hashes of a family's id and of its newest token are stored: a copy of the store cannot name the
    family (to revoke it by presenting a made-up token) nor present any of its tokens."""
    rotated = refresh(client, mobile, session["refresh_token"]).json["refresh_token"]
    family = rotated.split(".")[0]
    assert family == session["refresh_token"].split(".")[0]  # one family id for every token of the grant
    secrets_seen = {family, rotated, session["refresh_token"], rotated.split(".")[1]}
    for coll in (GRANTS, ISSUED_ACCESS_TOKENS, REFRESH_TOKENS, AUTHORIZATION_CODES):
        for doc in store.find(coll, {}):
            values = " ".join(str(v) for v in doc.values())
            assert not any(secret in values for secret in secrets_seen), coll.name


# -- a person's codes are found through an index -------------------------------------------------------------


def test_a_persons_codes_are_read_and_ended_through_an_index(store):
    """Erasure, closure and "remove access" read and delete a person's authorization codes by subject
    (``Grants._end_codes``): through an index on both backends, not a scan of the day's codes (on SQLite, a
    scan inside the writers' turn); a table made by an earlier release gets it from ``migrate``."""
    earlier = dataclasses.replace(AUTHORIZATION_CODES, indexed=("expires_at",))
    assert not any(name.endswith("_subject") for name in store.prepare(earlier)["indexes"])
    report = migrate(store, [AUTHORIZATION_CODES])
    created = report["collections"][0]["created"]
    assert len(created) == 1 and created[0].endswith("_subject"), report
    if isinstance(store, SQLiteStore):
        statements, where = Statements(), {"subject": "a" * 26}
        with closing(sqlite3.connect(store.path)) as db:
            for sql, params in (statements.select(AUTHORIZATION_CODES, where),
                                statements.delete_batch(AUTHORIZATION_CODES, where, 2000),
                                statements.delete_batch(AUTHORIZATION_CODES, {**where, "client_id": "c"}, 2000)):
                plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
                assert not any(step.startswith("SCAN") for step in plan), (sql, plan)


# -- refresh tokens from before the family format -----------------------------------------------------------


def legacy_family(store, oauth, mobile, subject: str, *, recorded: bool = True) -> tuple[str, str]:
    """A grant and refresh token as an earlier release wrote them: the token opaque (no grant id in it) with
    its own record in ``refresh_tokens``; ``recorded``: the grant knows its newest token's hash."""
    grant_id, value, now = new_secret_value(), new_secret_value(), 1_800_000_000
    store.insert(GRANTS, {"grant_id": grant_id, "client_id": mobile.client_id, "subject": subject, "audience": API,
                          "scope": "openid records:read", "created_at": now, "expires_at": now + 86400,
                          **({"refresh_hash": token_hash(value)} if recorded else {})})
    store.insert(REFRESH_TOKENS, {"token_hash": token_hash(value), "grant_id": grant_id, "client_id": mobile.client_id,
                                  "subject": subject, "audience": API, "scope": "openid records:read",
                                  "status": ACTIVE, "created_at": now, "expires_at": now + 86400,
                                  "idle_expires_at": now + 3600})
    return grant_id, value


@pytest.mark.parametrize("recorded", [True, False], ids=["grant records its newest", "grant from before that"])
def test_a_refresh_token_from_before_the_family_format_rotates_once_into_it(client, oauth, mobile, session, store,
                                                                          recorded):
    subject = oauth.grants.get(grant_of(store, session["refresh_token"])).subject
    grant_id, legacy = legacy_family(store, oauth, mobile, subject, recorded=recorded)
    first = refresh(client, mobile, legacy)
    assert first.status_code == 200, first.json
    assert grant_of(store, first.json["refresh_token"]) == grant_id  # now in the family format
    assert oauth.grants.find_refresh_token(legacy).status == ROTATED
    assert_oauth_error(refresh(client, mobile, legacy), "invalid_grant")  # reused: the family is revoked
    assert store.get(GRANTS, grant_id)["revoked_reason"] == "refresh token reused"
    assert_oauth_error(refresh(client, mobile, first.json["refresh_token"]), "invalid_grant")


def test_a_grant_from_before_rotation_was_recorded_rotates_once(oauth, mobile, session, store):
    """Grants written by an earlier release have no refresh_hash: their one active token still works, once."""
    subject = oauth.grants.get(grant_of(store, session["refresh_token"])).subject
    grant_id, legacy = legacy_family(store, oauth, mobile, subject, recorded=False)
    presented = oauth.grants.find_refresh_token(legacy)
    grant = oauth.grants.get(grant_id)
    assert grant.refresh_hash is None and presented.status == ACTIVE
    oauth.grants.rotate_refresh_token(presented, grant)
    with pytest.raises(RefreshTokenSuperseded):
        oauth.grants.rotate_refresh_token(presented, grant)  # the same stale view again: the write finds no match
    oauth.grants.revoke(grant_id, reason="test")
    with pytest.raises(GrantAlreadyRevoked):
        oauth.grants.rotate_refresh_token(presented, oauth.grants.get(grant_id))


# -- which writes wait for the disk (identity.store.base: durability) ----------------------------------------


class WriteLog:
    """A store that records every write: (operation, collection, effective durability)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes: list[tuple[str, str, bool]] = []

    def insert(self, coll: Collection, doc: Any, *, durable: bool | None = None) -> None:
        self.writes.append(("insert", coll.name, coll.durable if durable is None else durable))
        self._inner.insert(coll, doc, durable=durable)

    def update(self, coll: Collection, where: Any, changes: Any, *, durable: bool | None = None) -> int:
        self.writes.append(("update", coll.name, coll.durable if durable is None else durable))
        return self._inner.update(coll, where, changes, durable=durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def logged(store):
    return WriteLog(store)


@pytest.fixture
def logged_app(settings, broker, clock, audience_keys, logged):
    return app_on(logged, settings, broker, clock, audience_keys)


def test_issuing_tokens_never_waits_for_the_disk_and_revoking_always_does(logged_app, logged):
    """The token endpoint's writes are non-durable (a lost tail fails closed, identity.oauth.grants); every
    revocation is durable. A code exchange: the grant (which spends the code); a refresh: one conditional
    write on the grant; client_credentials: nothing (the token carries its sealed reference)."""
    http, oauth = logged_app.test_client(), logged_app.extensions["identity"].oauth
    mobile, _ = oauth.clients.register(name="Mobile", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=["openid", "records:read"], audiences=[API])
    rs, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                        scopes=["records:read"], audiences=[API])
    code, verifier = get_code(http, mobile)

    def writes_of(action: Callable[[], Any]) -> list[tuple[str, str, bool]]:
        """The token path's writes; a person's first subject in a sector is recorded once, durably, before it
        leaves the service (the breach path's way back, identity.pairwise), and is not a per-token write."""
        logged.writes.clear()
        action()
        return [w for w in logged.writes if w[1] not in (SECTORS.name, SECTOR_SUBJECTS.name) or not w[2]]

    tokens: dict[str, Any] = {}
    assert writes_of(lambda: tokens.update(code_grant(http, mobile, code, verifier).json)) == [
        ("insert", GRANTS.name, False)]  # the grant spends the code
    assert writes_of(lambda: tokens.update(refresh(http, mobile, tokens["refresh_token"]).json)) == [
        ("update", GRANTS.name, False)]
    form = {"grant_type": "client_credentials", "client_id": rs.client_id, "client_secret": secret}
    machine: dict[str, Any] = {}
    assert writes_of(lambda: machine.update(http.post("/token", data=form).json)) == []
    revoke = {"client_id": rs.client_id, "client_secret": secret, "token": machine["access_token"]}
    assert writes_of(lambda: http.post("/revoke", data=revoke)) == [("insert", REVOKED_ACCESS_TOKENS.name, True)]
    assert writes_of(lambda: http.post("/revoke", data={"client_id": mobile.client_id,
                                                       "token": tokens["refresh_token"]})) == [
        ("update", GRANTS.name, True)]
