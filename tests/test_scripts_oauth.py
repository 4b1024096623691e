"""``scripts/clients.py`` and ``scripts/audiences.py`` as operators run them against a running service."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from identity import create_app
from identity.audit import AuditLog

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(settings) -> dict[str, str]:
    return {"IDENTITY_ENV": "development", "IDENTITY_KEYS_DIR": str(settings.keys_dir),
            "IDENTITY_DB_URI": settings.db_uri, "IDENTITY_ISSUER": settings.issuer, "IDENTITY_OPERATOR": "ops-alice"}


def cli(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          env=full, stdin=subprocess.DEVNULL, timeout=60)


def one_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # exactly one JSON object, nothing else


def test_register_audience_and_clients_then_use_them_in_a_running_service(env, settings, audience_keys, tmp_path):
    app = create_app(settings)  # already running before the CLI changes anything
    client = app.test_client()
    pem = tmp_path / "api.pem"
    pem.write_bytes(audience_keys["https://api.example.org"].public_pem)
    audience = one_json(cli("audiences.py", "add", "--audience", "https://api.example.org",
                            "--encryption-key", str(pem), env=env))
    assert audience["kid"] and audience["audience"] == "https://api.example.org"

    confidential = one_json(cli("clients.py", "add", "--name", "Backend", "--audience", "https://api.example.org",
                                "--scope", "records:read", env=env))
    assert set(confidential) == {"client_id", "client_secret"}
    assert len(base64.urlsafe_b64decode(confidential["client_secret"] + "==")) >= 32
    assert not confidential["client_id"].startswith("-")

    public = one_json(cli("clients.py", "add", "--name", "App", "--public", "--redirect-uri",
                          "https://app.example.org/cb", "--audience", "https://api.example.org", env=env))
    assert set(public) == {"client_id"}

    shown = one_json(cli("clients.py", "show", public["client_id"], env=env))
    assert shown["grant_types"] == ["authorization_code", "refresh_token"] and shown["scopes"] == ["openid"]
    assert "secret" not in json.dumps(shown)
    listed = one_json(cli("clients.py", "list", env=env))
    assert {c["client_id"] for c in listed["clients"]} == {public["client_id"], confidential["client_id"]}

    auth = base64.b64encode(f"{confidential['client_id']}:{confidential['client_secret']}".encode()).decode()
    issued = client.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {auth}"})
    assert issued.status_code == 200, issued.json

    actions = [r["action"] for r in AuditLog(app.extensions["identity"].store).records()]
    assert actions == ["audiences.add", "clients.add", "clients.add"]
    assert {r["actor"] for r in AuditLog(app.extensions["identity"].store).records()} == {"ops-alice"}


def test_a_client_registered_with_uses_nonce_may_use_nonce_instead_of_pkce(env, settings, audience_keys, tmp_path,
                                                                          broker):
    app = broker.app = create_app(settings, login_broker=broker)
    pem = tmp_path / "api.pem"
    pem.write_bytes(audience_keys["https://api.example.org"].public_pem)
    one_json(cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(pem),
                 env=env))
    registered = {}
    for name, extra in (("plain", []), ("nonce", ["--uses-nonce"])):
        registered[name] = one_json(cli("clients.py", "add", "--name", f"Web {name}", "--grant", "authorization_code",
                                        "--redirect-uri", "https://app.example.org/cb", "--audience",
                                        "https://api.example.org", *extra, env=env))["client_id"]
        shown = one_json(cli("clients.py", "show", registered[name], env=env))
        assert shown["uses_nonce"] is bool(extra) and shown["type"] == "confidential"
    records = AuditLog(app.extensions["identity"].store).records()
    assert [r["details"]["uses_nonce"] for r in records if r["action"] == "clients.add"] == [False, True]
    http = app.test_client()
    for name, expected in (("plain", "error=invalid_request"), ("nonce", "code=")):
        answer = http.get("/authorize", query_string={"response_type": "code", "client_id": registered[name],
                                                      "scope": "openid", "nonce": "n-7", "state": "s"})
        assert expected in answer.headers["Location"], answer.headers["Location"]
    app.extensions["identity"].store.close()


def test_third_party_and_post_logout_redirect_uris_are_registered_and_shown(env, settings):
    created = one_json(cli("clients.py", "add", "--name", "Partner", "--public", "--third-party",
                           "--redirect-uri", "https://partner.example.org/cb",
                           "--post-logout-redirect-uri", "https://partner.example.org/bye",
                           "--post-logout-redirect-uri", "https://partner.example.org/bye", env=env))
    shown = one_json(cli("clients.py", "show", created["client_id"], env=env))
    assert shown["third_party"] is True and shown["post_logout_redirect_uris"] == ["https://partner.example.org/bye"]
    own = one_json(cli("clients.py", "add", "--name", "Own", "--public", "--redirect-uri",
                       "https://own.example.org/cb", env=env))
    shown = one_json(cli("clients.py", "show", own["client_id"], env=env))
    assert shown["third_party"] is False and shown["post_logout_redirect_uris"] == []  # first-party by default
    app = create_app(settings)
    records = AuditLog(app.extensions["identity"].store).records()
    assert [r["details"]["third_party"] for r in records if r["action"] == "clients.add"] == [True, False]
    app.extensions["identity"].store.close()


def test_secret_is_stored_only_as_a_hash(env, settings):
    created = one_json(cli("clients.py", "add", "--name", "Backend", env=env))
    db = Path(settings.db_uri.removeprefix("sqlite:///"))
    assert created["client_secret"].encode() not in db.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--name", "X", "--public", "--grant", "client_credentials"], "confidential clients only"),
    (["--name", "X", "--public"], "redirect-uri"),
    (["--name", "X", "--public", "--redirect-uri", "http://app.example.org/cb"], "https"),
    (["--name", "X", "--public", "--redirect-uri", "https://app.example.org/cb#x"], "fragment"),
    (["--name", "X", "--audience", "https://nowhere.example.org"], "not registered"),
    (["--name", "X", "--public", "--redirect-uri", "https://app.example.org/cb", "--uses-nonce"],
     "public clients always use PKCE"),
    (["--name", "X", "--uses-nonce"], "needs the authorization_code grant"),
    (["--name", "X", "--grant", "authorization_code", "--redirect-uri", "https://app.example.org/cb",
      "--scope", "records:read", "--uses-nonce"], "needs the openid scope"),
    (["--name", "X", "--public", "--redirect-uri", "https://app.example.org/cb",
      "--post-logout-redirect-uri", "http://app.example.org/bye"], "post-logout redirect URI must use https"),
])
def test_bad_registrations_are_refused_with_a_reason(env, args, message):
    result = cli("clients.py", "add", *args, env=env)
    assert result.returncode != 0 and result.stdout == "" and message in result.stderr


def test_audience_keys_are_checked(env, tmp_path, audience_keys):
    private = tmp_path / "private.pem"
    private.write_bytes(audience_keys["https://api.example.org"].private_pem)
    refused = cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(private),
                  env=env)
    assert refused.returncode == 1 and "PUBLIC" in refused.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    assert cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(garbage),
               env=env).returncode == 1
    assert cli("audiences.py", "add", "--audience", "https://api.example.org", env=env).returncode == 2


def test_audience_from_a_jwk_keeps_its_kid_and_can_be_updated_and_removed(env, tmp_path, audience_keys):
    from joserfc.jwk import RSAKey

    jwk = RSAKey.import_key(audience_keys["https://api.example.org"].public_pem).as_dict(private=False)
    jwk["kid"] = "api-2026-11"
    path = tmp_path / "api.jwk"
    path.write_text(json.dumps(jwk))
    assert one_json(cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key",
                        str(path), env=env))["kid"] == "api-2026-11"
    pem = tmp_path / "other.pem"
    pem.write_bytes(audience_keys["https://other.example.org"].public_pem)
    updated = one_json(cli("audiences.py", "update", "--audience", "https://api.example.org", "--encryption-key",
                           str(pem), env=env))
    assert updated["kid"] != "api-2026-11"
    assert updated["kids"] == [updated["kid"], "api-2026-11"] and updated["previous_kid"] == "api-2026-11"
    listed = one_json(cli("audiences.py", "list", env=env))["audiences"]
    assert next(a for a in listed if a["audience"] == "https://api.example.org")["kids"] == updated["kids"]
    assert one_json(cli("audiences.py", "remove", "--audience", "https://api.example.org", env=env))
    listed = one_json(cli("audiences.py", "list", env=env))["audiences"]
    assert [a["audience"] for a in listed] == ["https://id.example.test/me"]  # only the service's own


def test_help_everywhere(env):
    for script, commands in (("clients.py", ("add", "list", "show", "remove")),
                             ("audiences.py", ("add", "update", "list", "remove", "keygen"))):
        assert cli(script, "--help", env=env).returncode == 0
        for command in commands:
            assert cli(script, command, "--help", env=env).returncode == 0


# -- sectors and subject types ----------------------------------------------------------------------


def test_audiences_get_a_sector_and_pairwise_subjects_and_moving_one_needs_breaking(env, settings, audience_keys,
                                                                                    tmp_path):
    app = create_app(settings)
    pem = tmp_path / "api.pem"
    pem.write_bytes(audience_keys["https://api.example.org"].public_pem)
    added = one_json(cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(pem),
                         env=env))
    assert (added["subject_type"], added["sector"]) == ("pairwise", "https://api.example.org")
    grouped = one_json(cli("audiences.py", "add", "--audience", "https://notes.example.org", "--encryption-key",
                           str(pem), "--sector", "health.example", "--subject-type", "public", env=env))
    assert (grouped["subject_type"], grouped["sector"]) == ("public", "health.example")
    assert one_json(cli("audiences.py", "show", "--audience", "https://notes.example.org", env=env)) == grouped
    bad = cli("audiences.py", "add", "--audience", "https://x.example.org", "--encryption-key", str(pem),
              "--sector", "two words", env=env)
    assert bad.returncode == 1 and "sector" in bad.stderr and bad.stdout == ""

    refused = cli("audiences.py", "update", "--audience", "https://notes.example.org", "--subject-type", "pairwise",
                  env=env)
    assert refused.returncode == 1 and "--breaking" in refused.stderr
    moved = one_json(cli("audiences.py", "update", "--audience", "https://notes.example.org", "--subject-type",
                         "pairwise", "--breaking", env=env))
    assert (moved["subject_type"], moved["sector"]) == ("pairwise", "health.example")
    own = cli("audiences.py", "update", "--audience", f"{settings.issuer}/me", "--subject-type", "pairwise",
              "--breaking", env=env)
    assert own.returncode == 1 and "own audience" in own.stderr
    records = [r for r in AuditLog(app.extensions["identity"].store).records() if r["action"] == "audiences.subjects"]
    assert [r["outcome"] for r in records] == ["refused", "ok", "refused"]
    assert records[1]["details"]["before"] == {"subject_type": "public", "sector": "health.example"}
    assert records[1]["details"]["after"] == {"subject_type": "pairwise", "sector": "health.example"}
    assert app.extensions["identity"].oauth.audiences.get("https://notes.example.org").subject_type == "pairwise"


def test_clients_get_their_id_token_sector_per_oidc_8_1(env, settings):
    app = create_app(settings)
    two_hosts = ["--redirect-uri", "https://a.example.org/cb", "--redirect-uri", "https://b.example.org/cb"]
    refused = cli("clients.py", "add", "--name", "Two", "--public", *two_hosts, env=env)
    assert refused.returncode == 1 and "--sector-identifier" in refused.stderr
    made = one_json(cli("clients.py", "add", "--name", "Two", "--public", *two_hosts, "--sector-identifier",
                        "example-group", env=env))
    shown = one_json(cli("clients.py", "show", made["client_id"], env=env))
    assert (shown["subject_type"], shown["sector"], shown["sector_identifier"]) == (
        "pairwise", "example-group", "example-group")
    assert cli("clients.py", "update", made["client_id"], "--subject-type", "public", env=env).returncode == 1
    updated = one_json(cli("clients.py", "update", made["client_id"], "--subject-type", "public", "--breaking",
                           env=env))
    assert updated["subject_type"] == "public"
    actions = [(r["action"], r["outcome"]) for r in AuditLog(app.extensions["identity"].store).records()]
    assert actions == [("clients.add", "ok"), ("clients.subjects", "refused"), ("clients.subjects", "ok")]


def test_a_resource_server_is_registered_to_introspect_its_audience(env, settings, audience_keys, tmp_path):
    app = create_app(settings)
    pem = tmp_path / "api.pem"
    pem.write_bytes(audience_keys["https://api.example.org"].public_pem)
    one_json(cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(pem),
                 env=env))
    unknown = cli("clients.py", "add", "--name", "Records", "--introspects", "https://nowhere.example.org", env=env)
    assert unknown.returncode == 1 and "not registered" in unknown.stderr
    public = cli("clients.py", "add", "--name", "Native", "--public", "--redirect-uri", "com.example.app:/cb",
                 "--introspects", "https://api.example.org", env=env)
    assert public.returncode == 1 and "confidential" in public.stderr
    made = one_json(cli("clients.py", "add", "--name", "Records", "--introspects", "https://api.example.org",
                        env=env))
    assert one_json(cli("clients.py", "show", made["client_id"], env=env))["introspects"] == ["https://api.example.org"]
    ended = one_json(cli("clients.py", "update", made["client_id"], "--no-introspection", env=env))
    assert ended["introspects"] == []
    mixed = cli("clients.py", "update", made["client_id"], "--introspects", "https://api.example.org",
                "--subject-type", "public", "--breaking", env=env)
    assert mixed.returncode == 1 and "two runs" in mixed.stderr
    again = one_json(cli("clients.py", "update", made["client_id"], "--introspects", "https://api.example.org",
                         env=env))
    assert again["introspects"] == ["https://api.example.org"]
    records = [r for r in AuditLog(app.extensions["identity"].store).records() if r["action"].startswith("clients.")]
    assert [(r["action"], r["details"].get("after")) for r in records] == [
        ("clients.add", None), ("clients.introspects", []), ("clients.introspects", ["https://api.example.org"])]
    assert records[0]["details"]["introspects"] == ["https://api.example.org"]


def test_map_subjects_gives_a_moving_service_its_peoples_subjects_in_its_sector(env, settings, audience_keys,
                                                                               tmp_path):
    app = create_app(settings)
    services = app.extensions["identity"]
    pem = tmp_path / "api.pem"
    pem.write_bytes(audience_keys["https://api.example.org"].public_pem)
    one_json(cli("audiences.py", "add", "--audience", "https://api.example.org", "--encryption-key", str(pem),
                 "--subject-type", "public", "--sector", "api.example", env=env))
    people = [services.vault.pseudonymise(f"p{i}@example.org").identity.pseudonym for i in range(3)]
    services.rights.erase(people[2], actor="test", reason="erased before the move")
    held = tmp_path / "held.txt"
    held.write_text("\n".join(people + ["notapseudonym"]) + "\n")
    out = tmp_path / "map.csv"
    result = one_json(cli("audiences.py", "map-subjects", "--audience", "https://api.example.org",
                          "--pseudonyms", str(held), "--out", str(out), env=env))
    assert (result["mapped"], result["skipped"]) == (2, 2) and oct(out.stat().st_mode & 0o777) == "0o600"
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["pseudonym", "subject"]
    for pseudonym, subject in rows[1:]:
        assert services.oauth.subjects.subject_for(pseudonym, audience="https://api.example.org") == pseudonym  # public
        assert services.oauth.subjects.in_sector("api.example", pseudonym) == subject != pseudonym
        assert services.oauth.subjects.resolve("api.example", subject) == pseudonym  # recorded for the breach path
    again = cli("audiences.py", "map-subjects", "--audience", "https://api.example.org", "--pseudonyms", str(held),
                "--out", str(out), env=env)
    assert again.returncode == 1 and "must not exist" in again.stderr
    record = [r for r in AuditLog(services.store).records() if r["action"] == "audiences.map_subjects"][0]
    assert record["counts"] == {"mapped": 2, "skipped": 2} and not any(p in repr(record) for p in people)
