"""The token endpoint under load: a production-settings service on 127.0.0.1, driven by wrk.

Used by ``bench/bench.py`` (and handy on its own for profiling: ``python bench/bench_server.py
--serve`` sets everything up, prints the wrk command lines and waits for Ctrl-C).

Everything lives in a temporary directory: key material made by ``scripts/keys.py init`` (production,
passphrase-encrypted, the DPO private key moved out of the keys directory as the README says), an
audience registered with ``scripts/audiences.py``, two confidential clients registered with
``scripts/clients.py``, the SQLite store, and the service started with ``scripts/serve.py`` exactly as
the README's production command does (``GunicornService``: gunicorn with ``gunicorn.conf.py``, the
reference; ``PeerService``: panva's oidc-provider from ``bench/peer/``, the peer).

``wsgi_app`` (or ``BENCH_WSGI_APP``, for profiling) makes the server serve another app spec with the same
settings: ``bench/bench.py`` serves ``bench/ceiling_app.py`` that way. ``cpus`` pins a server to cores
(``taskset -c``), ``wrk_cpus`` the load generator.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LUA = ROOT / "bench" / "token.lua"
ISSUER = "https://id.bench.example"
AUDIENCE = "https://records.bench.example"
SCOPE = "records:read"
REDIRECT_URI = "https://app.bench.example/callback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (seconds); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class ClientCreds:
    client_id: str
    client_secret: str

    @property
    def basic(self) -> str:
        quote = urllib.parse.quote
        raw = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass
class WrkResult:
    grant: str
    concurrency: int
    requests: int
    seconds: float
    server_cpu_seconds: float
    loadgen_cpu_seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    sampled: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def rps_per_core(self) -> float:
        """Requests per second of server CPU time: what one fully busy core would serve."""
        return self.requests / self.server_cpu_seconds if self.server_cpu_seconds else 0.0

    @property
    def server_cores_busy(self) -> float:
        return self.server_cpu_seconds / self.seconds


class BenchService:
    """Key material, audience, clients, store and gunicorn in ``workdir``; stop() ends every process."""

    def __init__(self, workdir: Path, *, port: int | None = None, server_args: list[str] | None = None,
                 extra_env: dict[str, str] | None = None, wsgi_app: str | None = None, cpus: str | None = None,
                 wrk_cpus: str | None = None, workers: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.cpus, self.wrk_cpus, self.workers = cpus, wrk_cpus, workers
        self.wsgi_app = wsgi_app or os.environ.get("BENCH_WSGI_APP", "wsgi:app")
        self.port = port or free_port()
        self.server_args = server_args or []
        self.keys_dir = self.workdir / "keys"
        self.dpo_dir = self.workdir / "dpo-offline"
        self.db_path = self.workdir / "identity.sqlite3"
        self.audience_dir = self.workdir / "audience-keys"
        self.samples_dir = self.workdir / "samples"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "server.log"
        self.cc_client: ClientCreds | None = None
        self.web_client: ClientCreds | None = None
        self.audience_private_key: Path | None = None
        self.audience_public_key: Path | None = None
        passphrase = secrets.token_urlsafe(24)
        self.dpo_passphrase = secrets.token_urlsafe(24)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        self.env.update({
            "IDENTITY_ENV": "production",
            "IDENTITY_ISSUER": ISSUER,
            "IDENTITY_DB_URI": f"sqlite:///{self.db_path}",
            "IDENTITY_KEYS_DIR": str(self.keys_dir),
            "IDENTITY_KEYS_PASSPHRASE": passphrase,
            # Never contacted: /token does not talk to the upstream IdP.
            "IDENTITY_UPSTREAM_ISSUER": "https://upstream.bench.example",
            "IDENTITY_UPSTREAM_CLIENT_ID": "bench",
            "IDENTITY_UPSTREAM_CLIENT_SECRET": secrets.token_urlsafe(24),
            "IDENTITY_OPERATOR": "bench",
            **(extra_env or {}),
        })

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- set-up through the operators' CLIs ---------------------------------------------------

    def _cli(self, *args: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        env = {**self.env, **(extra_env or {})}
        done = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout)

    def init_keys(self) -> None:
        """As the README says: the DPO key set made "offline" (``dpo-create``), its public key installed by init."""
        self._cli("scripts/keys.py", "dpo-create", "--out", str(self.dpo_dir), "--holder", "dpo", "--holder",
                  "officer", "--holder", "backup",  # no terminal here: one passphrase for all (not production)
                  extra_env={"IDENTITY_ENV": "development", "IDENTITY_DPO_KEY_PASSPHRASE": self.dpo_passphrase})
        self._cli("scripts/keys.py", "init", "--dpo-public", str(self.dpo_dir / "dpo_public.pem"))

    def dpo_shares(self) -> list[Path]:
        """Two of the three shares: what a breach run needs."""
        return sorted(self.dpo_dir.glob("dpo_share_*.json"))[:2]

    def set_up_like(self, other: BenchService) -> None:
        """Serve ``other``'s key material, store and clients (set up once) from this service's own port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env, self.samples_dir = other.env, other.samples_dir
        self.cc_client, self.web_client = other.cc_client, other.web_client
        self.audience_private_key, self.audience_public_key = other.audience_private_key, other.audience_public_key

    def set_up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.samples_dir.mkdir(exist_ok=True)
        self.init_keys()
        keygen = self._cli("scripts/audiences.py", "keygen", "--out", str(self.audience_dir))
        self.audience_private_key = Path(keygen["private_key"])
        self.audience_public_key = Path(keygen["public_key"])
        self._cli("scripts/audiences.py", "add", "--audience", AUDIENCE, "--encryption-key", keygen["public_key"])
        cc = self._cli("scripts/clients.py", "add", "--name", "Bench job", "--scope", SCOPE, "--audience", AUDIENCE)
        self.cc_client = ClientCreds(cc["client_id"], cc["client_secret"])
        web = self._cli("scripts/clients.py", "add", "--name", "Bench web app", "--grant", "authorization_code",
                        "--grant", "refresh_token", "--redirect-uri", REDIRECT_URI, "--scope", SCOPE,
                        "--audience", AUDIENCE)
        self.web_client = ClientCreds(web["client_id"], web["client_secret"])

    def seed_refresh_tokens(self, count: int, path: Path, *, subjects: int = 200) -> None:
        """``count`` live refresh tokens of the web client, written one per line to ``path``.

        Made by the service's own code (vault, grants), as the code exchange makes them; the seeding
        connection skips fsync and commits in batches (seeding only: the service never does this).
        """
        code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from identity.cli import services_from_environment
