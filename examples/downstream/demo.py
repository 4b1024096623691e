"""``python -m examples.downstream.demo``: the end-to-end walk-through in one process, no network.

log in → token → post a record → see it stored under the pseudonym, with no e-mail on the
behavioural side. The identity service runs from this repository with throw-away keys and a
stand-in login (until an upstream IdP is configured, nothing else can log a person in); the
downstream service fetches the issuer's discovery document and JWKS through a test client.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, TextIO
from urllib.parse import parse_qs, urlsplit

from flask import Flask, redirect
from werkzeug.wrappers import Response

from identity.verify import DecryptionKey, HttpResponse, TokenVerifier, generate_audience_key

from .app import create_app as create_downstream
from .config import DownstreamConfig

ISSUER = "http://127.0.0.1:5000"
AUDIENCE = "http://127.0.0.1:5001"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
EMAIL = "alex@example.org"


class StandInLogin:
    """Plays the upstream IdP: 'alex@example.org' logs in at once (through the vault, as a real login would)."""

    def __init__(self, app_ref: list[Flask]) -> None:
        self._app = app_ref

    def begin(self, pending: Any) -> Response:
        authorizer = self._app[0].extensions["identity"].oauth.authorizer
        return redirect(authorizer.complete(pending.pending_id, EMAIL), code=303)


class TestClientFetcher:
    """The verifier's HTTP, answered by the identity service's Flask test client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def get(self, url: str) -> HttpResponse:
        response = self._client.get(url.removeprefix(ISSUER))
        return HttpResponse(status=response.status_code, body=response.get_data())

    def post_form(self, url: str, form: Mapping[str, str], *, basic_auth: tuple[str, str]) -> HttpResponse:
        raise NotImplementedError("the demo does not introspect")


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def run(workdir: Path, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the walk-through in ``workdir``; return what a test wants to check."""
    from identity import create_app as create_identity
    from identity.config import Settings
    from identity.keys import init_keys
    from identity.oauth.audiences import parse_encryption_key

    def say(text: str) -> None:
        print(text, file=out)

    # 1. the identity service, and the downstream service's audience key pair
    init_keys(workdir / "identity-keys", passphrase=None, dpo_passphrase=None, development=True, now=time.time())
    app_ref: list[Flask] = []
    identity = create_identity(Settings(issuer=ISSUER, db_uri=f"sqlite:///{workdir / 'identity.sqlite3'}",
                                        keys_dir=workdir / "identity-keys", rate_limits_enabled=False),
                               login_broker=StandInLogin(app_ref))
    app_ref.append(identity)
    oauth = identity.extensions["identity"].oauth
    files = generate_audience_key(workdir / "downstream-keys", bits=2048)
    say(f"1. downstream key pair generated, kid {files.kid}")
    oauth.audiences.add(AUDIENCE, key=parse_encryption_key(files.public_key.read_bytes()), jwks_uri=None)
    app, _ = oauth.clients.register(name="Demo app", public=True, redirect_uris=[REDIRECT_URI], grant_types=None,
                                    scopes=["records:read", "records:write"], audiences=[AUDIENCE])
    say(f"2. audience {AUDIENCE} and public client {app.client_id} registered at the identity service")

    # 2. log in (authorization code + PKCE) and get an access token for the downstream audience
    issuer_http = identity.test_client()
    code_verifier, challenge = _pkce()
    login = issuer_http.get("/authorize", query_string={
        "response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT_URI, "state": "demo",
        "scope": "records:read records:write", "code_challenge": challenge, "code_challenge_method": "S256",
        "resource": AUDIENCE})
    code = parse_qs(urlsplit(login.headers["Location"]).query)["code"][0]
    tokens = issuer_http.post("/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": app.client_id, "code_verifier": code_verifier}).get_json()
    access_token = tokens["access_token"]
    say(f"3. {EMAIL} logged in; the app got an access token ({len(access_token.split('.'))}-part JWE)")

    # 3. the downstream service verifies it and stores a record under the pseudonym
    config = DownstreamConfig(issuer=ISSUER, audience=AUDIENCE, keys_dir=workdir / "downstream-keys",
                              db_path=workdir / "downstream.sqlite3")
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE,
                             decryption_keys=[DecryptionKey.from_file(files.private_key)],
                             fetcher=TestClientFetcher(issuer_http))
    downstream = create_downstream(config, verifier=verifier).test_client()
    bearer = {"Authorization": f"Bearer {access_token}"}
    posted = downstream.post("/records", json={"kind": "steps.daily", "data": {"steps": 8412}}, headers=bearer)
    listed = downstream.get("/records", headers=bearer).get_json()
    say(f"4. POST /records -> {posted.status_code}; GET /records -> {len(listed['records'])} record(s) "
        f"for pseudonym {listed['pseudonym']}")

    # 4. what the behavioural side holds
    db = sqlite3.connect(workdir / "downstream.sqlite3")
    rows = db.execute("SELECT pseudonym, client_id, kind, data FROM records").fetchall()
    db.close()
    raw = b"".join(p.read_bytes() for p in workdir.glob("downstream.sqlite3*"))
    say(f"5. downstream rows: {rows}")
    say(f"6. e-mail anywhere in the downstream database: {'YES' if EMAIL.encode() in raw else 'no'}")
    return {"pseudonym": listed["pseudonym"], "rows": rows, "email_in_downstream": EMAIL.encode() in raw,
            "posted": posted.status_code}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="downstream-demo-") as tmp:
        result = run(Path(tmp))
    return 0 if result["posted"] == 201 and not result["email_in_downstream"] else 1


if __name__ == "__main__":
    sys.exit(main())
