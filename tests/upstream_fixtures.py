"""Fixtures for the upstream login tests (import the ones a module uses).

* ``dev_app``: the service as ``make run`` builds it: ``IDENTITY_ENV=development`` on a loopback http
  issuer, no upstream configured, so the development IdP is mounted at ``/devidp`` and the broker
  reaches it in-process.
* ``upstream_idp`` + ``tampering`` + ``broker_app``: a separate provider at
  ``https://upstream.example.test`` (the dev IdP's code, its own secret and store), wrapped so a test
  can forge its answers, and the service configured for it as for Auth0.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Flask

from identity import create_app
from identity.config import Settings
from identity.devidp import DevIdP, DevIdPConfig
from identity.oauth.audiences import parse_encryption_key
from identity.store import SQLiteStore
from identity.upstream import UpstreamBroker, UpstreamConfig, WsgiTransport, callback_url
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import AudienceKeys
from tests.upstream_support import Browser, TamperingIdP

ISSUER_HOST = "id.example.test"
DEV_ISSUER_HOST = "127.0.0.1:5000"  # the development IdP is served only on a loopback http issuer
DEV_ISSUER = f"http://{DEV_ISSUER_HOST}"
UPSTREAM = "https://upstream.example.test"
UPSTREAM_CLIENT_ID = "identity-test"
UPSTREAM_SECRET = "upstream-client-secret"


def register_app_client(app: Flask, audience_keys: dict[str, AudienceKeys], redirect_uri: str = REDIRECT_URI) -> Any:
    """The audience API and a public client with ``redirect_uri``: an app that wants tokens for it."""
    oauth = app.extensions["identity"].oauth
    oauth.audiences.add(API, key=parse_encryption_key(audience_keys[API].public_pem), jwks_uri=None)
    client, _ = oauth.clients.register(name="Test app", public=True, redirect_uris=[redirect_uri], grant_types=None,
                                       scopes=["openid", "records:read"], audiences=[API])
    return client


def development(settings: Settings, issuer: str = DEV_ISSUER) -> Settings:
    """``settings`` as ``make run`` has them: IDENTITY_ENV=development said explicitly, a loopback issuer."""
    return dataclasses.replace(settings, issuer=issuer, env_explicit=True)


@pytest.fixture
def dev_app(settings: Settings) -> Iterator[Flask]:
    application = create_app(development(settings))
    application.config["TESTING"] = True
    yield application
    application.extensions["identity"].store.close()


@pytest.fixture
def dev_client(dev_app: Flask, audience_keys: dict[str, AudienceKeys]) -> Any:
    return register_app_client(dev_app, audience_keys)


@pytest.fixture
def dev_browser(dev_app: Flask) -> Browser:
    return Browser({DEV_ISSUER_HOST: dev_app}, stop_at=REDIRECT_URI)


@pytest.fixture
def upstream_idp(settings: Settings, tmp_path: Path) -> Iterator[DevIdP]:
    store = SQLiteStore(tmp_path / "upstream-idp.sqlite3")
    config = DevIdPConfig(issuer=UPSTREAM, client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                          redirect_uris=(callback_url(settings.issuer),), secret=os.urandom(32))
    yield DevIdP(config, store=store)
    store.close()


@pytest.fixture
def tampering(upstream_idp: DevIdP) -> TamperingIdP:
    return TamperingIdP(upstream_idp)


def upstream_config(settings: Settings, issuer: str = UPSTREAM, **overrides: Any) -> UpstreamConfig:
    values: dict[str, Any] = dict(issuer=issuer, client_id=UPSTREAM_CLIENT_ID, client_secret=UPSTREAM_SECRET,
                                  callback_url=callback_url(settings.issuer), timeout=2.0,
                                  state_ttl=settings.pending_login_ttl, require_https=True)
    values.update(overrides)
    return UpstreamConfig(**values)


@pytest.fixture
def broker_app(settings: Settings, tampering: TamperingIdP) -> Iterator[Flask]:
    broker = UpstreamBroker(upstream_config(settings), mounts={UPSTREAM + "/": WsgiTransport(tampering, UPSTREAM)})
    application = create_app(settings, login_broker=broker)
    application.config["TESTING"] = True
    yield application
    application.extensions["identity"].store.close()


@pytest.fixture
def broker_client(broker_app: Flask, audience_keys: dict[str, AudienceKeys]) -> Any:
    return register_app_client(broker_app, audience_keys)


@pytest.fixture
def broker_browser(broker_app: Flask, tampering: TamperingIdP) -> Browser:
    return Browser({ISSUER_HOST: broker_app, "upstream.example.test": tampering}, stop_at=REDIRECT_URI)
