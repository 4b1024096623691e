"""Rate limits (identity.web.ratelimit): brute force at the token endpoint without locking valid clients out,
floods of /authorize and of the login callback; 429 with Retry-After; addresses behind trusted proxies, IPv6
per /64; nothing counted that should not be; production refuses per-process counters with several workers."""

from __future__ import annotations

import dataclasses
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from identity import create_app
from identity.addresses import parse_trusted_proxies
from identity.config import ConfigError
from identity.oauth.audiences import parse_encryption_key
from identity.web import ratelimit
from identity.web.token_fast_path import TokenFastPath
from tests.conftest import API, REDIRECT_URI
from tests.oauth_helpers import pkce_pair
from tests.test_oauth_flow import basic
from tests.upstream_fixtures import development

ATTACKER = {"REMOTE_ADDR": "203.0.113.7"}
NEIGHBOUR = {"REMOTE_ADDR": "198.51.100.20"}
PER_CLIENT = int(ratelimit.CLIENT_AUTH_FAILURES_PER_CLIENT.split()[0])
PER_ADDRESS = int(ratelimit.CLIENT_AUTH_FAILURES_PER_ADDRESS.split()[0])


def budget(limit: str) -> int:
    return int(limit.split()[0])


@pytest.fixture
def oauth(limited_app):
    return limited_app.extensions["identity"].oauth


def confidential(oauth, name="Nightly job"):
    return oauth.clients.register(name=name, public=False, redirect_uris=[], grant_types=None,
                                  scopes=["records:read"], audiences=[API])


@pytest.fixture
def machine(oauth):
    return confidential(oauth)


@pytest.fixture
def http(limited_app):
    return limited_app.test_client()


@pytest.fixture(params=["fast path", "flask"])
def route(request, limited_app, http):
    """``http`` sends ``POST /token`` through the token fast path, or through Flask (it has a cookie)."""
    fast = limited_app.wsgi_app
    while not isinstance(fast, TokenFastPath):
        fast = fast._next
    through_flask: list[str] = []
    flask_app = fast._next

    def spy(environ, start_response):
        through_flask.append(environ["PATH_INFO"])
        return flask_app(environ, start_response)

    fast._next = spy
    if request.param == "flask":
        http.set_cookie("route", "flask")
    yield request.param
    if request.param == "fast path":
        assert fast.enabled is True and "/token" not in through_flask  # on with the limits installed
    else:
        assert "/token" in through_flask


def client_credentials(http, client_id, secret, environ=ATTACKER, headers=None):
    return http.post("/token", data={"grant_type": "client_credentials"},
                     headers={**basic(client_id, secret), **(headers or {})}, environ_base=environ)


def secret_checks(oauth, monkeypatch) -> list[str]:
    """Records every secret the registry compares (to see which guesses were checked)."""
    checked: list[str] = []
    original = oauth.clients.secret_matches

    def spy(client, presented):
        checked.append(presented)
        return original(client, presented)

    monkeypatch.setattr(oauth.clients, "secret_matches", spy)
    return checked


# -- client authentication ------------------------------------------------------------------------

def test_the_lockout_reproduction_now_serves_the_valid_client(http, machine, route):
    """Issue 15: 20 failures with client_id=nobody from one address used to refuse every client there."""
    client, secret = machine
    for i in range(20):
        assert client_credentials(http, "nobody", f"guess-{i}").status_code in (401, 429)
    assert client_credentials(http, client.client_id, secret).status_code == 200
    post = http.post("/token", data={"grant_type": "client_credentials", "client_id": client.client_id,
                                     "client_secret": secret}, environ_base=ATTACKER)
    assert post.status_code == 200  # client_secret_post as well


def test_guessing_one_clients_secret_is_stopped_before_the_secret_is_checked(http, oauth, machine, route,
                                                                              monkeypatch):
    client, secret = machine
    checked = secret_checks(oauth, monkeypatch)
    answers = [client_credentials(http, client.client_id, f"guess-{i}").status_code
               for i in range(PER_CLIENT)]
    assert answers == [401] * PER_CLIENT
    blocked = client_credentials(http, client.client_id, "guess-last")
    assert blocked.status_code == 429
    assert blocked.json["error"] == "too_many_requests"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert blocked.headers["Cache-Control"] == "no-store" and blocked.mimetype == "application/json"
    # the right secret from that address gets the same answer: a lucky guess is neither checked nor confirmed
    assert client_credentials(http, client.client_id, secret).status_code == 429
    assert len(checked) == PER_CLIENT
    # the client itself, from its own address, is not refused
    assert client_credentials(http, client.client_id, secret, NEIGHBOUR).status_code == 200


