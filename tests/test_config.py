"""Settings from the environment: defaults, every problem at once, production refusals, redaction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from identity.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = {"IDENTITY_ENV": "production", "IDENTITY_ISSUER": "https://id.example.org",
              "IDENTITY_KEYS_PASSPHRASE": "p", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
              "IDENTITY_UPSTREAM_CLIENT_ID": "c", "IDENTITY_UPSTREAM_CLIENT_SECRET": "s"}


def test_defaults_run_development_on_the_embedded_store():
    settings = load_settings({})
    assert settings.env == "development" and not settings.env_explicit
    assert settings.db_uri == "sqlite:///var/identity.sqlite3"
    assert str(settings.keys_dir) == "keys"
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.access_token_ttl == 600


def test_every_problem_is_reported_together_naming_its_variable():
    with pytest.raises(ConfigError) as info:
        load_settings({
            "IDENTITY_ENV": "production",
            "IDENTITY_ISSUER": "http://id.example.org",
            "IDENTITY_DB_URI": "postgres://x",
            "IDENTITY_ACCESS_TOKEN_TTL": "forever",
        })
    text = str(info.value)
    for name in ("IDENTITY_ISSUER", "IDENTITY_DB_URI", "IDENTITY_KEYS_PASSPHRASE", "IDENTITY_ACCESS_TOKEN_TTL",
                 "IDENTITY_UPSTREAM_"):
        assert name in text
    assert len(info.value.problems) >= 5


@pytest.mark.parametrize("issuer", ["not a url", "ftp://x", "https://id.example.org?x=1", "https://id.example.org#f"])
def test_bad_issuers_are_refused(issuer: str):
    with pytest.raises(ConfigError, match="IDENTITY_ISSUER"):
        load_settings({"IDENTITY_ISSUER": issuer})


def test_production_requires_https_issuer_and_passphrase():
    base = {"IDENTITY_ENV": "production", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
            "IDENTITY_UPSTREAM_CLIENT_ID": "c", "IDENTITY_UPSTREAM_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigError, match="https"):
        load_settings({**base, "IDENTITY_ISSUER": "http://id.example.org", "IDENTITY_KEYS_PASSPHRASE": "p"})
    with pytest.raises(ConfigError, match="IDENTITY_KEYS_PASSPHRASE"):
        load_settings({**base, "IDENTITY_ISSUER": "https://id.example.org"})
    ok = load_settings({**base, "IDENTITY_ISSUER": "https://id.example.org/", "IDENTITY_KEYS_PASSPHRASE": "p"})
    assert ok.is_production and ok.issuer == "https://id.example.org"


def test_unknown_environment_name_is_refused():
    with pytest.raises(ConfigError, match="IDENTITY_ENV"):
        load_settings({"IDENTITY_ENV": "staging"})


def test_secrets_are_redacted_when_printed():
    settings = load_settings({
        "IDENTITY_KEYS_PASSPHRASE": "hunter2-passphrase",
        "IDENTITY_DB_URI": "mongodb://user:dbpassword@db.example.org/identity",
        "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
        "IDENTITY_UPSTREAM_CLIENT_ID": "client",
        "IDENTITY_UPSTREAM_CLIENT_SECRET": "upstream-secret-value",
    })
    shown = repr(settings) + repr(settings.redacted())
    for secret in ("hunter2-passphrase", "dbpassword", "upstream-secret-value"):
        assert secret not in shown
    assert settings.redacted()["keys_passphrase"] == "<set>"


# -- unsafe by omission is impossible ------------------------------------------------------------------

@pytest.mark.parametrize("issuer", ["https://id.example.org", "https://127.0.0.1.example.org",
                                    "https://10.0.0.5:8443"])
def test_an_unset_environment_with_a_non_loopback_issuer_refuses_to_start_with_one_line(issuer: str):
    """The reported case: production keys and an https issuer, but IDENTITY_ENV forgotten."""
    env = {"IDENTITY_ISSUER": issuer, "IDENTITY_KEYS_PASSPHRASE": "p"}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("IDENTITY_ENV is not set and IDENTITY_ISSUER")
    assert "IDENTITY_ENV=production" in info.value.problems[0]
    assert load_settings({**env, "IDENTITY_ENV": "development"}).env_explicit


@pytest.mark.parametrize("issuer", ["http://id.example.org", "http://10.0.0.5:5000", "http://0.0.0.0:5000"])
@pytest.mark.parametrize("mode", [None, "development"])
def test_plain_http_is_refused_on_an_issuer_others_can_reach(issuer: str, mode: str | None):
    env = {"IDENTITY_ISSUER": issuer, **({"IDENTITY_ENV": mode} if mode else {})}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert any(p.startswith("IDENTITY_ISSUER must use https (plain http only on a loopback address")
               for p in info.value.problems)
    assert any(p.startswith("IDENTITY_ENV is not set") for p in info.value.problems) == (mode is None)


@pytest.mark.parametrize("issuer", [None, "http://127.0.0.1:8000", "http://[::1]:5000", "http://localhost:5000"])
def test_an_unset_environment_on_a_loopback_issuer_is_development_but_not_explicit(issuer: str | None):
    settings = load_settings({} if issuer is None else {"IDENTITY_ISSUER": issuer})
    assert settings.env == "development" and not settings.env_explicit


PRODUCTION_REFUSALS = {
    "rate limits off": ({"IDENTITY_RATE_LIMITS_ENABLED": "false"},
                        "IDENTITY_RATE_LIMITS_ENABLED=false is refused in production"),
    "four eyes off": ({"IDENTITY_FOUR_EYES_REQUIRED": "false"},
                      "IDENTITY_FOUR_EYES_REQUIRED=false is refused in production"),
    "MongoDB without TLS": ({"IDENTITY_DB_URI": "mongodb://svc:dbsecret@db.example.org:27017/identity"},
                            "IDENTITY_DB_URI is refused in production: MongoDB at db.example.org without TLS"),
    "MongoDB+srv with TLS off": (
        {"IDENTITY_DB_URI": "mongodb+srv://svc:dbsecret@cluster.example.net/identity?tls=false"},
        "IDENTITY_DB_URI is refused in production: MongoDB at cluster.example.net without TLS"),
    "MongoDB, one of several hosts remote": (
        {"IDENTITY_DB_URI": "mongodb://127.0.0.1:27017,db2.example.org:27017/identity?replicaSet=rs0"},
        "IDENTITY_DB_URI is refused in production: MongoDB at db2.example.org without TLS"),
    "MongoDB TLS unchecked": ({"IDENTITY_DB_URI": "mongodb://db.example.org/identity?tls=true&tlsInsecure=true"},
                              "IDENTITY_DB_URI is refused in production: MongoDB at db.example.org with TLS "
                              "certificate checks switched off"),
}


@pytest.mark.parametrize("case", PRODUCTION_REFUSALS, ids=list(PRODUCTION_REFUSALS))
def test_production_refuses_switched_off_protections_each_with_its_reason(case: str):
    change, reason = PRODUCTION_REFUSALS[case]
    with pytest.raises(ConfigError) as info:
        load_settings({**PRODUCTION, **change})
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(reason), info.value.problems
    assert "dbsecret" not in str(info.value)
    load_settings({**PRODUCTION, **change, "IDENTITY_ENV": "development",
                   "IDENTITY_ISSUER": "http://127.0.0.1:5000"})  # development may


@pytest.mark.parametrize("uri", [
    "mongodb://db.example.org/identity?tls=true", "mongodb://db.example.org/identity?ssl=true",
    "mongodb+srv://svc:pw@cluster.example.net/identity?retryWrites=true", "mongodb://localhost:27017/identity",
    "mongodb://127.0.0.1,[::1]:27018/identity", "mongodb://%2Ftmp%2Fmongodb-27017.sock/identity",
])
def test_production_accepts_mongodb_over_tls_or_on_this_host(uri: str):
    assert load_settings({**PRODUCTION, "IDENTITY_DB_URI": uri}).db_uri == uri


def test_production_accepts_protections_left_on():
    settings = load_settings({**PRODUCTION, "IDENTITY_RATE_LIMITS_ENABLED": "true",
                              "IDENTITY_FOUR_EYES_REQUIRED": "true"})
    assert settings.rate_limits_enabled and settings.requires_four_eyes


def start_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import ``wsgi`` (what gunicorn does) with only ``env`` as IDENTITY_* configuration."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, "-c", "import wsgi"], cwd=REPO, env=full, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("env, reason", [
    ({"IDENTITY_ISSUER": "https://id.example.org", "IDENTITY_KEYS_PASSPHRASE": "p"},
     "IDENTITY_ENV is not set and IDENTITY_ISSUER (https://id.example.org) is not a loopback address"),
    *[({**PRODUCTION, **change}, reason) for change, reason in PRODUCTION_REFUSALS.values()][:3],
], ids=["IDENTITY_ENV forgotten", "rate limits off", "four eyes off", "MongoDB without TLS"])
def test_the_service_refuses_to_start_printing_the_reason(env: dict[str, str], reason: str):
    started = start_service(env)
    assert started.returncode == 1
    lines = started.stderr.strip().splitlines()
    assert lines[0] == "invalid configuration:" and len(lines) == 2 and reason in lines[1], started.stderr
    assert "development IdP mounted" not in started.stderr


def test_trusted_proxies_are_none_by_default_a_hop_count_or_networks():
    assert not load_settings({}).trusted_proxies
    assert load_settings({"IDENTITY_TRUSTED_PROXIES": "2"}).trusted_proxies.hops == 2
    listed = load_settings({"IDENTITY_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.7"})
    assert str(listed.trusted_proxies) == "10.0.0.0/8,192.168.1.7/32"
    assert listed.redacted()["trusted_proxies"] == "10.0.0.0/8,192.168.1.7/32"
    for bad in ("proxy.internal", "10.0.0.1/8", "0.0.0.0/0", "2,10.0.0.0/8"):
        with pytest.raises(ConfigError, match="IDENTITY_TRUSTED_PROXIES") as info:
            load_settings({"IDENTITY_TRUSTED_PROXIES": bad})
        assert len(info.value.problems) == 1
