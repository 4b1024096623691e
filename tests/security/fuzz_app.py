"""One app per fuzz module, with the whole HTTP surface: the development IdP and its broker, a public
and a confidential client, the self-service audience and one API audience."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from identity import create_app
from identity.config import Settings
from identity.oauth.audiences import parse_encryption_key
from tests.conftest import API, REDIRECT_URI

ISSUER = "http://127.0.0.1:5000"  # explicit development on a loopback issuer: the development IdP is served
SELF = f"{ISSUER}/me"


@dataclass
class FuzzTarget:
    app: Flask
    public_client_id: str
    confidential_client_id: str
    secret: str
    audience_key: rsa.RSAPrivateKey

    @property
    def client(self) -> Any:
        return self.app.test_client()

    def close(self) -> None:
        self.app.extensions["identity"].store.close()


def build(root: Path, key_template: Path) -> FuzzTarget:
    keys = root / "keys"
    shutil.copytree(key_template, keys)
    settings = Settings(issuer=ISSUER, env_explicit=True, db_uri=f"sqlite:///{root / 'identity.sqlite3'}",
                        keys_dir=keys, rate_limits_enabled=False, log_level="ERROR")
    app = create_app(settings)
    app.config["TESTING"] = False  # exceptions must go through the error handlers, as in production
    oauth = app.extensions["identity"].oauth
    audience_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = audience_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    oauth.audiences.add(API, key=parse_encryption_key(pem), jwks_uri=None)
    public, _ = oauth.clients.register(name="Fuzz app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                       scopes=["openid", "identity:self", "records:read"], audiences=[SELF, API])
    confidential, secret = oauth.clients.register(name="Fuzz service", public=False, redirect_uris=[],
                                                  grant_types=None, scopes=["records:read"], audiences=[API])
    return FuzzTarget(app, public.client_id, confidential.client_id, secret or "", audience_key)