def test_failures_with_a_victims_client_id_from_elsewhere_never_refuse_the_victim(http, machine, route):
    client, secret = machine
    for i in range(3 * PER_CLIENT):
        client_credentials(http, client.client_id, f"guess-{i}")
    assert client_credentials(http, client.client_id, secret, NEIGHBOUR).status_code == 200


def test_an_address_failing_across_clients_gets_one_more_guess_per_untried_client(http, oauth, machine):
    client, secret = machine
    other, other_secret = confidential(oauth, "Billing job")
    for n in range(PER_ADDRESS // PER_CLIENT):  # spend the address's budget with unknown client ids
        for i in range(PER_CLIENT):
            assert client_credentials(http, f"unknown-{n}", f"guess-{i}").status_code == 401
    assert client_credentials(http, "unknown-0", "again").status_code == 429
    # an untried client's guess is still checked (once) ...
    assert client_credentials(http, client.client_id, "guess").status_code == 401
    blocked = client_credentials(http, client.client_id, "guess-2")
    assert blocked.status_code == 429 and "from your address" in blocked.json["error_description"]
    # ... and a client with no failures from this address is served: other clients' failures never refuse it
    assert client_credentials(http, other.client_id, other_secret).status_code == 200
    assert client_credentials(http, client.client_id, secret, NEIGHBOUR).status_code == 200


def test_requests_without_a_secret_guess_nothing_and_are_never_refused(http, oauth, public_app):
    for i in range(PER_CLIENT + 2):  # a public client has no secret: presenting one fails
        client_credentials(http, public_app.client_id, f"guess-{i}")
    assert client_credentials(http, public_app.client_id, "guess").status_code == 429
    answer = http.post("/token", data={"grant_type": "client_credentials", "client_id": public_app.client_id},
                       environ_base=ATTACKER)
    assert answer.status_code == 400 and answer.json["error"] == "unauthorized_client"  # authenticated, not 429


def test_revoke_and_introspect_share_the_budget(http, machine):
    client, secret = machine
    half = PER_CLIENT // 2
    for i in range(half):
        assert http.post("/introspect", data={"token": "x"}, headers=basic(client.client_id, f"g{i}"),
                         environ_base=ATTACKER).status_code == 401
    for i in range(PER_CLIENT - half):
        data = {"token": "x", "client_id": client.client_id, "client_secret": f"p{i}"}
        assert http.post("/revoke", data=data, environ_base=ATTACKER).status_code == 401
    assert client_credentials(http, client.client_id, secret).status_code == 429
    refused = http.post("/introspect", data={"token": "x"}, headers=basic(client.client_id, secret),
                        environ_base=ATTACKER)
    assert refused.status_code == 429 and refused.json["error"] == "too_many_requests"
    assert http.post("/revoke", data={"token": "x"}, headers=basic(client.client_id, secret),
                     environ_base=NEIGHBOUR).status_code == 200


def test_successes_and_grant_errors_cost_nothing(http, machine):
    client, secret = machine
    for _ in range(PER_ADDRESS + 5):
        assert client_credentials(http, client.client_id, secret).status_code == 200
        refused = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "nope"},
                            headers=basic(client.client_id, secret), environ_base=ATTACKER)
        assert refused.status_code == 400  # unauthorized_client / invalid_grant: authenticated, not counted
    assert client_credentials(http, client.client_id, "wrong").status_code == 401


# -- addresses: IPv6 per /64, trusted proxies --------------------------------------------------------

