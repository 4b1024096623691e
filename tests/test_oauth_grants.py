"""Refresh rotation against revocation and against itself, with the interleavings forced, on both backends.

A store wrapper runs an injected step at an exact point of a refresh: just after the endpoint has
read the grant (its check), or just before the rotation's write. Whatever lands there, the refresh
either wins outright or issues nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from identity import create_app
from identity.oauth.audiences import parse_encryption_key
from identity.oauth.grants import GrantAlreadyRevoked, RefreshTokenSuperseded
from identity.oauth.records import GRANTS, ISSUED_ACCESS_TOKENS, REFRESH_TOKENS, ROTATED, token_hash
from identity.store import Collection
from tests.conftest import API, REDIRECT_URI
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

    def update(self, coll: Collection, where: Any, changes: Any) -> int:
        self._maybe("update", coll, where, changes)  # before the write
        return self._inner.update(coll, where, changes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def after_the_grant_check(operation: str, coll: Collection, *args: Any) -> bool:
    return operation == "get" and coll is GRANTS


def before_the_rotation(operation: str, coll: Collection, *args: Any) -> bool:
    return operation == "update" and coll is GRANTS and "refresh_hash" in args[1]


@pytest.fixture
def interleaved(store):
    return Interleave(store)


@pytest.fixture
def app(settings, broker, clock, audience_keys, interleaved):
    application = create_app(settings, store=interleaved, login_broker=broker, clock=clock)
    application.config["TESTING"] = True
    broker.app = application
    for keys in audience_keys.values():
        application.extensions["identity"].oauth.audiences.add(
            keys.uri, key=parse_encryption_key(keys.public_pem), jwks_uri=None)
    return application


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


def family(store, grant_id: str) -> tuple[int, int]:
    """(refresh tokens, access-token records) of a grant."""
    return (store.count(REFRESH_TOKENS, {"grant_id": grant_id}),
            store.count(ISSUED_ACCESS_TOKENS, {"grant_id": grant_id}))


def grant_of(store, refresh_token: str) -> str:
    return store.get(REFRESH_TOKENS, token_hash(refresh_token))["grant_id"]


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


def test_rotation_records_the_newest_token_on_the_grant(client, mobile, session, store):
    grant_id = grant_of(store, session["refresh_token"])
    assert store.get(GRANTS, grant_id)["refresh_hash"] == token_hash(session["refresh_token"])
    rotated = refresh(client, mobile, session["refresh_token"]).json["refresh_token"]
    assert store.get(GRANTS, grant_id)["refresh_hash"] == token_hash(rotated)
    assert store.get(REFRESH_TOKENS, token_hash(session["refresh_token"]))["status"] == ROTATED


def test_a_grant_from_before_rotation_was_recorded_rotates_once(client, oauth, mobile, session, store):
    """Grants written by an earlier release have no refresh_hash: their one active token still works, once."""
    grant_id = grant_of(store, session["refresh_token"])
    store.update(GRANTS, {"grant_id": grant_id}, {"refresh_hash": None})
    doc = oauth.grants.find_refresh_token(session["refresh_token"])
    grant = oauth.grants.get(grant_id)
    assert grant.refresh_hash is None
    oauth.grants.rotate_refresh_token(doc, grant)
    with pytest.raises(RefreshTokenSuperseded):
        oauth.grants.rotate_refresh_token(doc, grant)  # the same stale view again: the write finds no match
    oauth.grants.revoke(grant_id, reason="test")
    with pytest.raises(GrantAlreadyRevoked):
        oauth.grants.rotate_refresh_token(doc, oauth.grants.get(grant_id))
