"""``make demo`` (``python -m examples.demo``): see the whole thing work, in one command.

Serves on 127.0.0.1, for development only:

* the identity service on :5000 with its development IdP (``IDENTITY_ENV=development``, a loopback
  issuer; the IdP asks only for an e-mail address);
* the example downstream service on :5001 (``examples/downstream``), registered as an audience;
* the example app on :8000 (``examples/webapp``), registered as a third-party public client with its
  redirect and post-logout redirect URIs.

Open http://127.0.0.1:8000, sign in with any address, allow the app, see the claims it verified, call
the downstream service, look at http://127.0.0.1:5000/account, sign out. Keys, databases and the app's
client id live in ``var/demo/``: a second run knows the same people. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from werkzeug.serving import BaseWSGIServer, make_server

from examples.downstream import DownstreamConfig
from examples.downstream import create_app as create_downstream
from examples.webapp import WebAppConfig
from examples.webapp import create_app as create_webapp
from identity.verify import generate_audience_key

HOST = "127.0.0.1"
APP_NAME = "Example app"
APP_SCOPES = ["openid", "records:read", "records:write"]


@dataclass
class Demo:
    """The three apps, configured and registered, ready to serve."""

    identity: Any
    downstream: Any
    webapp: Any
    client_id: str


def prepare(workdir: Path, *, issuer: str, records_url: str, app_url: str) -> Demo:
    """Keys, databases and registrations in ``workdir`` (made once, reused), and the three apps."""
    from identity import create_app
    from identity.config import load_settings
    from identity.keys import init_keys
    from identity.keys.files import KeyPaths

    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "keys"
    if not KeyPaths(keys).manifest.exists():
        init_keys(keys, passphrase=None, dpo_passphrase=None, development=True, now=time.time())
    settings = load_settings({"IDENTITY_ENV": "development", "IDENTITY_ISSUER": issuer, "IDENTITY_KEYS_DIR": str(keys),
                              "IDENTITY_DB_URI": f"sqlite:///{(workdir / 'identity.sqlite3').resolve()}",
                              "IDENTITY_LOG_LEVEL": os.environ.get("IDENTITY_LOG_LEVEL", "WARNING")})
    identity = create_app(settings)
    svc = identity.extensions["identity"]
    _register_audience(svc, records_url, workdir / "downstream-keys")
    client_id = _register_app(svc, workdir / "demo.json", app_url=app_url, audience=records_url)
    svc.store.close()
    downstream = create_downstream(DownstreamConfig(issuer=issuer, audience=records_url,
                                                    keys_dir=workdir / "downstream-keys",
                                                    db_path=workdir / "downstream.sqlite3"))
    webapp = create_webapp(WebAppConfig(issuer=issuer, client_id=client_id, base_url=app_url, records_url=records_url,
                                        audience=records_url))
    return Demo(identity=identity, downstream=downstream, webapp=webapp, client_id=client_id)


def _register_audience(svc: Any, audience: str, keys_dir: Path) -> None:
    """The downstream service's key pair (made once) and its audience record, kept in step."""
    from identity.oauth.audiences import parse_encryption_key

    if not any(keys_dir.glob("audience-*.key.pem")):
        generate_audience_key(keys_dir, bits=2048)
    key = parse_encryption_key(next(keys_dir.glob("audience-*.pub.pem")).read_bytes())
    record = svc.oauth.audiences.get(audience)
    if record is None:
        svc.oauth.audiences.add(audience, key=key, jwks_uri=None)
        svc.audit.append(actor="demo", action="audiences.add", details={"audience": audience, "kid": key.kid})
    elif record.kid != key.kid:
        svc.oauth.audiences.update_key(audience, key=key, jwks_uri=None)


def _register_app(svc: Any, state_file: Path, *, app_url: str, audience: str) -> str:
    """The example app's client (third-party, public), registered once for these URLs."""
    wanted = {"app_url": app_url, "audience": audience}
    if state_file.exists():
        saved = json.loads(state_file.read_text())
        client = svc.oauth.clients.get(saved.get("client_id", ""))
        if client is not None and {k: saved.get(k) for k in wanted} == wanted:
            return client.client_id
    client, _ = svc.oauth.clients.register(
        name=APP_NAME, public=True, redirect_uris=[f"{app_url}/callback"], grant_types=None, scopes=APP_SCOPES,
        audiences=[audience], third_party=True, post_logout_redirect_uris=[f"{app_url}/signed-out"])
    svc.audit.append(actor="demo", action="clients.add", details={
        "client_id": client.client_id, "name": client.name, "type": "public", "uses_nonce": False,
        "third_party": True})
    state_file.write_text(json.dumps({"client_id": client.client_id, **wanted}) + "\n")
    return client.client_id


class Servers:
    """Threaded development servers, one per app; stopped together."""

    def __init__(self) -> None:
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def bind(self, port: int) -> BaseWSGIServer:
        holder: dict[str, Callable[..., Any]] = {}

        def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            return holder["app"](environ, start_response)

        server = make_server(HOST, port, dispatch, threaded=True)
        server.app_holder = holder  # type: ignore[attr-defined]  # ours, on werkzeug's server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._servers.append((server, thread))
        return server

    @staticmethod
    def url(server: BaseWSGIServer) -> str:
        return f"http://{HOST}:{server.port}"

    def start(self, server: BaseWSGIServer, app: Any) -> None:
        server.app_holder["app"] = app  # type: ignore[attr-defined]  # set in bind()
        next(t for s, t in self._servers if s is server).start()

    def stop(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            if thread.is_alive():
                thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"), help="keys, databases, client id")
    parser.add_argument("--identity-port", type=int, default=5000)
    parser.add_argument("--records-port", type=int, default=5001)
    parser.add_argument("--app-port", type=int, default=8000)
    args = parser.parse_args(argv)
    servers = Servers()
    try:
        sites = [servers.bind(p) for p in (args.identity_port, args.records_port, args.app_port)]
    except OSError as exc:
        print(f"demo: cannot listen on 127.0.0.1 ({exc}); stop `make run` or pass other --*-port values",
              file=sys.stderr)
        servers.stop()
        return 2
    issuer, records_url, app_url = (servers.url(s) for s in sites)
    demo = prepare(args.workdir, issuer=issuer, records_url=records_url, app_url=app_url)
    for server, app in zip(sites, (demo.identity, demo.downstream, demo.webapp), strict=True):
        servers.start(server, app)
    print(f"identity service  {issuer}  (development IdP: any e-mail address signs in)\n"
          f"records service   {records_url}\n"
          f"example app       {app_url}   <- open this: sign in, allow, call the records service, sign out\n"
          f"your account      {issuer}/account\n"
          f"state in {args.workdir}/; Ctrl-C stops", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
