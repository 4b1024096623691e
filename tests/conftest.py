"""Shared fixtures: key material generated per test session, an app per test, both store backends."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator

import mongomock
import pytest

from identity import create_app
from identity.config import Settings
from identity.keys import init_keys
from identity.store import MongoStore, SQLiteStore, Store


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
    client = mongomock.MongoClient()
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