from identity.oauth.grants import new_refresh_token
from identity.oauth.records import new_secret_value
from identity.store.migrate import migrate
svc = services_from_environment()
conn = svc.store._connection(True)
conn.execute("PRAGMA synchronous=OFF")
fast = svc.store._connection(False)
fast.execute("PRAGMA synchronous=OFF")
subjects = [svc.vault.pseudonymise(f"bench{{i}}@bench.example").identity.pseudonym for i in range({subjects})]
migrate(svc.store)  # tables made now: the batches' transactions below must be the only writes in flight
out = open({str(path)!r}, "w")
done = 0
while done < {count}:
    fast.execute("BEGIN")  # grants are created with non-durable writes (identity.oauth.grants)
    for i in range(min(5000, {count} - done)):
        refresh = new_refresh_token()
        svc.oauth.grants.create(grant_id=new_secret_value(), client_id={self.web_client.client_id!r},
                                subject=subjects[(done + i) % len(subjects)], audience={AUDIENCE!r},
                                scope={SCOPE!r}, refresh_token=refresh)
        out.write(refresh + "\\n")
    fast.execute("COMMIT")
    done += min(5000, {count} - done)
out.close()
conn.execute("PRAGMA synchronous=FULL")
"""
        done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"seeding refresh tokens failed: {done.stderr.strip()[-2000:]}")

    def seed_codes(self, count: int, path: Path, *, subjects: int = 200) -> None:
        """``count`` authorization codes of the web client with one PKCE (S256) verifier, written to ``path``
        as whole ``authorization_code`` form bodies, one per line.

        Made by the service's own ``Authorizer.issue_code`` (what ``/authorize`` does once the person has
        logged in), for pseudonyms made by the vault; a code lives at most 60 s (``IDENTITY_CODE_TTL``), so
        the pool is made right before each run. The seeding connection skips fsync (seeding only).
        """
        code = f"""
