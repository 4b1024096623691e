"""The ``sub`` each receiver sees (``Subjects.subject_for``), checked on real tokens: access tokens
decrypted with the audience's key, ID tokens, introspection, erasure, restart and key rotation."""

from __future__ import annotations

import dataclasses

import pytest

from identity import create_app
from identity.keys import rotate_signing_keys
from identity.oauth.audiences import parse_encryption_key
from identity.oauth.clients import CLIENTS, ClientRegistrationError
from identity.oauth.audiences import AUDIENCES
from identity.pairwise import PAIRWISE, PUBLIC, SECTOR_SUBJECTS
from identity.store import StoreUnavailable
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import b64json, open_access_token, pkce_pair, query_of
from tests.test_oauth_flow import authorize, basic, exchange

DIARY, CHAT, NOTES = "https://diary.example.org", "https://chat.example.org", "https://notes.example.org"
HEALTH = "health.example"


@pytest.fixture
def apis(oauth, audience_keys):
    """Three more audiences with API's key pair: diary and notes share the sector "health.example"."""
    key = parse_encryption_key(audience_keys[API].public_pem)
    oauth.audiences.add(DIARY, key=key, jwks_uri=None, sector=HEALTH)
    oauth.audiences.add(NOTES, key=key, jwks_uri=None, sector=HEALTH)
    oauth.audiences.add(CHAT, key=key, jwks_uri=None)  # its own sector: its URI
    return oauth.audiences


