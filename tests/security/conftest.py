"""Fixtures for the security suite, on top of the shared ones in ``tests/conftest.py``.

Hypothesis runs a fixed, derandomised profile (the same examples on every run and in CI, no
example database written into the work tree). ``slow`` marks the tests that start real gunicorn
servers: they run in ``make test`` and CI; ``-m "not slow"`` leaves them out while iterating.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from identity import create_app
from identity.config import Settings
from identity.oauth.audiences import parse_encryption_key
from tests.conftest import API, OTHER_API, REDIRECT_URI, FakeClock
from tests.oauth_helpers import DirectLoginBroker

settings.register_profile(
    "security", max_examples=150, derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "security"))

SELF_SCOPE = "identity:self"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts real gunicorn servers (races and faults); runs in CI")


@pytest.fixture
def limited_app(settings: Settings, broker: DirectLoginBroker, clock: FakeClock, audience_keys):
    """The app with rate limiting switched on (the shared ``settings`` switch it off)."""
    application = create_app(dataclasses.replace(settings, rate_limits_enabled=True), login_broker=broker,
                             clock=clock)
    application.config["TESTING"] = True
    broker.app = application
    for keys in audience_keys.values():
        application.extensions["identity"].oauth.audiences.add(
            keys.uri, key=parse_encryption_key(keys.public_pem), jwks_uri=None)
    yield application
    application.extensions["identity"].store.close()


@pytest.fixture
def self_app(oauth):
    """A public app that may call the self-service endpoints (audience ``{issuer}/me``)."""
    issuer = oauth.authorizer.issuer
    client, _ = oauth.clients.register(name="Account app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["openid", SELF_SCOPE, "records:read"],
                                       audiences=[f"{issuer}/me", API])
    return client


@pytest.fixture(scope="module")
def module_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="identity-security-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["API", "OTHER_API", "REDIRECT_URI", "SELF_SCOPE"]