import base64, hashlib, secrets, sys, urllib.parse
sys.path.insert(0, {str(ROOT)!r})
from identity.cli import services_from_environment
from identity.store.migrate import migrate
svc = services_from_environment()
conn = svc.store._connection(True)
conn.execute("PRAGMA synchronous=OFF")
verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
subjects = [svc.vault.pseudonymise(f"bench{{i}}@bench.example").identity.pseudonym for i in range({subjects})]
doc = {{"client_id": {self.web_client.client_id!r}, "redirect_uri": {REDIRECT_URI!r}, "redirect_uri_given": True,
       "code_challenge": challenge, "audience": {AUDIENCE!r}, "scope": {SCOPE!r}, "nonce": None, "state": None}}
tail = "&redirect_uri=" + urllib.parse.quote({REDIRECT_URI!r}, safe="") + "&code_verifier=" + verifier
migrate(svc.store)  # tables made now: the batch's transaction below must be the only write in flight
out = open({str(path)!r}, "w")
conn.execute("BEGIN")
for i in range({count}):
    location = svc.oauth.authorizer.issue_code(doc, subjects[i % len(subjects)])
    value = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    out.write("grant_type=authorization_code&code=" + value + tail + "\\n")
conn.execute("COMMIT")
out.close()
conn.execute("PRAGMA synchronous=FULL")
"""
        done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"seeding authorization codes failed: {done.stderr.strip()[-2000:]}")

    def breakdown(self, n: int = 400) -> dict[str, float]:
        """Where a token's CPU goes, in-process (µs per call, this process's CPU time): one client_credentials
        request through the app as ``scripts/serve.py`` serves it (the framing layer, the process environment
        in the environ) with the token fast path and without it (Flask's view), the token endpoint, one
        refresh at the endpoint, the minting, the RSA signature and key wrap alone, the issued-token record
        and the refresh's rotation write alone; and what pairwise
        subjects add to a person's token (``issue_access_token`` to a public and a pairwise audience,
        ``subject_for`` cached and not)."""
        assert self.cc_client is not None and self.web_client is not None
        done = subprocess.run([PYTHON, "-c", BREAKDOWN.format(
            root=str(ROOT), n=n, body=self.cc_body(), auth=self.cc_client.basic, audience=AUDIENCE, scope=SCOPE,
            web_id=self.web_client.client_id, web_auth=self.web_client.basic)],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"breakdown failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- the server -----------------------------------------------------------------------------

    SERVER = "serve.py"
    READY_PATH = "/readyz"

    def command(self) -> list[str]:
        """``scripts/serve.py`` as in the README's production command, on 127.0.0.1 only."""
        workers = ["--workers", str(self.workers)] if self.workers else []
        return [PYTHON, str(ROOT / "scripts" / "serve.py"), "--bind", f"127.0.0.1:{self.port}",
                "--app", self.wsgi_app, *workers, *self.server_args]

    def launch_env(self) -> dict[str, str]:
        return self.env

    def start(self) -> None:
        """Start the server and wait until it answers and every worker has forked."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        command = self.command()
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.launch_env(), stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.SERVER} exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.READY_PATH, timeout=2) as response:
                    if response.status == 200 and self._workers_settled():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.SERVER} did not become ready within 60 s")

    def _workers_settled(self) -> bool:
        """Every worker forked: the count has not changed for half a second."""
        count = len(self.worker_pids())
        time.sleep(0.5)
        return count > 0 and len(self.worker_pids()) == count

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def server_cpu(self) -> float:
        if self.proc is None:
            return 0.0
        return cpu_seconds(self.proc.pid) + sum(cpu_seconds(p) for p in self.worker_pids())

    def rss_mb(self) -> dict[str, float]:
        """Resident memory now: each worker (mean) and the supervising process (MB)."""
        workers = [rss_bytes(p) / 2**20 for p in self.worker_pids()]
        return {"per_worker": sum(workers) / len(workers) if workers else 0.0,
                "supervisor": rss_bytes(self.proc.pid) / 2**20 if self.proc else 0.0, "workers": len(workers)}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    # -- load ---------------------------------------------------------------------------------

    def cc_body(self) -> str:
        return f"grant_type=client_credentials&scope={urllib.parse.quote(SCOPE)}"

    def wrk(self, grant: str, concurrency: int, seconds: float, *, pool: Path | None = None,
            sample_every: int = 100, tag: str = "") -> WrkResult:
        """One wrk run; raises if wrk fails. Samples land in samples_dir/<tag>-<thread>.txt."""
        threads = 1
        creds = self.cc_client if grant == "client_credentials" else self.web_client
        assert creds is not None
        source = self.cc_body() if grant == "client_credentials" else str(pool)
        mode = {"client_credentials": "cc", "refresh_token": "refresh", "authorization_code": "form"}[grant]
        prefix = str(self.samples_dir / f"{tag or grant}-c{concurrency}-")
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", str(LUA),
               self.url + "/token", "--", mode, creds.basic,
               source, str(threads), str(sample_every), prefix]
        if self.wrk_cpus:
            cmd = ["taskset", "-c", self.wrk_cpus, *cmd]
        cpu_before = self.server_cpu()
        load_before = os.times()
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        elapsed = time.perf_counter() - started
        load_after = os.times()
        cpu_after = self.server_cpu()
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
        match = re.search(r"^BENCH_JSON (\{.*\})$", done.stdout, re.M)
        if not match:
            raise RuntimeError(f"wrk printed no figures: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        raw = json.loads(match.group(1))
        detail = {k: raw[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout",
                                      "non200", "exhausted")}
        return WrkResult(
            grant=grant, concurrency=concurrency, requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
            server_cpu_seconds=cpu_after - cpu_before,
            loadgen_cpu_seconds=(load_after.children_user + load_after.children_system)
            - (load_before.children_user + load_before.children_system),
            p50_ms=raw["p50_us"] / 1e3, p90_ms=raw["p90_us"] / 1e3, p99_ms=raw["p99_us"] / 1e3,
            max_ms=raw["max_us"] / 1e3,
            errors=raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_timeout"]
            + max(raw["err_status"], raw["non200"]) + raw["exhausted"],
            error_detail=detail, sampled=raw["sampled"], raw={**raw, "wall_seconds": elapsed},
        )

    # -- checking what was issued -------------------------------------------------------------

    def samples(self, tag_prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
        bodies, errors = [], []
        for path in sorted(self.samples_dir.glob(f"{tag_prefix}*.txt")):
            for line in path.read_text().splitlines():
                if line.startswith("ERROR "):
                    errors.append(line[:300])
                elif line.strip():
                    bodies.append(json.loads(line))
        return bodies, errors

    def introspect(self, token: str) -> dict[str, Any]:
        assert self.cc_client is not None
        data = urllib.parse.urlencode({"token": token}).encode()
        req = urllib.request.Request(self.url + "/introspect", data=data, method="POST", headers={
            "Authorization": self.cc_client.basic, "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    def jwks(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/.well-known/jwks.json", timeout=10) as response:
            return json.loads(response.read())


class GunicornService(BenchService):
    """The same service under gunicorn with ``gunicorn.conf.py`` (sync workers): the reference row."""

    SERVER = "gunicorn"

    def command(self) -> list[str]:
        return [str(Path(PYTHON).parent / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{self.port}", "--control-socket", str(self.workdir / "gunicorn.ctl"),
                "--pid", str(self.workdir / "gunicorn.pid"), *self.server_args, self.wsgi_app]

    def launch_env(self) -> dict[str, str]:
        # gunicorn.conf.py counts every core of the machine, not the cores it is pinned to
        return {**self.env, **({"WEB_CONCURRENCY": str(self.workers)} if self.workers else {})}


PEER_DIR = ROOT / "bench" / "peer"
PEER_ISSUER = "https://peer.bench.example"


class PeerService(BenchService):
    """panva's oidc-provider (``bench/peer/``) through its production command, ``NODE_ENV=production node
    server.js``: one Node.js process issuing the same nested token to the same audience key."""

    SERVER = "oidc-provider"
    READY_PATH = "/.well-known/openid-configuration"

    def set_up_peer(self, service: BenchService) -> None:
        """The service's audience public key, a confidential client of its own."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.samples_dir = service.samples_dir
        self.audience_private_key = service.audience_private_key
        self.cc_client = ClientCreds("bench-peer", secrets.token_urlsafe(32))
        public = service.audience_public_key
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        self.env.update({"NODE_ENV": "production", "PEER_PORT": str(self.port), "PEER_ISSUER": PEER_ISSUER,
                         "PEER_AUDIENCE": AUDIENCE, "PEER_SCOPE": SCOPE, "PEER_CLIENT_ID": self.cc_client.client_id,
                         "PEER_CLIENT_SECRET": self.cc_client.client_secret,
                         "PEER_AUDIENCE_PUBLIC_KEY": str(public)})

    def command(self) -> list[str]:
        return ["node", str(PEER_DIR / "server.js")]

    def worker_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []  # one process: it is its own worker

    def server_cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def jwks(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/jwks", timeout=10) as response:
            return json.loads(response.read())

    @staticmethod
    def available() -> str | None:
        """Why the peer cannot run here, or None."""
        if shutil.which("node") is None:
            return "node is not installed"
        if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
            return "bench/peer/node_modules is missing (make bench runs npm ci there)"
        return None


def check_peer_tokens(peer: PeerService, bodies: list[dict[str, Any]], *, at_most: int = 30) -> dict[str, Any]:
    """Decrypt (RSA-OAEP-256/A256GCM, the audience key) and verify (RS256, the peer's JWKS) sampled peer
    tokens with joserfc and PyJWT, and check their claims: the peer issues the shape asked for."""
    import jwt
    from joserfc import jwe
    from joserfc.jwk import RSAKey

    if len(bodies) > at_most:
        bodies = [bodies[i * len(bodies) // at_most] for i in range(at_most)]
    assert peer.audience_private_key is not None and peer.cc_client is not None
    key = RSAKey.import_key(peer.audience_private_key.read_bytes())
    # oidc-provider copies iss and aud into the JWE header (RFC 7519 §5.3 replicated claims): accept them,
    # and check them against the payload below
    registry = jwe.JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"], strict_check_header=False)
    signing = {k["kid"]: jwt.PyJWK(k) for k in peer.jwks()["keys"]}
    valid, problems = 0, []
    for body in bodies:
        try:
            token = body["access_token"]
            decrypted = jwe.decrypt_compact(token, key, registry=registry)
            outer = decrypted.protected
            assert outer["alg"] == "RSA-OAEP-256" and outer["enc"] == "A256GCM", "outer alg/enc"
            inner = decrypted.plaintext.decode("ascii")
            header = jwt.get_unverified_header(inner)
            assert header["alg"] == "RS256", "inner alg"
            claims = jwt.decode(inner, signing[header["kid"]], algorithms=["RS256"], audience=AUDIENCE,
                                issuer=PEER_ISSUER)
            assert claims["client_id"] == peer.cc_client.client_id and claims["scope"] == SCOPE, "claims"
            assert outer.get("iss") == claims["iss"] and outer.get("aud") == claims["aud"], "replicated claims"
            valid += 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported as a problem
            problems.append(f"{type(exc).__name__}: {exc}"[:200])
    return {"checked": len(bodies), "valid": valid, "problems": problems[:5]}


def check_tokens(service: BenchService, bodies: list[dict[str, Any]], *, grant: str,
                 introspect: int = 5, at_most: int = 30) -> dict[str, Any]:
    """Verify sampled token responses with identity.verify and introspect a few; returns counts."""
    if len(bodies) > at_most:  # evenly spread over the run
        bodies = [bodies[i * len(bodies) // at_most] for i in range(at_most)]
    from bench_verify import StaticFetcher  # the verify engineer's fixed-JWKS fetcher

    from identity.verify import TokenVerifier

    assert service.audience_private_key is not None and service.cc_client and service.web_client
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE,
                             decryption_keys=[service.audience_private_key.read_bytes()],
                             jwks_uri=ISSUER + "/.well-known/jwks.json", fetcher=StaticFetcher(service.jwks()))
    expected_client = service.cc_client.client_id if grant == "client_credentials" else service.web_client.client_id
    valid, problems = 0, []
    for body in bodies:
        try:
            token = verifier.verify(body["access_token"])
            assert token.claims["client_id"] == expected_client, "client_id"
            assert body.get("scope") == SCOPE and body.get("token_type") == "Bearer", "response fields"
            if grant in ("refresh_token", "authorization_code"):
                assert body.get("refresh_token"), "no (new) refresh token"
            else:
                assert token.claims["sub"] == expected_client, "sub"
            valid += 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported as a problem
            problems.append(f"{type(exc).__name__}: {exc}"[:200])
    active = sum(1 for body in bodies[:introspect] if service.introspect(body["access_token"]).get("active"))
    return {"checked": len(bodies), "valid": valid, "introspected": min(introspect, len(bodies)),
            "introspected_active": active, "problems": problems[:5]}


BREAKDOWN = r"""
import io, json, os, sys, time, hashlib, secrets
sys.path.insert(0, {root!r})
from identity import create_app
from identity.oauth.grants import new_refresh_token
from identity.oauth.records import new_secret_value
from identity.web.http_strict import StrictHttp
from identity.web.token_fast_path import find_token_fast_path
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
app = create_app()
svc = app.extensions["identity"]
served = StrictHttp(app, https=True)  # as scripts/serve.py serves it
fast = find_token_fast_path(app.wsgi_app)
body = {body!r}.encode()
process_environment = dict(os.environ)  # granian copies it into every environ
def environ():
    return {{**process_environment, "REQUEST_METHOD": "POST", "PATH_INFO": "/token", "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True,
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8000", "HTTP_AUTHORIZATION": {auth!r}, "REMOTE_ADDR": "127.0.0.1",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}}
statuses = []
def start_response(status, headers, exc_info=None):
    statuses.append(status)
def through_flask():
    fast.enabled = False
    try:
        return b"".join(served(environ(), start_response))
    finally:
        fast.enabled = True
form = {{"grant_type": "client_credentials", "scope": {scope!r}}}
endpoint, grants = svc.oauth.token_endpoint, svc.oauth.grants
audience = svc.oauth.audiences.get("{audience}")
key = svc.oauth.audiences.encryption_key(audience)
# a person's token to the bench audience (pairwise, as new audiences are) and to a public twin of it
from identity.pairwise import PAIRWISE, PUBLIC
twin = "{audience}/public-twin"
if svc.oauth.audiences.get(twin) is None:
    svc.oauth.audiences.add(twin, key=key, jwks_uri=None, subject_type=PUBLIC)
assert audience.subject_type == PAIRWISE, audience
person = svc.vault.pseudonymise("breakdown@bench.example").identity.pseudonym
grants, subjects = svc.oauth.grants, svc.oauth.subjects
def issue(to):
    return grants.issue_access_token(subject=person, client_id="c" * 22, audience=to, key=key, scope="records:read",
                                     grant_id="bench-grant")
def uncached():
    subjects._recorded.clear()  # the first token of a person in a sector in this process: derive, read the row
    return subjects.subject_for(person, audience="{audience}")
signing = svc.keyring.active_signing_key().private_key
signing_kid = svc.keyring.active_signing_key().kid
references = svc.oauth.minter.references
subject = svc.vault.pseudonymise("breakdown@bench.example").identity.pseudonym
def family():
    value = new_refresh_token()
    grant = grants.create(grant_id=new_secret_value(), client_id={web_id!r}, subject=subject, audience="{audience}",
                          scope={scope!r}, refresh_token=value)
    return grant, value
families = [family() for _ in range(2 * (30 + 5 * {n}))]
def refresh():
    grant, value = families.pop()
    return endpoint.handle({{"grant_type": "refresh_token", "refresh_token": value}}, {web_auth!r})
def rotation():
    grant, value = families.pop()
    return grants.rotate_refresh_token(grants.find_refresh_token(value), grant)
cases = {{
    "wsgi_app": lambda: b"".join(served(environ(), start_response)),
    "wsgi_app_without_fast_path": through_flask,
    "token_endpoint": lambda: endpoint.handle(form, {auth!r}),
    "refresh_endpoint": refresh,
    "mint": lambda: svc.oauth.minter.access_token(subject="c" * 22, client_id="c" * 22, audience="{audience}",
                                                  encryption_key=key, scope={scope!r}, now=time.time(),
                                                  reference={{"c": "c" * 22, "a": "{audience}", "s": {scope!r}}}),
    "rsa_sign": lambda: signing.sign(b"x" * 400, padding.PKCS1v15(), hashes.SHA256()),
    "rsa_oaep_encrypt": lambda: key.key.public_key.encrypt(secrets.token_bytes(32), padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)),
    "token_reference_seal": lambda: references.seal(signing_kid, {{"j": secrets.token_urlsafe(16), "i": 1, "e": 2,
                                                                  "c": "c" * 22, "a": "{audience}", "s": {scope!r}}}),
    "issue_public": lambda: issue(twin),
    "issue_pairwise": lambda: issue("{audience}"),
    "subject_for_cached": lambda: subjects.subject_for(person, audience="{audience}"),
    "subject_for_uncached": uncached,
    "refresh_rotation_write": rotation,
}}
times = {{name: [] for name in cases}}
for fn in cases.values():
    for _ in range(30):
        fn()
for _ in range(5):  # round-robin, so that every case sees the same machine and the same store size
    for name, fn in cases.items():
        t = time.process_time()
        for _ in range({n}):
            fn()
        times[name].append((time.process_time() - t) / {n} * 1e6)
out = {{name + "_us": sorted(values)[2] for name, values in times.items()}}
# what pairwise adds to a person's token is exactly subject_for: measured alone (the difference of the two
# issue_* medians is within the RSA signature's noise), as a share of the whole issuance
out["pairwise_overhead_percent"] = out["subject_for_cached_us"] / out["issue_public_us"] * 100
out["pairwise_overhead_percent_uncached"] = out["subject_for_uncached_us"] / out["issue_public_us"] * 100
out["issue_difference_percent"] = (out["issue_pairwise_us"] / out["issue_public_us"] - 1) * 100
assert all(s.startswith("200") for s in statuses), statuses[:3]
print(json.dumps(out))
"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="set up the bench service and keep it running (profiling)")
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--refresh-tokens", type=int, default=20000)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra IDENTITY_* setting")
    parser.add_argument("server_args", nargs="*", help="extra scripts/serve.py arguments")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` stops the service too, not only Ctrl-C
    with tempfile.TemporaryDirectory(prefix="identity-bench-") as tmp:
        svc = BenchService(Path(tmp), server_args=args.server_args,
                           extra_env=dict(item.split("=", 1) for item in args.env))
        svc.set_up()
        pool = Path(tmp) / "refresh.txt"
        svc.seed_refresh_tokens(args.refresh_tokens, pool)
        svc.start()
        try:
            print(f"serving {svc.url}; master pid {svc.proc.pid}, workers {svc.worker_pids()}", flush=True)
            print(f"wrk -t1 -c32 -d10s -s {LUA} {svc.url}/token -- cc '{svc.cc_client.basic}' "
                  f"'{svc.cc_body()}' 1 100 {tmp}/samples/manual-", flush=True)
            print(f"wrk -t1 -c32 -d10s -s {LUA} {svc.url}/token -- refresh '{svc.web_client.basic}' "
                  f"{pool} 1 100 {tmp}/samples/manual-", flush=True)
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            svc.stop()
