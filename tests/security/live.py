"""A real server (``scripts/serve.py``, or gunicorn) serving the app on 127.0.0.1 (random free port), and an
HTTP client that logs in.

Used by the race, fault, HTTP parsing and serve.py tests. Everything is bounded: start-up, every request (timeouts) and the
shutdown (TERM, then KILL), and the server is always stopped by the context manager.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Self
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from identity import create_app
from identity.config import Settings
from identity.oauth.audiences import parse_encryption_key
from identity.pairwise import PUBLIC

REPO = Path(__file__).resolve().parents[2]
WSGI = "tests.security.race_wsgi:app"
REDIRECT_URI = "https://app.example.org/callback"
API = "https://api.example.org"
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def drop_file_mode_override() -> None:
    """In the child before exec: root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    """Key material, a store file and one registered public app, as an operator would set them up."""

    root: Path
    keys_dir: Path
    db_path: Path
    issuer: str
    port: int
    client_id: str = ""

    def settings(self) -> Settings:
        return Settings(issuer=self.issuer, env_explicit=True, db_uri=f"sqlite:///{self.db_path}",
                        keys_dir=self.keys_dir, rate_limits_enabled=False, log_level="WARNING")

    def environment(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        env.update({
            "IDENTITY_ENV": "development", "IDENTITY_ISSUER": self.issuer,
            "IDENTITY_DB_URI": f"sqlite:///{self.db_path}", "IDENTITY_KEYS_DIR": str(self.keys_dir),
            "IDENTITY_RATE_LIMITS_ENABLED": "false", "IDENTITY_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
        })
        env.update(extra)
        return env


def deploy(root: Path, key_template: Path, *, db_dir: Path | None = None, audience_key: Any = None) -> Deployment:
    """Copy the keys, create the store and register a public app for ``API`` (audience key given)."""
    keys_dir = root / "keys"
    shutil.copytree(key_template, keys_dir)
    port = free_port()
    db_path = (db_dir or root / "db") / "identity.sqlite3"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(root=root, keys_dir=keys_dir, db_path=db_path, issuer=f"http://127.0.0.1:{port}",
                            port=port)
    app = create_app(deployment.settings())
    try:
        oauth = app.extensions["identity"].oauth
        if audience_key is not None:
            oauth.audiences.add(API, key=parse_encryption_key(audience_key), jwks_uri=None)
        # public subjects: these tests compare the ID tokens' sub with the vault's rows
        client, _ = oauth.clients.register(name="Race app", public=True, redirect_uris=[REDIRECT_URI],
                                           grant_types=None, scopes=["openid", "records:read"],
                                           audiences=[API], subject_type=PUBLIC)
        deployment.client_id = client.client_id
    finally:
        app.extensions["identity"].store.close()
    return deployment


def register_confidential(deployment: Deployment, *, audience: str = API) -> tuple[str, str]:
    """A confidential client (client_credentials, revocation) for ``audience`` and its resource server
    (introspection): (id, secret)."""
    app = create_app(deployment.settings())
    try:
        client, secret = app.extensions["identity"].oauth.clients.register(
            name="Resource server", public=False, redirect_uris=[], grant_types=None, scopes=["records:read"],
            audiences=[audience], introspects=[audience])
        return client.client_id, secret
    finally:
        app.extensions["identity"].store.close()


class Gunicorn:
    """``gunicorn`` with several workers on ``deployment.port``; a context manager."""

    name = "gunicorn"
    merge_stdout = False

    def __init__(self, deployment: Deployment, *, workers: int = 4, threads: int = 2, obey_file_modes: bool = False,
                 env: dict[str, str] | None = None, preload: bool = True, repository_config: bool = False) -> None:
        self.deployment = deployment
        self.repository_config = repository_config
        self.preload = preload
        self.workers = workers
        self.threads = threads
        self.obey_file_modes = obey_file_modes
        self.env = env or {}
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.deployment.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        if self.repository_config:  # the production HTTP settings (worker class, parser); counts as given here
            config = REPO / "gunicorn.conf.py"
        else:
            config = self.deployment.root / "gunicorn.conf.py"
            config.write_text("# empty: keep the repository's gunicorn.conf.py out of the tests\n")
        command = [sys.executable, "-m", "gunicorn", "--config", str(config),
                   "--bind", f"127.0.0.1:{self.deployment.port}", "--workers", str(self.workers),
                   "--threads", str(self.threads), "--timeout", "60", "--graceful-timeout", "3",
                   # longer than any pause between the tests' phases: a pooled connection the server closes
                   # as the client reuses it is a keep-alive race of the test client, not of the service
                   "--keep-alive", "30",
                   "--error-logfile", "-", "--log-level", "info", "--no-control-socket", WSGI]
        if self.preload:
            command.insert(-1, "--preload")
        return command

    def start(self) -> None:
        self.process = subprocess.Popen(self.command(), cwd=REPO, env=self.deployment.environment(**self.env),
                                        stdout=subprocess.PIPE if self.merge_stdout else subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT if self.merge_stdout else subprocess.PIPE,
                                        text=True, start_new_session=True,
                                        preexec_fn=drop_file_mode_override if self.obey_file_modes else None)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n" + "\n".join(self.log[-30:]))
            if len(self.worker_pids()) == self.workers and self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in time:\n" + "\n".join(self.log[-30:]))

    def _read_log(self) -> None:
        assert self.process is not None
        stream = self.process.stdout if self.merge_stdout else self.process.stderr
        assert stream is not None
        for line in stream:
            self.log.append(line.rstrip("\n"))

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def logged(self, *fragments: str, timeout: float = 10.0) -> bool:
        """Whether a log line containing one of ``fragments`` arrives within ``timeout`` (read asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in list(self.log) for fragment in fragments):
                return True
            time.sleep(0.05)
        return False

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            return []

    def wait_for_workers(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids()) == self.workers and self._answers():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} has {len(self.worker_pids())} of {self.workers} workers")

    def reload_workers(self) -> None:
        """SIGHUP: gunicorn replaces every worker (new processes, new store connections)."""
        assert self.process is not None
        before = set(self.worker_pids())
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = set(self.worker_pids())
            if len(now) == self.workers and not now & before:
                return
            time.sleep(0.1)
        raise AssertionError("gunicorn did not replace its workers")

    def crash(self) -> None:
        """SIGKILL to the server and every worker at once (a crash: nothing shuts down), then reap."""
        process = self.process
        if process is None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.process = None

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.process = None


class Serve(Gunicorn):
    """``scripts/serve.py``, the production start command, with ``workers`` workers; a context manager.

    ``threads`` are Python threads per worker; ``repository_config`` has no meaning here (serve.py has
    one configuration). granian logs to stdout, the app to stderr: both are read into ``log``.
    """

    name = "serve.py"
    merge_stdout = True

    def __init__(self, deployment: Deployment, *, workers: int | None = 2, threads: int = 1, app: str = WSGI,
                 args: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(deployment, workers=workers or len(os.sched_getaffinity(0)), threads=threads, **kwargs)
        self.app = app
        self.args = [*(["--workers", str(workers)] if workers else []), "--threads", str(threads), *args]

    def command(self) -> list[str]:
        return [sys.executable, str(REPO / "scripts" / "serve.py"), "--bind", f"127.0.0.1:{self.deployment.port}",
                "--app", self.app, *self.args]

    def exporter_pid(self) -> int | None:
        """The metrics exporter's PID (``IDENTITY_METRICS_BIND``), as serve.py announces it; it is no worker."""
        for line in list(self.log):
            found = re.search(r"\(exporter PID (\d+)\)", line)
            if found:
                return int(found.group(1))
        return None

    def worker_pids(self) -> list[int]:
        exporter = self.exporter_pid()
        return [pid for pid in super().worker_pids() if pid != exporter]


# -- a person logging in over HTTP ------------------------------------------------------------------

def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def claims_of(jws: str) -> dict[str, Any]:
    segment = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@dataclass
class Login:
    """One login's progress: the parked request, then the code, then the tokens."""

    email: str
    verifier: str = ""
    login_url: str = ""
    code: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def pseudonym(self) -> str | None:
        return claims_of(self.tokens["id_token"])["sub"] if "id_token" in self.tokens else None


class LoginClient:
    """The three HTTP steps of a login against ``base`` (one ``requests.Session`` per thread)."""

    def __init__(self, base: str, client_id: str) -> None:
        self.base = base
        self.client_id = client_id
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def authorize(self, login: Login) -> None:
        login.verifier, challenge = pkce_pair()
        response = self.http.get(f"{self.base}/authorize", allow_redirects=False, timeout=REQUEST_TIMEOUT, params={
            "response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI, "state": "s",
            "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid records:read"})
        if response.status_code != 303:
            raise LoginFailed(response)
        login.login_url = response.headers["Location"]

    def complete(self, login: Login) -> None:
        """The upstream login finishing: the vault maps the e-mail, the app gets a code."""
        response = self.http.get(f"{self.base}{login.login_url}", params={"email": login.email},
                                 allow_redirects=False, timeout=REQUEST_TIMEOUT)
        code = query_of(response.headers.get("Location", "")).get("code") if response.status_code == 303 else None
        if not code:
            raise LoginFailed(response)
        login.code = code

    def exchange(self, login: Login) -> None:
        response = self.http.post(f"{self.base}/token", timeout=REQUEST_TIMEOUT, data={
            "grant_type": "authorization_code", "code": login.code, "redirect_uri": REDIRECT_URI,
            "client_id": self.client_id, "code_verifier": login.verifier})
        if response.status_code != 200:
            raise LoginFailed(response)
        login.tokens = response.json()

    def log_in(self, email: str) -> Login:
        login = Login(email)
        self.authorize(login)
        self.complete(login)
        self.exchange(login)
        return login

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.http.post(f"{self.base}/token", timeout=REQUEST_TIMEOUT, data={
            "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id})


def fire_at_once(port: int, requests_bytes: list[bytes], timeout: float = 60.0) -> list[int]:
    """Open every connection first, then send every request in one tight loop (all within about a
    millisecond, unlike threads), then read each status code: the sharpest race a client can make."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=timeout) for _ in requests_bytes]
    try:
        for sock, data in zip(sockets, requests_bytes):
            sock.sendall(data)
        statuses = []
        for sock in sockets:
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            statuses.append(int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0)
        return statuses
    finally:
        for sock in sockets:
            sock.close()


def form_post(path: str, form: dict[str, str]) -> bytes:
    body = urlencode(form).encode("ascii")
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii") + body


class LoginFailed(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"{response.status_code} {response.text[:300]}")
        self.response = response


# -- what the store holds, read directly (read-only) ------------------------------------------------

def identity_rows(db_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'identities'").fetchone():
            return []  # created on the first login
        return [dict(row) for row in conn.execute("SELECT * FROM identities")]
    finally:
        conn.close()


def query(db_path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of a read-only query on the store file."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def grant_row(db_path: Path, refresh_token: str) -> dict[str, Any]:
    """The grant whose refresh-token family a token names (``identity.oauth.grants``: its family id's hash)."""
    family = hashlib.sha256(refresh_token.split(".")[0].encode()).hexdigest()
    return query(db_path, "SELECT * FROM grants WHERE refresh_family = ?", family)[0]


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def assert_identities_whole(rows: list[dict[str, Any]]) -> None:
    """Every identity record is complete and unique: nothing half-written, nothing duplicated."""
    pattern = re.compile(r"^[a-z2-7]{26}$")
    for row in rows:
        assert pattern.fullmatch(row["pseudonym"]), row
        assert row["status"] == "active" and row["blind_index"] and row["sealed_email"], row
        assert isinstance(row["created_at"], int), row
    assert len({r["blind_index"] for r in rows}) == len(rows)
    assert len({r["pseudonym"] for r in rows}) == len(rows)


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
