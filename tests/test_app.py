"""The app factory, health, readiness, JWKS endpoint and production start-up refusals."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity import create_app
from identity.config import ConfigError
from identity.keys import init_keys
from identity.keys.files import private_key_pem
from identity.store import StoreUnavailable
from tests.conftest import production_settings


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_readyz_is_503_when_the_store_is_unreachable(settings, tmp_path):
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    app = create_app(dataclasses.replace(settings, db_uri=f"sqlite:///{blocker}/db.sqlite3"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["store"] == "unavailable"


def test_store_failure_inside_a_request_is_a_503_with_a_clear_message(app, client):
    @app.get("/boom")
    def boom():
        raise StoreUnavailable("disk gone")

    response = client.get("/boom")
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert "store is unavailable" in response.json["error_description"]
    assert "disk gone" not in response.get_data(as_text=True)


def test_unexpected_errors_are_500_without_a_traceback(app, client):
    @app.get("/bug")
    def bug():
        raise RuntimeError("secret internals")

    response = client.get("/bug")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert response.json["error"] == "server_error"


def test_unknown_path_and_method_are_json_errors(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").json["error"] == "not_found"
    response = client.post("/.well-known/jwks.json")
    assert response.status_code == 405


def test_jwks_endpoint_publishes_public_keys_with_caching(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["Cache-Control"]
    for jwk in response.json["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_security_headers_are_set(client):
    response = client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" in response.headers  # issuer is https in tests


PRODUCTION_UPSTREAM = {"upstream_issuer": "https://idp.example.org", "upstream_client_id": "c",
                       "upstream_client_secret": "s"}


def test_production_refuses_to_start_without_an_upstream_idp(settings, tmp_path):
    with pytest.raises(ConfigError, match="IDENTITY_UPSTREAM_"):
        create_app(production_settings(settings, tmp_path))


def test_production_refuses_development_keys(settings):
    with pytest.raises(ConfigError, match="development keys"):
        create_app(dataclasses.replace(settings, env="production", keys_passphrase="x"))


def test_production_starts_with_proper_keys_and_no_dpo_secret_on_the_host(settings, tmp_path):
    root = tmp_path / "prod-keys"
    created = init_keys(root, passphrase="pass", dpo_passphrase=None, development=False, now=0)
    prod = dataclasses.replace(settings, env="production", keys_dir=root, keys_passphrase="pass",
                               **PRODUCTION_UPSTREAM)
    shares = sorted(root.glob("dpo_share_*.json"))
    assert len(shares) == 3
    for share in shares:  # the last round: one share alone on the host is refused too
        with pytest.raises(ConfigError, match=f"{share.name} is DPO secret material on the service host: move it"):
            create_app(prod)
        share.rename(tmp_path / share.name)
    whole = root / "dpo_private.pem"  # a whole key, as keys.py init wrote before the shares
    whole.write_bytes(private_key_pem(X25519PrivateKey.generate(), "dpo"))
    with pytest.raises(ConfigError, match="dpo_private.pem is DPO secret material"):
        create_app(prod)
    whole.rename(tmp_path / "offline-dpo.pem")
    os.chmod(created.files["blind_index_pepper"], stat.S_IRUSR | stat.S_IRGRP)
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(prod)
    os.chmod(created.files["blind_index_pepper"], stat.S_IRUSR)
    assert create_app(prod).test_client().get("/healthz").status_code == 200


def test_production_refuses_unencrypted_keys(settings, tmp_path):
    root = tmp_path / "plain-keys"
    init_keys(root, passphrase=None, dpo_passphrase=None, development=False, now=0,
              dpo_public=X25519PrivateKey.generate().public_key())
    with pytest.raises(ConfigError, match="not encrypted"):
        create_app(dataclasses.replace(settings, env="production", keys_dir=root, keys_passphrase="x"))


def test_missing_key_material_is_a_config_error_naming_the_variable(settings, tmp_path):
    with pytest.raises(ConfigError, match="IDENTITY_KEYS_DIR"):
        create_app(dataclasses.replace(settings, keys_dir=tmp_path / "nowhere"))