def test_a_64_sweep_is_limited(http, machine, route):
    client, secret = machine
    sweep = [{"REMOTE_ADDR": f"2001:db8:1:2:{i:x}:{i * 7:x}::{i + 1:x}"} for i in range(PER_CLIENT + 1)]
    answers = [client_credentials(http, client.client_id, f"guess-{i}", where).status_code
               for i, where in enumerate(sweep)]
    assert answers == [401] * PER_CLIENT + [429]
    next_64 = {"REMOTE_ADDR": "2001:db8:1:3::1"}
    assert client_credentials(http, client.client_id, secret, next_64).status_code == 200  # someone else


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address(http, machine):
    client, _ = machine
    for i in range(PER_CLIENT):
        client_credentials(http, client.client_id, f"guess-{i}", {"REMOTE_ADDR": "::ffff:203.0.113.7"})
    assert client_credentials(http, client.client_id, "guess").status_code == 429


def test_an_authorize_flood_from_one_64_is_limited(http, public_app):
    for i in range(budget(ratelimit.AUTHORIZE)):
        http.get("/authorize", query_string=authorize_params(public_app),
                 environ_base={"REMOTE_ADDR": f"2001:db8:5:6::{i + 1:x}"})
    blocked = http.get("/authorize", query_string=authorize_params(public_app),
                       environ_base={"REMOTE_ADDR": "2001:db8:5:6:ffff::1"})
    assert blocked.status_code == 429


