"""``identity.logs``: JSON lines, the request id on every record of a request, and security events whose
fields are the documented ones (docs/deploy.md, "Logs") and never personal data."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from identity.keys.lifecycle import rotate_signing_keys
from identity.logs import EVENT_FIELDS, RequestContext, enter_request, leave_request, security_event
from tests.log_support import events, log_lines  # noqa: F401

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def documented_events() -> dict[str, set[str]]:
    """The security events table of docs/deploy.md: event → the field names in its last column."""
    text = DEPLOY.read_text()
    table = text[text.index("**Security events**"):text.index("**No personal data.**")]
    found = {}
    for row in re.findall(r"^\| `(\w+)` \|[^|]*\|(.*)\|$", table, flags=re.MULTILINE):
        names = re.sub(r"\([^)]*\)", "", row[1])  # explanations in brackets name values, not fields
        found[row[0]] = set(re.findall(r"`(\w+)`", names))
    return found


def test_every_event_and_field_is_documented_and_nothing_else():
    documented = documented_events()
    assert set(documented) == set(EVENT_FIELDS)
    for event, fields in EVENT_FIELDS.items():
        assert documented[event] == set(fields), event


def test_an_undocumented_field_is_a_programming_error():
    with pytest.raises(ValueError):
        security_event("erasure", "identity erased", pseudonym="mfrggzdfmztwq2lknnwg23tpoa")
    with pytest.raises(KeyError):
        security_event("made_up", "something")


def test_every_record_of_a_request_carries_its_id(log_lines):
    token = enter_request(RequestContext("req-under-test-1", client_id="client-1"))
    try:
        security_event("rate_limit", "rate limit reached", endpoint="oauth.authorize", limit="60 per 1 minute")
    finally:
        leave_request(token)
    security_event("rate_limit", "rate limit reached", endpoint="oauth.authorize", limit="60 per 1 minute")
    inside, outside = events(log_lines(), "rate_limit")
    assert inside["request_id"] == "req-under-test-1" and inside["client_id"] == "client-1"
    assert "request_id" not in outside


def test_each_instance_logs_a_key_rotation_once(app, log_lines):
    services = app.extensions["identity"]
    keyring = services.keyring
    rotate_signing_keys(services.settings.keys_dir, passphrase=None, longest_token_ttl=600, now=time.time())
    time.sleep(1.05)  # the keyring looks at the manifest at most once a second
    keyring.jwks()
    keyring.jwks()
    time.sleep(1.05)
    keyring.jwks()
    rotations = events(log_lines(), "key_rotation")
    assert len(rotations) == 1
    assert rotations[0]["active_kid"] == keyring.active_signing_key().kid and rotations[0]["next_kid"]
    assert rotations[0]["published_kids"] == len(keyring.jwks()["keys"])


def test_erasure_events_count_and_never_name_the_person(services, log_lines):
    pseudonym = services.vault.pseudonymise("erase.me@example.org").identity.pseudonym
    services.rights.erase(pseudonym, actor="operator-x", reason="request by e-mail")
    services.rights.purge(actor="operator-x", dry_run=False)
    erased, purged = events(log_lines(), "erasure")
    assert erased["via"] == "operator" and erased["identities"] == 1 and "grants_revoked" in erased
    assert purged["via"] == "retention" and purged["identities"] == 0
    text = repr(log_lines())
    assert pseudonym not in text and "erase.me" not in text and "operator-x" not in text
