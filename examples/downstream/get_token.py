"""``python -m examples.downstream.get_token --client-id ID``: play the app, print an access token.

A minimal native app (RFC 8252): authorization code + PKCE (S256) with a loopback redirect. It
prints the authorization URL (open it in a browser and sign in; in development the identity
service's own development IdP asks only for an e-mail address), catches the redirect on
``http://127.0.0.1:PORT/callback``, checks ``state`` and ``iss`` (RFC 9207), exchanges the code and
prints the token response as JSON on stdout (diagnostics go to stderr).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

Post = Callable[[str, Mapping[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Authorization:
    """One authorization request: the URL to open and what the answer must match."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str


def build_authorization(*, issuer: str, client_id: str, redirect_uri: str, scope: str,
                        resource: str | None = None) -> Authorization:
    """An RFC 7636 S256 authorization request for ``{issuer}/authorize``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
    if resource:
        params["resource"] = resource
    return Authorization(f"{issuer.rstrip('/')}/authorize?{urlencode(params)}", state, verifier, redirect_uri)


def code_from_redirect(query: Mapping[str, str], auth: Authorization, *, issuer: str) -> str:
    """The code of the app's redirect; ``ValueError`` for an error, a wrong state or a wrong ``iss``."""
    if query.get("state") != auth.state:
        raise ValueError("the redirect's state does not match this request")
    if query.get("iss") not in (None, issuer):
        raise ValueError("the redirect comes from another issuer (RFC 9207)")
    if "error" in query:
        raise ValueError(f"authorization failed: {query['error']}")
    code = query.get("code")
    if not code:
        raise ValueError("the redirect carries no code")
    return code


def wait_for_redirect(port: int, *, timeout: float = 300.0) -> dict[str, str]:
    """Serve one request on ``127.0.0.1:port`` (the loopback redirect) and return its query."""
    received: dict[str, str] = {}
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.update({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
            body = b"Signed in. You can close this tab and return to the terminal.\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            done.set()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    server.timeout = 1.0
    try:
        waited = 0.0
        while not done.is_set() and waited < timeout:
            server.handle_request()
            waited += server.timeout
    finally:
        server.server_close()
    if not done.is_set():
        raise TimeoutError("no redirect arrived")
    return received


def requests_post(url: str, form: Mapping[str, str]) -> dict[str, Any]:
    import requests

    response = requests.post(url, data=dict(form), timeout=10, allow_redirects=False)
    return {"status": response.status_code, **response.json()}


def exchange_code(
    *, issuer: str, client_id: str, code: str, auth: Authorization, post: Post = requests_post
) -> dict[str, Any]:
    """POST ``/token`` (authorization_code with the PKCE verifier) and return the JSON answer."""
    return post(f"{issuer.rstrip('/')}/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": auth.redirect_uri,
        "client_id": client_id, "code_verifier": auth.code_verifier})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.downstream.get_token", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issuer", default="http://127.0.0.1:5000")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--port", type=int, default=8765, help="loopback redirect port (register the URI)")
    parser.add_argument("--scope", default="records:read records:write")
    parser.add_argument("--resource", help="the audience (optional when the client has exactly one)")
    args = parser.parse_args(argv)
    auth = build_authorization(issuer=args.issuer, client_id=args.client_id, scope=args.scope,
                               redirect_uri=f"http://127.0.0.1:{args.port}/callback", resource=args.resource)
    print(f"Open this URL in a browser and sign in:\n\n  {auth.url}\n", file=sys.stderr)
    try:
        code = code_from_redirect(wait_for_redirect(args.port), auth, issuer=args.issuer)
    except (ValueError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    answer = exchange_code(issuer=args.issuer, client_id=args.client_id, code=code, auth=auth)
    if answer.pop("status") != 200:
        print(f"error: the token endpoint refused the code: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