def test_a_spoofed_forwarded_for_is_counted_against_the_peer_by_default(http, machine, route, caplog):
    client, secret = machine
    caplog.set_level(logging.WARNING, "identity.web.ratelimit")
    answers = [client_credentials(http, client.client_id, f"guess-{i}",
                                  headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
               for i in range(PER_CLIENT + 1)]
    assert answers == [401] * PER_CLIENT + [429]
    assert client_credentials(http, client.client_id, secret, NEIGHBOUR).status_code == 200
    warnings = [r for r in caplog.records if "IDENTITY_TRUSTED_PROXIES is not set" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not per request


@pytest.fixture
def proxied_app(settings, broker, clock, audience_keys):
    """Rate limits on, behind proxies in 10.0.0.0/8."""
    application = create_app(dataclasses.replace(settings, rate_limits_enabled=True,
                                                 trusted_proxies=parse_trusted_proxies("10.0.0.0/8")),
                             login_broker=broker, clock=clock)
    keys = audience_keys[API]
    application.extensions["identity"].oauth.audiences.add(keys.uri, key=parse_encryption_key(keys.public_pem),
                                                           jwks_uri=None)
    yield application
    application.extensions["identity"].store.close()


def test_behind_trusted_proxies_a_spoof_from_an_untrusted_peer_is_counted_against_the_peer(proxied_app):
    client, secret = confidential(proxied_app.extensions["identity"].oauth)
    http = proxied_app.test_client()
    answers = [client_credentials(http, client.client_id, f"guess-{i}",
                                  headers={"X-Forwarded-For": f"192.0.2.{i}, 10.0.0.2"}).status_code
               for i in range(PER_CLIENT + 1)]
    assert answers == [401] * PER_CLIENT + [429]


def test_behind_trusted_proxies_clients_sharing_the_proxy_keep_their_own_budgets(proxied_app):
    """The attack of issue 15 behind a proxy: failing with the victim's client_id from the proxy's address."""
    client, secret = confidential(proxied_app.extensions["identity"].oauth)
    http = proxied_app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for i in range(2 * PER_CLIENT):
        client_credentials(http, client.client_id, f"guess-{i}", proxy,
                           headers={"X-Forwarded-For": "203.0.113.7, 10.1.2.3"})
    assert client_credentials(http, client.client_id, "guess", proxy,
                              headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429
    assert client_credentials(http, client.client_id, secret, proxy,
                              headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 200
    assert client_credentials(http, client.client_id, secret, proxy,  # a malformed header: the proxy's own
                              headers={"X-Forwarded-For": "not-an-address"}).status_code == 200


# -- browser endpoints ------------------------------------------------------------------------------

def authorize_params(app_client):
    _, challenge = pkce_pair()
    return {"response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid"}


def test_authorize_floods_are_stopped_with_an_error_page(http, public_app):
    for _ in range(budget(ratelimit.AUTHORIZE)):
        answer = http.get("/authorize", query_string=authorize_params(public_app), environ_base=ATTACKER)
        assert answer.status_code == 303
    blocked = http.get("/authorize", query_string=authorize_params(public_app), environ_base=ATTACKER)
    assert blocked.status_code == 429 and blocked.mimetype == "text/html"
    assert "Location" not in blocked.headers and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert "Too many" in blocked.get_data(as_text=True)
    assert http.post("/authorize", data=authorize_params(public_app), environ_base=ATTACKER).status_code == 429
    assert http.get("/authorize", query_string=authorize_params(public_app), environ_base=NEIGHBOUR).status_code == 303


def test_login_callback_floods_are_stopped(settings, tmp_path):
    """The callback exists when the upstream broker is installed (here: the development IdP)."""
    app = create_app(dataclasses.replace(development(settings), rate_limits_enabled=True))
    http = app.test_client()
    try:
        answers = [http.get("/login/callback?state=forged&code=x", environ_base=ATTACKER).status_code
                   for _ in range(budget(ratelimit.LOGIN_CALLBACK))]
        assert set(answers) == {400}
        blocked = http.get("/login/callback?state=forged&code=x", environ_base=ATTACKER)
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert http.get("/login/callback?state=forged", environ_base=NEIGHBOUR).status_code == 400
    finally:
        app.extensions["identity"].store.close()


def test_email_change_floods_are_stopped(http):
    answers = {http.post("/me/email/change", data={"action": "start"}, environ_base=ATTACKER).status_code
               for _ in range(budget(ratelimit.EMAIL_CHANGE))}
    assert answers == {400}  # no CSRF token: refused, and counted all the same
    blocked = http.post("/me/email/change", data={"action": "start"}, environ_base=ATTACKER)
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert http.post("/me/email/change", data={"action": "start"}, environ_base=NEIGHBOUR).status_code == 400


# -- the limiter itself -----------------------------------------------------------------------------

def test_switched_off_means_no_limit(settings):
    app = create_app(settings)  # the shared settings switch rate limiting off
    try:
        assert ratelimit.EXTENSION not in app.extensions
        answers = {client_credentials(app.test_client(), "unknown-client", "wrong").status_code
                   for _ in range(PER_ADDRESS + 5)}
        assert answers == {401}
    finally:
        app.extensions["identity"].store.close()


def test_unusable_storage_is_refused_at_start_naming_the_variable(settings):
    for uri in ("bogus://x", "memcached://127.0.0.1:1"):  # no such scheme; no memcached driver installed
        with pytest.raises(ConfigError, match="IDENTITY_RATE_LIMIT_STORAGE_URI"):
            create_app(dataclasses.replace(settings, rate_limits_enabled=True, rate_limit_storage_uri=uri))
    # redis:// has its driver (requirements.txt): accepted at start (it connects on first use)
    app = create_app(dataclasses.replace(settings, rate_limits_enabled=True,
                                         rate_limit_storage_uri="redis://127.0.0.1:1"))
    app.extensions["identity"].store.close()


def test_a_failing_counter_store_fails_open_and_logs(http, machine, limited_app, monkeypatch, caplog):
    client, secret = machine
    for i in range(PER_CLIENT):
        client_credentials(http, client.client_id, f"guess-{i}")
    storage = limited_app.extensions[ratelimit.EXTENSION].limiter.storage

    def broken(*args, **kwargs):
        raise ConnectionError("counter storage down")

    monkeypatch.setattr(storage, "get", broken)
    monkeypatch.setattr(storage, "incr", broken)
    assert client_credentials(http, client.client_id, secret).status_code == 200
    assert client_credentials(http, client.client_id, "wrong").status_code == 401
    assert "rate limit storage failed" in caplog.text


@pytest.mark.usefixtures("token_path")
def test_both_token_paths_answer_the_budget_alike(http, oauth, machine):
    """The fast path and Flask's view give the same 401s, 429 (Retry-After) and 200 (``token_path`` compares)."""
    client, secret = machine
    answers = [client_credentials(http, client.client_id, f"guess-{i}").status_code for i in range(PER_CLIENT + 1)]
    assert answers == [401] * PER_CLIENT + [429]
    other, other_secret = confidential(oauth, "Other job")
    assert client_credentials(http, other.client_id, other_secret).status_code == 200


def test_no_request_hooks_so_the_token_fast_path_stays_available(limited_app):
    assert not any(limited_app.before_request_funcs.values())
    assert not any(limited_app.teardown_request_funcs.values())
    assert [f.__qualname__ for f in limited_app.after_request_funcs[None]] == [
        "install_security_headers.<locals>._headers"]


# -- production refuses per-process counters with several workers -------------------------------------

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {"IDENTITY_ENV": "production", "IDENTITY_ISSUER": "https://id.example.test",
                  "IDENTITY_KEYS_PASSPHRASE": "pass", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.test",
                  "IDENTITY_UPSTREAM_CLIENT_ID": "identity", "IDENTITY_UPSTREAM_CLIENT_SECRET": "upstream-secret"}


def gunicorn(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The production command (the repository's gunicorn.conf.py), on a free port, run until it exits."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_") and k != "WEB_CONCURRENCY"}
    environment.update(PRODUCTION_ENV, IDENTITY_KEYS_DIR=str(tmp_path / "keys"),
                       IDENTITY_DB_URI=f"sqlite:///{tmp_path / 'identity.sqlite3'}", **env)
    return subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0",
                           "--no-control-socket", *args, "wsgi:app"],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)


def test_production_refuses_per_process_counters_with_several_workers_and_says_why(tmp_path):
    done = gunicorn(tmp_path, "--workers", "2")
    assert done.returncode == 1
    reason = [line for line in done.stderr.splitlines() if line.startswith("refusing to start:")]
    assert reason == ["refusing to start: IDENTITY_RATE_LIMIT_STORAGE_URI is memory://, which counts in each "
                      "process, and production would run 2 workers: every rate limit would be 2 times the "
                      "documented one; set shared storage (mongodb://...) or run one worker"]
    assert "Traceback" not in done.stderr
    counted = gunicorn(tmp_path, WEB_CONCURRENCY="3")  # gunicorn.conf.py's worker count
    assert counted.returncode == 1 and "production would run 3 workers" in counted.stderr


def test_the_worker_check_refuses_only_per_process_counters_in_production_with_several_workers():
    refused = ratelimit.worker_count_refusal(4, PRODUCTION_ENV)
    assert refused and refused.startswith("refusing to start: IDENTITY_RATE_LIMIT_STORAGE_URI")
    assert ratelimit.worker_count_refusal(1, PRODUCTION_ENV) is None
    assert ratelimit.worker_count_refusal(4, {**PRODUCTION_ENV, "IDENTITY_RATE_LIMIT_STORAGE_URI":
                                              "mongodb://db.example.test/limits"}) is None
    assert ratelimit.worker_count_refusal(4, {**PRODUCTION_ENV, "IDENTITY_RATE_LIMITS_ENABLED": "false"}) is None
    assert ratelimit.worker_count_refusal(4, {}) is None  # development
    assert ratelimit.worker_count_refusal(4, {"IDENTITY_ENV": "production"}) is None  # left to the app's start


def test_adding_workers_at_run_time_is_undone_when_refused(monkeypatch):
    """gunicorn's TTIN signal adds a worker: the hook puts the count back and logs why."""
    hooks = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IDENTITY_RATE_LIMIT_STORAGE_URI", raising=False)
    monkeypatch.delenv("IDENTITY_RATE_LIMITS_ENABLED", raising=False)

    class Arbiter:  # gunicorn's num_workers property calls the hook on every change
        def __init__(self) -> None:
            self._count = 1
            self.errors: list[str] = []
            self.log = SimpleNamespace(error=lambda message, *args: self.errors.append(message % args))

        @property
        def num_workers(self) -> int:
            return self._count

        @num_workers.setter
        def num_workers(self, value: int) -> None:
            old, self._count = self._count, value
            hooks["nworkers_changed"](self, value, old)

    server = Arbiter()
    server.num_workers += 1
    assert server.num_workers == 1
    assert server.errors and "production would run 2 workers" in server.errors[0]


def test_serve_py_refuses_per_process_counters_with_several_workers_and_says_why(tmp_path):
    """The production start command checks the same thing before it builds the app or forks a worker."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    environment.update(PRODUCTION_ENV, IDENTITY_KEYS_DIR=str(tmp_path / "keys"),
                       IDENTITY_DB_URI=f"sqlite:///{tmp_path / 'identity.sqlite3'}")
    done = subprocess.run([sys.executable, "scripts/serve.py", "--bind", "127.0.0.1:59999", "--workers", "2"],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "refusing to start: IDENTITY_RATE_LIMIT_STORAGE_URI is memory://, which counts in each process, and "
        "production would run 2 workers")