@pytest.fixture
def app_client(oauth, apis):
    client, _ = oauth.clients.register(name="Health app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=["openid", "records:write"], audiences=[API, DIARY, NOTES, CHAT])
    return client


@pytest.fixture
def svc(oauth_app):
    """The services of the app the OAuth fixtures talk to."""
    return oauth_app.extensions["identity"]


@pytest.fixture
def jwks(oauth_client):
    return oauth_client.get("/.well-known/jwks.json").json


def tokens_for(oauth_client, client, resource: str, **extra) -> dict:
    verifier, challenge = pkce_pair()
    response = authorize(oauth_client, client, challenge, resource=resource, **extra)
    assert response.status_code == 303, response.get_data(as_text=True)
    body = exchange(oauth_client, client, query_of(response.headers["Location"])["code"], verifier).json
    assert "access_token" in body, body
    return body


def sub_of(body: dict, audience_keys, jwks) -> str:
    """The ``sub`` of a real access token, decrypted with the audience's private key."""
    return open_access_token(body["access_token"], audience_keys[API], jwks)[2]["sub"]


def pseudonym(svc, broker) -> str:
    return svc.vault.pseudonymise(broker.email).identity.pseudonym


def test_two_audiences_in_two_sectors_get_different_subs_for_one_person(
        oauth_client, app_client, audience_keys, jwks, svc, broker):
    diary = sub_of(tokens_for(oauth_client, app_client, DIARY), audience_keys, jwks)
    chat = sub_of(tokens_for(oauth_client, app_client, CHAT), audience_keys, jwks)
    assert diary != chat
    person = pseudonym(svc, broker)
    assert person not in (diary, chat)
    assert svc.oauth.subjects.resolve(HEALTH, diary) == person
    assert svc.oauth.subjects.resolve(CHAT, chat) == person


def test_two_audiences_in_one_sector_get_the_same_sub(oauth_client, app_client, audience_keys, jwks):
    diary = sub_of(tokens_for(oauth_client, app_client, DIARY), audience_keys, jwks)
    notes = sub_of(tokens_for(oauth_client, app_client, NOTES), audience_keys, jwks)
    assert diary == notes


def test_subjects_are_stable_across_a_restart_and_signing_key_rotation(
        oauth_client, app_client, audience_keys, jwks, settings, broker, clock, keys_dir, svc):
    before = sub_of(tokens_for(oauth_client, app_client, DIARY), audience_keys, jwks)
    pairwise_key = (keys_dir / "pairwise_subject.key").read_bytes()
    svc.store.close()
    rotate_signing_keys(keys_dir, passphrase=None, longest_token_ttl=600, now=clock())
    assert (keys_dir / "pairwise_subject.key").read_bytes() == pairwise_key  # never rotated
    restarted = create_app(settings, login_broker=broker, clock=clock)
    broker.app = restarted
    try:
        client = restarted.test_client()
        new_jwks = client.get("/.well-known/jwks.json").json
        assert new_jwks != jwks  # another signing key is active now
        assert sub_of(tokens_for(client, app_client, DIARY), audience_keys, new_jwks) == before
    finally:
        restarted.extensions["identity"].store.close()


def test_the_id_token_sub_follows_the_clients_sector(oauth_client, oauth, apis, audience_keys, jwks, svc, broker):
    in_health, _ = oauth.clients.register(name="Health web", public=True, redirect_uris=[REDIRECT_URI],
                                          grant_types=None, scopes=["openid", "records:write"], audiences=[DIARY],
                                          sector_identifier=HEALTH)
    on_its_host, _ = oauth.clients.register(name="Other app", public=True, redirect_uris=[REDIRECT_URI],
                                            grant_types=None, scopes=["openid", "records:write"], audiences=[DIARY])
    public, _ = oauth.clients.register(name="Old-style app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["openid", "records:write"], audiences=[DIARY],
                                       subject_type=PUBLIC)
    body = tokens_for(oauth_client, in_health, DIARY)
    diary_sub = sub_of(body, audience_keys, jwks)
    assert b64json(body["id_token"].split(".")[1])["sub"] == diary_sub  # one sector: app and API agree

    host_sub = b64json(tokens_for(oauth_client, on_its_host, DIARY)["id_token"].split(".")[1])["sub"]
    assert on_its_host.sector == "app.example.org" and host_sub not in (diary_sub, pseudonym(svc, broker))
    assert svc.oauth.subjects.resolve("app.example.org", host_sub) == pseudonym(svc, broker)

    public_sub = b64json(tokens_for(oauth_client, public, DIARY)["id_token"].split(".")[1])["sub"]
    assert public_sub == pseudonym(svc, broker)


def test_registrations_stored_before_subject_types_keep_public_subjects(
        oauth_client, oauth, app_client, audience_keys, jwks, svc, broker):
    svc.store.update(AUDIENCES, {"audience": CHAT}, {"subject_type": None, "sector": None})
    svc.store.update(CLIENTS, {"client_id": app_client.client_id},
                          {"subject_type": None, "sector": None, "sector_identifier": None})
    oauth.audiences._records.clear()
    oauth.clients._cache.clear()
    body = tokens_for(oauth_client, app_client, CHAT)
    person = pseudonym(svc, broker)
    assert sub_of(body, audience_keys, jwks) == person
    assert b64json(body["id_token"].split(".")[1])["sub"] == person
    assert oauth.audiences.get(CHAT).sector == CHAT  # and its sector is its URI, ready for a move
    assert oauth.clients.get(app_client.client_id).sector == "app.example.org"


def test_introspection_gives_the_sub_the_audience_sees_and_for_refresh_tokens_the_clients(
        oauth_client, app_client, oauth, service_client, audience_keys, jwks, svc, broker):
    rs, secret = service_client
    oauth.clients.remove(rs.client_id)
    resource_server, secret = oauth.clients.register(name="Diary backend", public=False, redirect_uris=[],
                                                     grant_types=None, scopes=[], audiences=[], introspects=[DIARY])
    body = tokens_for(oauth_client, app_client, DIARY)
    seen = oauth_client.post("/introspect", data={"token": body["access_token"]},
                             headers=basic(resource_server.client_id, secret)).json
    assert seen["active"] and seen["sub"] == sub_of(body, audience_keys, jwks) != pseudonym(svc, broker)
    id_sub = b64json(body["id_token"].split(".")[1])["sub"]
    assert svc.oauth.subjects.subject_for(pseudonym(svc, broker), client=app_client) == id_sub


def test_a_refresh_keeps_the_audiences_sub(oauth_client, app_client, audience_keys, jwks):
    body = tokens_for(oauth_client, app_client, DIARY)
    refreshed = oauth_client.post("/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                  "client_id": app_client.client_id}).json
    assert sub_of(refreshed, audience_keys, jwks) == sub_of(body, audience_keys, jwks)


def test_after_erasure_no_subject_resolves_and_the_tokens_fail_introspection(
        oauth_client, oauth, app_client, apis, audience_keys, jwks, svc, broker):
    resource_server, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[],
                                                     grant_types=None, scopes=[], audiences=[DIARY, CHAT])
    issued = {resource: tokens_for(oauth_client, app_client, resource) for resource in (DIARY, CHAT)}
    subjects = {resource: sub_of(body, audience_keys, jwks) for resource, body in issued.items()}
    id_sub = b64json(issued[DIARY]["id_token"].split(".")[1])["sub"]
    person = pseudonym(svc, broker)
    svc.rights.erase(person, actor="test", reason="erasure requested")

    resolver = svc.oauth.subjects
    assert resolver.resolve(HEALTH, subjects[DIARY]) is None and resolver.resolve(CHAT, subjects[CHAT]) is None
    assert resolver.resolve("app.example.org", id_sub) is None
    assert resolver.map.resolve(HEALTH, subjects[DIARY]) == "erased"
    for body in issued.values():
        for value in (body["access_token"], body["refresh_token"]):
            answer = oauth_client.post("/introspect", data={"token": value},
                                       headers=basic(resource_server.client_id, secret)).json
            assert answer == {"active": False}
    rows = list(svc.store.find(SECTOR_SUBJECTS, {}))
    assert rows and all(doc["sealed"] is None for doc in rows)


def test_a_missing_registration_never_yields_the_pseudonym(svc, oauth):
    person = svc.vault.pseudonymise("someone@example.org").identity.pseudonym
    subjects = svc.oauth.subjects
    assert subjects.subject_for(person, audience="https://gone.example.org") not in ("", person)
    assert subjects.subject_for(person, client="no-such-client") not in ("", person)
    with pytest.raises(TypeError):
        subjects.subject_for(person)


def test_a_subject_is_recorded_before_it_leaves_or_no_token_is_issued(
        oauth_client, app_client, svc, monkeypatch):
    def unavailable(*args, **kwargs):
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(svc.oauth.subjects.map, "record", unavailable)
    verifier, challenge = pkce_pair()
    response = authorize(oauth_client, app_client, challenge, resource=DIARY)
    answer = exchange(oauth_client, app_client, query_of(response.headers["Location"])["code"], verifier)
    assert answer.status_code == 503 and "access_token" not in (answer.json or {})


def test_tokens_read_the_mapping_once_per_person_and_sector_not_per_token(oauth_client, app_client, svc,
                                                                          monkeypatch):
    reads = []
    real_get = svc.store.get

    def counting_get(coll, key):
        if coll is SECTOR_SUBJECTS:
            reads.append(key)
        return real_get(coll, key)

    monkeypatch.setattr(svc.store, "get", counting_get)
    body = tokens_for(oauth_client, app_client, DIARY)
    for _ in range(5):
        body = oauth_client.post("/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                 "client_id": app_client.client_id}).json
    assert len(reads) == 2  # the diary's sector and the app's (ID token), once each


def test_discovery_lists_both_subject_types(oauth_client):
    assert oauth_client.get("/.well-known/openid-configuration").json["subject_types_supported"] == [PAIRWISE, PUBLIC]


def test_new_registrations_default_to_pairwise_and_pairwise_clients_with_several_hosts_need_a_sector(oauth, apis):
    assert apis.get(DIARY).subject_type == PAIRWISE and apis.get(CHAT).sector == CHAT
    with pytest.raises(ClientRegistrationError, match="sector-identifier"):
        oauth.clients.register(name="Two hosts", public=True, grant_types=None, scopes=["openid"], audiences=[],
                               redirect_uris=["https://a.example.org/cb", "https://b.example.org/cb"])
    grouped, _ = oauth.clients.register(name="Two hosts", public=True, grant_types=None, scopes=["openid"],
                                        audiences=[], sector_identifier="example-group",
                                        redirect_uris=["https://a.example.org/cb", "https://b.example.org/cb"])
    assert grouped.subject_type == PAIRWISE and grouped.sector == "example-group"
    native, _ = oauth.clients.register(name="Native", public=True, grant_types=None, scopes=["openid"], audiences=[],
                                       redirect_uris=["http://127.0.0.1/cb"])
    assert native.sector == f"client:{native.client_id}"


def test_moving_an_audience_to_pairwise_changes_its_sub_from_the_next_token(
        oauth_client, oauth, app_client, audience_keys, jwks, svc, broker):
    oauth.audiences.set_subjects(CHAT, subject_type=PUBLIC, sector=None)
    person = pseudonym(svc, broker)
    assert sub_of(tokens_for(oauth_client, app_client, CHAT), audience_keys, jwks) == person
    before, after = oauth.audiences.set_subjects(CHAT, subject_type=PAIRWISE, sector="chat.example")
    assert (before.subject_type, after.subject_type, after.sector) == (PUBLIC, PAIRWISE, "chat.example")
    moved = sub_of(tokens_for(oauth_client, app_client, CHAT), audience_keys, jwks)
    assert moved != person and svc.oauth.subjects.resolve("chat.example", moved) == person


def test_subjects_hold_no_key_in_their_repr(svc):
    assert repr(svc.oauth.subjects) == "Subjects()"
    assert dataclasses.is_dataclass(svc.oauth)  # the server keeps it next to the other svc


def test_no_subject_is_ever_logged_next_to_an_email(oauth_client, oauth_app, app_client, svc, broker, audience_keys,
                                                     jwks, caplog, tmp_path, keys_dir):
    import logging

    from identity.audit import AuditLog
    from identity.breach.resolve import resolve_pseudonyms
    from tests.audit_support import signed_log
    from tests.breach_support import params, write_list

    caplog.set_level(logging.DEBUG)
    broker.email = "Linkable.Person@example.org"
    diary = tokens_for(oauth_client, app_client, DIARY)
    chat = tokens_for(oauth_client, app_client, CHAT)
    oauth_client.post("/token", data={"grant_type": "refresh_token", "refresh_token": diary["refresh_token"],
                                      "client_id": app_client.client_id})
    person = pseudonym(svc, broker)
    subjects = {person, sub_of(diary, audience_keys, jwks), sub_of(chat, audience_keys, jwks),
                b64json(diary["id_token"].split(".")[1])["sub"]}
    listing = write_list(tmp_path / "diary.txt", [sub_of(diary, audience_keys, jwks)])
    summary = resolve_pseudonyms(svc.store, signed_log(svc.store),
                                 params(tmp_path, keys_dir, listing, sector=HEALTH, workers=0))
    assert summary.counts["resolved"] == 1  # the DPO reaches the person, in the run's private CSV only
    svc.rights.erase(person, actor="test", reason="erasure")

    addresses = {broker.email, broker.email.lower(), "example.org"}
    assert len(caplog.records) >= 5  # the flow logged (request lines and events; they name no person at all)
    for record in caplog.records:
        text = record.getMessage() + " " + repr(record.__dict__)
        named = [s for s in subjects if s in text]
        assert not (named and any(a in text for a in addresses)), record.getMessage()
        assert not any(s in text for s in subjects - {person}), record.getMessage()  # pairwise subjects: never
    for record in AuditLog(svc.store).records():
        assert "@" not in repr(record)


def test_a_presented_subject_is_compared_without_recording_anything(oauth, svc, app_client, apis):
    """``is_subject_for`` (a sign-out's ``id_token_hint``): computed, never recorded, so comparing a ``sub`` with a
    person writes no row in a sector where they have none."""
    person = svc.vault.pseudonymise("someone@example.org").identity.pseudonym
    other = svc.vault.pseudonymise("other@example.org").identity.pseudonym
    subjects = oauth.subjects
    key_view = subjects._key.subject(app_client.sector, person)
    assert subjects.is_subject_for(key_view, person, client=app_client)
    assert subjects.is_subject_for(key_view, person, client=app_client.client_id)
    assert not subjects.is_subject_for(key_view, other, client=app_client)
    assert not subjects.is_subject_for(person, person, client=app_client)  # a pairwise app never sees the pseudonym
    assert not subjects.is_subject_for("\u00e9" * 26, person, client=app_client)
    assert subjects.is_subject_for(subjects._key.subject(HEALTH, person), person, audience=DIARY)
    assert svc.store.count(SECTOR_SUBJECTS, {}) == 0 and subjects.subjects_of(person) == []
    with pytest.raises(TypeError):
        subjects.is_subject_for(key_view, person)
    assert subjects.subject_for(person, client=app_client) == key_view  # what the app is given, recorded now
    assert svc.store.count(SECTOR_SUBJECTS, {}) == 1


def test_no_subject_is_handed_out_or_recorded_for_an_erased_person(svc, oauth, apis):
    from identity.oauth.subjects import PersonErased
    from identity.pairwise import ERASED

    person = svc.vault.pseudonymise("someone@example.org").identity.pseudonym
    svc.rights.erase(person, actor="ops", reason="Art. 17 request")
    with pytest.raises(PersonErased) as refused:
        oauth.subjects.subject_for(person, audience=DIARY)
    assert refused.value.error == "invalid_grant" and refused.value.status_code == 400
    assert oauth.subjects.map.resolve(HEALTH, oauth.subjects._key.subject(HEALTH, person)) == ERASED
