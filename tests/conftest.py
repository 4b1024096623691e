"""Shared fixtures: key material generated per test session, an app per test, both store backends."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import mongomock
import pytest
from pymongo import MongoClient

from identity import create_app
from identity.config import Settings
from identity.keys import init_keys
from identity.store import MongoStore, SQLiteStore, Store

# The processes tests start (``python scripts/NAME.py``, servers) import ``identity`` from this checkout,
# whatever copy of the package the interpreter has installed (``make setup`` installs one, editable).
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Development key material made once per session; tests get copies."""
    root = tmp_path_factory.mktemp("key-template") / "keys"
    init_keys(root, passphrase=None, dpo_passphrase=None, development=True, now=time.time())
    return root


@pytest.fixture
def keys_dir(key_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "keys"
    shutil.copytree(key_template, target)
    return target


def make_store(kind: str, tmp_path: Path) -> Store:
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "store.sqlite3")
    client: MongoClient[dict[str, Any]] = mongomock.MongoClient()
    return MongoStore("mongodb://localhost/identity_test", client_factory=lambda: client)


@pytest.fixture(params=["sqlite", "mongomock"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each test using this fixture runs once per backend (the store contract)."""
    backend = make_store(request.param, tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    backend = make_store("sqlite", tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def settings(keys_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        issuer="https://id.example.test",
        db_uri=f"sqlite:///{tmp_path / 'identity.sqlite3'}",
        keys_dir=keys_dir,
        rate_limits_enabled=False,
    )


@pytest.fixture
def app(settings: Settings):
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["identity"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def services(app):
    return app.extensions["identity"]


# -- OAuth fixtures ----------------------------------------------------------------------------

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402

from identity.oauth.audiences import parse_encryption_key  # noqa: E402
from tests.lookup_support import present  # noqa: E402
from tests.oauth_helpers import AudienceKeys, DirectLoginBroker  # noqa: E402

REDIRECT_URI = "https://app.example.org/callback"
API = "https://api.example.org"
OTHER_API = "https://other.example.org"


@pytest.fixture(scope="session")
def audience_keys() -> dict[str, AudienceKeys]:
    return {uri: AudienceKeys(uri, rsa.generate_private_key(public_exponent=65537, key_size=2048))
            for uri in (API, OTHER_API)}


class FakeClock:
    """A clock tests can move forward instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def production_settings(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    """``settings`` for production: fresh production keys (passphrase ``pass``), the DPO key set made elsewhere."""
    root = tmp_path / "prod-keys"
    init_keys(root, passphrase="pass", dpo_passphrase=None, development=False, now=0,
              dpo_public=X25519PrivateKey.generate().public_key())
    return dataclasses.replace(settings, env="production", keys_dir=root, keys_passphrase="pass", **changes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker() -> DirectLoginBroker:
    return DirectLoginBroker()


@pytest.fixture
def oauth_app(settings, broker, clock, audience_keys):
    application = create_app(settings, login_broker=broker, clock=clock)
    application.config["TESTING"] = True
    broker.app = application
    audiences = application.extensions["identity"].oauth.audiences
    for keys in audience_keys.values():
        audiences.add(keys.uri, key=parse_encryption_key(keys.public_pem), jwks_uri=None)
    yield application
    application.extensions["identity"].store.close()


@pytest.fixture
def oauth(oauth_app):
    return oauth_app.extensions["identity"].oauth


@pytest.fixture
def oauth_client(oauth_app):
    return oauth_app.test_client()


@pytest.fixture
def public_app(oauth):
    client, _ = oauth.clients.register(name="Mobile app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["openid", "records:write", "records:read"],
                                       audiences=[API])
    return client


@pytest.fixture
def service_client(oauth):
    """A confidential backend: client_credentials for both APIs, and their resource server (it introspects
    their tokens): (client, secret)."""
    client, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                            scopes=["records:read"], audiences=[API, OTHER_API],
                                            introspects=[API, OTHER_API])
    return client, secret


@pytest.fixture
def web_app(oauth):
    """A confidential code-flow client (a server-side web app): (client, secret); it must send PKCE."""
    return oauth.clients.register(name="Web app", public=False, redirect_uris=[REDIRECT_URI],
                                  grant_types=["authorization_code", "refresh_token"],
                                  scopes=["openid", "records:read"], audiences=[API])


# -- the token endpoint through both paths -------------------------------------------------------

import json  # noqa: E402

from identity.web.token_fast_path import TokenFastPath  # noqa: E402

TOKEN_PATHS = ("fast path", "flask")
SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})
_TOKEN_ANSWERS: dict[tuple[str, ...], dict[str, list[str]]] = {}
_THROUGH_FLASK = "tests.token_path.flask"


def token_answer_signature(status: str, headers: list[tuple[str, str]], body: bytes) -> str:
    """What must be equal between the two paths: status, headers in their order (but Content-Length, and
    Retry-After's value), and the body byte for byte but the tokens' values, which differ on every issue
    (each is replaced by its member's name; its type stays visible: a string keeps its quotes)."""
    kept = [(name, "<seconds>" if name.lower() == "retry-after" else value) for name, value in headers
            if name.lower() != "content-length"]
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in SECRET_FIELDS:
            value = parsed.get(key)
            if isinstance(value, str) and value:
                text = text.replace(json.dumps(value), json.dumps(f"<{key}>"))
    return json.dumps([status, kept, text])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "token_answers_vary: the test's /token answers depend on timing (threads), "
                                       "so token_path checks each path's run but does not compare them")


def _test_key(request: pytest.FixtureRequest) -> tuple[str, ...]:
    params = {k: v for k, v in present(getattr(request.node, "callspec", None)).params.items() if k != "token_path"}
    return (request.node.nodeid.split("[")[0], *(f"{k}={v}" for k, v in sorted(params.items(), key=str)))


@pytest.fixture(params=TOKEN_PATHS)
def token_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test twice: ``POST /token`` answered by the fast path (``identity.web.token_fast_path``),
    then by Flask's ``token`` view, and compares the two runs' answers (``token_answer_signature``, as
    a multiset: concurrent tests answer in any order). Use it with ``pytest.mark.usefixtures``.

    In the fast-path run every layer that saw a /token request must have been on; in the Flask run the
    layers are switched off, so every /token request reaches the view.
    """
    mode = request.param
    answers: list[str] = []
    layers: list[TokenFastPath] = []
    original = TokenFastPath.__call__

    def recording(self: TokenFastPath, environ: dict, start_response):
        if environ.get("PATH_INFO") != "/token" or environ.get("REQUEST_METHOD") != "POST":
            return original(self, environ, start_response)
        if self not in layers:
            layers.append(self)
        if mode == "flask":
            self.enabled = False
        seen: list[tuple[str, list[tuple[str, str]]]] = []

        def capture(status, headers, exc_info=None):
            seen.append((status, list(headers)))
            return start_response(status, headers, exc_info)

        result = original(self, environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        answers.append(token_answer_signature(seen[-1][0], seen[-1][1], body))
        return [body]

    monkeypatch.setattr(TokenFastPath, "__call__", recording)
    yield mode
    if mode == "fast path":
        assert all(layer.enabled is True for layer in layers), "the token fast path was off"
    if request.node.get_closest_marker("token_answers_vary"):
        return
    key = _test_key(request)
    runs = _TOKEN_ANSWERS.setdefault(key, {})
    runs[mode] = sorted(answers)
    if len(runs) == len(TOKEN_PATHS):
        fast, flask = runs.pop("fast path"), runs.pop("flask")
        assert fast == flask, f"/token answers differ between the fast path and Flask:\n{fast}\n{flask}"
