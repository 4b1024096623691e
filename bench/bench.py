#!/usr/bin/env python3
"""Benchmarks (issue 8): crypto limits, the token endpoint under load, verification, vault, breach path.

    python bench/bench.py [--quick] [--out bench/results.json] [--only token,verify,...]

Starts everything it needs on 127.0.0.1 in a temporary directory (production settings: key material
from ``scripts/keys.py init`` with a passphrase, an audience and confidential clients registered with
the operators' CLIs, the service started with ``scripts/serve.py`` on the embedded SQLite store; gunicorn
with ``gunicorn.conf.py`` as the reference and panva's oidc-provider as the peer, side by side on one
pinned core each), drives ``POST /token`` with wrk, stops everything, prints a table and writes
``bench/results.json`` and ``bench/token_rps.png``. Every figure is the median of several runs and is
given with its ratio to the crypto limit measured in the same run. ``--quick`` takes about 2 minutes,
the full run 9 to 12 minutes (by host). BENCHMARKS.md explains the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from bench_server import (BenchService, ClientCreds, GunicornService, PeerService, WrkResult,
                          check_peer_tokens, check_tokens)
from bench_store import VaultBench, breach_run

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("crypto", "token", "servers", "verify", "vault", "breach")
CONCURRENCY = (1, 8, 32, 128)
TARGETS = {  # issue 16 for the token endpoint (side by side, one pinned core each), issue 8 for the rest
    "token_cc_vs_peer_per_core": 1.3, "token_cc_serve_ratio_to_sign": 0.55, "token_cc_p99_not_above_peer": True,
    "token_refresh_ratio_to_sign": 0.5, "token_code_ratio_to_sign": 0.4, "verify_first_seen_ratio": 0.85,
    "verify_repeated_per_second": 50_000, "vault_p99_ms_1m": 2.0, "breach_1m_seconds": 60.0,
    "breach_1m_peak_mb": 300.0, "token_pairwise_overhead_percent": 5.0,
}
PAIRWISE_SECTOR = "bench-sector.example"


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int  # repetitions behind every median
    crypto_seconds: float
    wrk_seconds: int  # wrk takes whole seconds
    verify_args: tuple[str, ...]
    vault_sizes: tuple[int, ...]
    vault_lookups: int
    vault_creates: int
    breach_count: int
    breach_runs: int


QUICK = Plan(quick=True, rounds=2, crypto_seconds=0.3, wrk_seconds=1,
             verify_args=("--tokens", "150", "--rounds", "3", "--seconds", "0.3"),
             vault_sizes=(10_000, 100_000), vault_lookups=1000, vault_creates=50, breach_count=50_000, breach_runs=2)
FULL = Plan(quick=False, rounds=3, crypto_seconds=1.0, wrk_seconds=5,
            verify_args=("--tokens", "1000", "--rounds", "3", "--seconds", "1.5"),
            vault_sizes=(10_000, 100_000, 1_000_000), vault_lookups=3000, vault_creates=150,
            breach_count=1_000_000, breach_runs=3)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the machine -----------------------------------------------------------------------------------


# OPENSSL_ia32cap that hides AVX-512 IFMA (CPUID leaf 7, EBX bit 21) from OpenSSL, in the service's and the
# peer's: RSA then runs the code path of a CPU without it, about half as fast (BENCHMARKS.md "phase 4").
WITHOUT_IFMA = ":~0x200000"


def rsa_path(flags: set[str]) -> str:
    """Which RSA code OpenSSL runs here: the per-core sign rate, every "of sign" ratio's unit, doubles with IFMA."""
    if "avx512ifma" not in flags:
        return "without AVX-512 IFMA"
    masked = os.environ.get("OPENSSL_ia32cap")
    return f"AVX-512 IFMA hidden (OPENSSL_ia32cap={masked})" if masked else "AVX-512 IFMA"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except (OSError, IndexError, ValueError):
        mem_gib = 0.0
    versions = {}
    for dist in ("flask", "werkzeug", "granian", "gunicorn", "cryptography", "joserfc", "pyjwt", "pynacl", "authlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    from cryptography.hazmat.backends.openssl.backend import backend

    versions["openssl"] = backend.openssl_version_text()
    versions["sqlite"] = sqlite3.sqlite_version
    versions["python"] = platform.python_version()
    try:
        versions["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        versions["wrk"] = None
    try:
        versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        peer = ROOT / "bench" / "peer" / "node_modules" / "oidc-provider" / "package.json"
        versions["oidc-provider"] = json.loads(peer.read_text())["version"]
    except (OSError, ValueError, KeyError):
        versions.setdefault("node", None)
        versions["oidc-provider"] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": cpu, "rsa": rsa_path(flags), "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "kernel": platform.release(),
            "platform": platform.platform(), "versions": versions, "git_commit": commit.stdout.strip() or None}


def load_snapshot() -> dict[str, Any]:
    """Load average, CPU steal since boot, and other test or benchmark processes running now."""
    one, five, fifteen = os.getloadavg()
    busy = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(r"\bpytest\b|bench_verify|bench_breach", cmd) and "bench/bench.py" not in cmd:
            busy.append(cmd[:120].strip())
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen, "other_processes": busy[:10],
            "cpu_steal_percent_now": steal_percent()}


def steal_percent(seconds: float = 0.5) -> float:
    def read() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    try:
        a = read()
        time.sleep(seconds)
        b = read()
    except (OSError, ValueError):
        return float("nan")
    delta = [y - x for x, y in zip(a, b, strict=True)]
    return round(100 * delta[7] / max(1, sum(delta)), 1) if len(delta) > 7 else float("nan")


# -- crypto limits -----------------------------------------------------------------------------


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Operations per CPU-second of this process (one core), over about ``seconds``."""
    fn()
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        for _ in range(20):
            fn()
        count += 20
    return count / max(time.process_time() - cpu, 1e-9)


SETTLE_SECONDS = 1.0  # between one server's load run and the next probe: the last one's tail work ends


def sign_rate_probe() -> Callable[[float], float]:
    """RSA-2048 signatures per CPU-second over ``seconds``: the limit, re-measured next to each load run."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return lambda seconds: rate(lambda: key.sign(b"x" * 400, padding.PKCS1v15(), hashes.SHA256()), seconds)


def open_rate(seconds: float) -> float:
    """Sealed-box opens (X25519 + XSalsa20-Poly1305, libsodium) per CPU-second."""
    from nacl import bindings
    from nacl.public import PrivateKey, SealedBox

    dpo = PrivateKey.generate()
    sealed = SealedBox(dpo.public_key).encrypt(b"person1@bench.example")
    public, private = bytes(dpo.public_key), bytes(dpo)
    return rate(lambda: bindings.crypto_box_seal_open(sealed, public, private), seconds)


def crypto_limits(plan: Plan) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from nacl import bindings
    from nacl.public import PrivateKey, SealedBox

    sign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    payload = b"x" * 400
    results: dict[str, list[float]] = {"rsa_sign_per_core": [], "rsa_oaep256_decrypt_per_core": [],
                                       "rsa_oaep256_decrypt_2048_per_core": [], "sealed_box_open_per_core": []}
    dec_keys = {bits: rsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (2048, 3072)}
    wrapped = {bits: key.public_key().encrypt(os.urandom(32), oaep) for bits, key in dec_keys.items()}
    dpo = PrivateKey.generate()
    sealed = SealedBox(dpo.public_key).encrypt(b"person1@bench.example")
    dpo_pk, dpo_sk = bytes(dpo.public_key), bytes(dpo)
    for _ in range(plan.rounds + 1):
        results["rsa_sign_per_core"].append(
            rate(lambda: sign_key.sign(payload, padding.PKCS1v15(), hashes.SHA256()), plan.crypto_seconds))
        results["rsa_oaep256_decrypt_per_core"].append(
            rate(lambda: dec_keys[3072].decrypt(wrapped[3072], oaep), plan.crypto_seconds))
        results["rsa_oaep256_decrypt_2048_per_core"].append(
            rate(lambda: dec_keys[2048].decrypt(wrapped[2048], oaep), plan.crypto_seconds))
        results["sealed_box_open_per_core"].append(
            rate(lambda: bindings.crypto_box_seal_open(sealed, dpo_pk, dpo_sk), plan.crypto_seconds))
    out: dict[str, Any] = {k: statistics.median(v) for k, v in results.items()}
    out["runs"] = {k: [round(x) for x in v] for k, v in results.items()}
    out["notes"] = ("ops per CPU-second of one process (pyca/cryptography and libsodium, as the service calls "
                    "them); RSA-2048 PKCS#1 v1.5 SHA-256 signatures; RSA-OAEP-256 decryption with the "
                    "audience key size (3072, audiences.py keygen default) and with 2048")
    return out


# -- the token endpoint ------------------------------------------------------------------------


def one_pinned_core() -> dict[str, Any]:
    """A server on core 0 and wrk on core 1 (``taskset``), as every per-core figure is taken; {} where the
    machine has one core or no taskset (the figures are then of shared cores, and say so: ``pinned``)."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None:
        return {"cpus": "0", "wrk_cpus": "1"}
    return {}


def token_section(plan: Plan, workdir: Path, limits: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    # One worker: production refuses per-process rate-limit counters with more (and no shared store runs here).
    # On one pinned core, as the servers' comparison: unpinned, wrk and the server share both cores' caches,
    # and every grant's figure per core of the server's CPU read 10-20 % low on a 2-core machine.
    pin = one_pinned_core()
    service = BenchService(workdir / "service", workers=1, **pin)
    say("token: key material, audience and clients through scripts/keys.py, audiences.py, clients.py")
    service.set_up()
    runs: dict[str, list[WrkResult]] = {}
    checks: dict[str, list[dict[str, Any]]] = {}
    results: dict[str, Any] = {"grants": {}}
    service.start()
    try:
        say(f"token: scripts/serve.py up ({len(service.worker_pids())} worker"
            f"{', on core 0, wrk on core 1' if pin else ', unpinned (one core or no taskset)'}); warming up")
        service.wrk("client_credentials", 8, 1, sample_every=10**9, tag="warmup")
        probe = sign_rate_probe()
        cc_rate = max(1.0, run_grid(service, plan, "client_credentials", runs, checks, probe))
        pool = workdir / "refresh-pool.txt"
        needed = int(cc_rate * plan.wrk_seconds * plan.rounds * len(CONCURRENCY) * 1.3) + 2000
        say(f"token: seeding {needed:,} refresh tokens through the grants service")
        started = time.perf_counter()
        service.seed_refresh_tokens(needed, pool)
        results["refresh_tokens_seeded"] = needed
        results["refresh_seed_seconds"] = round(time.perf_counter() - started, 1)
        run_grid(service, plan, "refresh_token", runs, checks, probe, pool=pool)
        code_runs(service, plan, runs, checks, probe, workdir, cc_rate)
        results["server"] = {"command": "scripts/serve.py " + " ".join(service.command()[2:]), "pinned": bool(pin),
                             "workers": len(service.worker_pids()), "rss_mb_after": service.rss_mb()}
    finally:
        service.stop()
    say("token: where one token's CPU goes (in-process)")
    results["cost_breakdown_us"] = service.breakdown(100 if plan.quick else 200)
    summary["token_pairwise_overhead_percent"] = results["cost_breakdown_us"].get("pairwise_overhead_percent")
    adjacent = [r.raw["sign_per_core_adjacent"] for rs in runs.values() for r in rs]
    results["rsa_sign_per_core_next_to_runs"] = statistics.median(adjacent)
    for grant, grant_runs in runs.items():
        by_c: dict[str, Any] = {}
        for c in sorted({r.concurrency for r in grant_runs}):
            rs = [r for r in grant_runs if r.concurrency == c]
            per_core = statistics.median(r.rps_per_core for r in rs)
            by_c[str(c)] = {
                "rps": statistics.median(r.rps for r in rs),
                "rps_per_core": per_core,
                # each run against the signing rate measured just before it, then the median
                "ratio_to_sign": statistics.median(r.rps_per_core / r.raw["sign_per_core_adjacent"] for r in rs),
                "sign_per_core_adjacent": statistics.median(r.raw["sign_per_core_adjacent"] for r in rs),
                "p50_ms": statistics.median(r.p50_ms for r in rs),
                "p99_ms": statistics.median(r.p99_ms for r in rs),
                "max_ms": max(r.max_ms for r in rs),
                "errors": sum(r.errors for r in rs),
                "server_cores_busy": statistics.median(r.server_cores_busy for r in rs),
                "loadgen_cores_busy": statistics.median(r.loadgen_cpu_seconds / r.seconds for r in rs),
                "requests": sum(r.requests for r in rs),
                "runs": [{"rps": round(r.rps, 1), "rps_per_core": round(r.rps_per_core, 1), "p50_ms": r.p50_ms,
                          "p99_ms": r.p99_ms, "errors": r.errors, "error_detail": r.error_detail,
                          "sign_per_core_adjacent": round(r.raw["sign_per_core_adjacent"])}
                         for r in rs],
            }
        sampled = checks.get(grant, [])
        results["grants"][grant] = {
            "by_concurrency": by_c,
            "tokens_checked": sum(c["checked"] for c in sampled),
            "tokens_valid": sum(c["valid"] for c in sampled),
            "tokens_introspected": sum(c["introspected"] for c in sampled),
            "tokens_introspected_active": sum(c["introspected_active"] for c in sampled),
            "check_problems": [p for c in sampled for p in c["problems"]][:5],
        }
    cc = results["grants"]["client_credentials"]["by_concurrency"]
    best = max(cc.values(), key=lambda v: v["rps_per_core"])
    summary["rsa_sign_per_core_next_to_runs"] = results["rsa_sign_per_core_next_to_runs"]
    summary["token_cc_rps_per_core"] = cc["32"]["rps_per_core"]
    summary["token_cc_ratio_to_sign"] = cc["32"]["ratio_to_sign"]
    summary["token_cc_best_rps_per_core"] = best["rps_per_core"]
    summary["token_cc_p99_ms_c32"] = cc["32"]["p99_ms"]
    summary["token_errors"] = sum(v["errors"] for g in results["grants"].values()
                                  for v in g["by_concurrency"].values())
    rt = results["grants"]["refresh_token"]["by_concurrency"]
    summary["token_refresh_rps_per_core"] = rt["32"]["rps_per_core"]
    summary["token_refresh_ratio_to_sign"] = rt["32"]["ratio_to_sign"]
    summary["token_refresh_p99_ms_c32"] = rt["32"]["p99_ms"]
    code = results["grants"].get("authorization_code", {}).get("by_concurrency", {}).get("32")
    if code:
        summary["token_code_ratio_to_sign"] = code["ratio_to_sign"]
        summary["token_code_rps_per_core"] = code["rps_per_core"]
    summary["tokens_checked"] = sum(g["tokens_checked"] for g in results["grants"].values())
    summary["tokens_valid"] = sum(g["tokens_valid"] for g in results["grants"].values())
    return results


SERVER_NAMES = {
    "service_serve": "the service, scripts/serve.py (production command)",
    "service_serve_no_fast_path": "the service, serve.py, the token fast path off",
    "service_gunicorn": "the service, gunicorn + gunicorn.conf.py (reference)",
    "ceiling_serve": "the ceiling app (crypto only), scripts/serve.py",
    "peer_oidc_provider": "the peer: oidc-provider, NODE_ENV=production node",
}


def server_comparison(plan: Plan, workdir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """client_credentials at c=32, interleaved, every server on one pinned core (``taskset -c 0``, one
    worker) and wrk on the other: the service under ``scripts/serve.py`` (the production command) and under
    gunicorn with ``gunicorn.conf.py`` (the reference), the ceiling app (``bench/ceiling_app.py``: the
    token's cryptography and nothing of ours) under serve.py, and the peer, panva's oidc-provider
    (``bench/peer/``) issuing the same nested token to the same audience key.

    Every service and peer token sampled is decrypted and verified; resident memory is read after the runs.
    """
    pin = one_pinned_core()
    pinned = bool(pin)
    services: dict[str, BenchService] = {
        "service_serve": BenchService(workdir / "cmp-serve", workers=1, **pin),
        # what identity/web/token_fast_path.py buys behind serve.py (it stays only for >= 15 %)
        "service_serve_no_fast_path": BenchService(workdir / "cmp-serve-no-fast-path", workers=1,
                                                   wsgi_app="bench.no_fast_path_app:app", **pin),
        "service_gunicorn": GunicornService(workdir / "cmp-gunicorn", workers=1, **pin)}
    ceiling = BenchService(workdir / "cmp-ceiling", wsgi_app="bench.ceiling_app:app", workers=1, **pin)
    ceiling.cc_client = ClientCreds("ceiling", "not-checked")
    services["ceiling_serve"] = ceiling
    why_not = PeerService.available()
    peer = None if why_not else PeerService(workdir / "cmp-peer", **pin)
    if peer is not None:
        services["peer_oidc_provider"] = peer
    else:
        say(f"servers: no peer row: {why_not}")
    probe = sign_rate_probe()
    runs: dict[str, list[WrkResult]] = {name: [] for name in services}
    checks: dict[str, dict[str, int]] = {}
    memory: dict[str, dict[str, float]] = {}
    try:
        services["service_serve"].set_up()
        services["service_serve_no_fast_path"].set_up_like(services["service_serve"])
        services["service_gunicorn"].set_up_like(services["service_serve"])
        if peer is not None:
            peer.set_up_peer(services["service_serve"])
        for service in services.values():
            service.start()
            # 5 s at full load first: Node.js compiles its hot paths as it goes (after 1-2 s the peer still
            # served 30-50 % fewer tokens than in steady state), Python warms its caches
            service.wrk("client_credentials", 32, 5, sample_every=10**9, tag="warmup")
        for round_no in range(plan.rounds):
            for name, service in services.items():
                time.sleep(SETTLE_SECONDS)
                sign_now = probe(0.2 if plan.quick else 0.4)
                sample = 10**9 if service is ceiling else 40
                result = service.wrk("client_credentials", 32, plan.wrk_seconds, sample_every=sample,
                                     tag=f"cmp-{name}-r{round_no}")
                result.raw["sign_per_core_adjacent"] = sign_now
                runs[name].append(result)
                say(f"servers: {name:18s} c=32 {result.rps:7.0f} req/s  {result.rps_per_core:6.0f}/core  "
                    f"{result.rps_per_core / sign_now:.2f} of sign  p99 {result.p99_ms:6.1f} ms  "
                    f"errors {result.errors}")
        for name, service in services.items():
            memory[name] = service.rss_mb()
            if service is ceiling:
                continue
            bodies, errors = service.samples(f"cmp-{name}")
            if service is peer:
                check = check_peer_tokens(peer, bodies)
            else:
                check = check_tokens(service, bodies, grant="client_credentials", introspect=2)
            checks[name] = {"checked": check["checked"], "valid": check["valid"], "fetch_errors": len(errors),
                            "problems": check["problems"][:3]}
    finally:
        for service in services.values():
            service.stop()
    # One limit for every row: the median of all the probes. A probe taken at once after the peer's run read
    # up to a third low (the previous server's tail of work), which flattered the row measured next.
    sign = statistics.median(r.raw["sign_per_core_adjacent"] for rs in runs.values() for r in rs)
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        per_core = statistics.median(r.rps_per_core for r in rs)
        out[name] = {
            "rps_per_core": per_core,
            "ratio_to_sign": per_core / sign,
            "rps": statistics.median(r.rps for r in rs),
            "p50_ms": statistics.median(r.p50_ms for r in rs),
            "p99_ms": statistics.median(r.p99_ms for r in rs),
            "errors": sum(r.errors for r in rs),
            "runs": [round(r.rps_per_core) for r in rs],
            "pinned": pinned,
            "rss_mb_per_worker_after": memory.get(name, {}).get("per_worker"),
            "rss_mb_supervisor_after": memory.get(name, {}).get("supervisor"),
            **({"tokens": checks[name]} if name in checks else {}),
        }
    serve = out["service_serve"]
    summary["token_cc_serve_ratio_to_sign"] = serve["ratio_to_sign"]
    summary["token_cc_serve_p99_ms"] = serve["p99_ms"]
    summary["token_cc_gunicorn_ratio_to_sign"] = out["service_gunicorn"]["ratio_to_sign"]
    summary["token_ceiling_ratio_to_sign"] = out["ceiling_serve"]["ratio_to_sign"]
    summary["token_fast_path_gain_per_core"] = serve["rps_per_core"] / out["service_serve_no_fast_path"]["rps_per_core"]
    summary["token_errors_side_by_side"] = sum(v["errors"] for v in out.values())
    out["sign_per_core"] = sign
    out["fast_path_gain_by_round"] = [round(a.rps_per_core / b.rps_per_core, 3) for a, b in
                                      zip(runs["service_serve"], runs["service_serve_no_fast_path"], strict=False)]
    if "peer_oidc_provider" in out:
        other = out["peer_oidc_provider"]
        summary["token_cc_vs_peer_per_core"] = serve["rps_per_core"] / other["rps_per_core"]
        summary["token_cc_peer_p99_ms"] = other["p99_ms"]
        summary["token_cc_p99_not_above_peer"] = serve["p99_ms"] <= other["p99_ms"]
        # the interleaved runs pair up round by round: the spread of the ratio shows the noise
        out["serve_vs_peer_by_round"] = [round(a.rps_per_core / b.rps_per_core, 3)
                                         for a, b in zip(runs["service_serve"], runs["peer_oidc_provider"], strict=False)]
    return out


def code_runs(service: BenchService, plan: Plan, runs: dict[str, list[WrkResult]],
              checks: dict[str, list[dict[str, Any]]], probe: Callable[[float], float], workdir: Path,
              cc_rate: float, concurrency: int = 32) -> None:
    """The authorization code exchange with PKCE at c=32, ``plan.rounds`` runs: codes live at most 60 s,
    so each run gets a pool seeded right before it (the service's own ``Authorizer.issue_code``)."""
    for round_no in range(plan.rounds):
        tag = f"authorization_code-r{round_no}-c{concurrency}"
        pool = workdir / f"{tag}.txt"
        service.seed_codes(int(cc_rate * plan.wrk_seconds * 1.3) + 500, pool)
        sign_now = probe(0.2 if plan.quick else 0.4)
        result = service.wrk("authorization_code", concurrency, plan.wrk_seconds, pool=pool, sample_every=10,
                             tag=tag)
        result.raw["sign_per_core_adjacent"] = sign_now
        pool.unlink()
        bodies, errors = service.samples(tag)
        check = check_tokens(service, bodies, grant="authorization_code", introspect=2)
        if errors:
            check["problems"] = errors[:3] + check["problems"]
        checks.setdefault("authorization_code", []).append(check)
        runs.setdefault("authorization_code", []).append(result)
        say(f"token: {'authorization_code':18s} c={concurrency:<3d} {result.rps:7.0f} req/s  "
            f"{result.rps_per_core:6.0f}/core  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
            f"errors {result.errors}  checked {check['valid']}/{check['checked']}")


def run_grid(service: BenchService, plan: Plan, grant: str, runs: dict[str, list[WrkResult]],
             checks: dict[str, list[dict[str, Any]]], probe: Callable[[float], float], *,
             pool: Path | None = None) -> float:
    """``plan.rounds`` wrk runs at each concurrency (interleaved); returns the best requests/s.

    The signing limit is measured again right before every run (the server idle), so that each run's
    ratio compares it with the machine as fast as it was then: a shared machine's speed drifts.
    """
    offset, best = 0, 0.0
    for round_no in range(plan.rounds):
        for c in CONCURRENCY:
            tag = f"{grant}-r{round_no}-c{c}"
            slice_path = None
            if pool is not None:
                slice_path = pool.with_name(f"{tag}.txt")
                with open(pool, encoding="ascii") as src:
                    lines = src.readlines()[offset:]
                slice_path.write_text("".join(lines), encoding="ascii")
            sign_now = probe(0.2 if plan.quick else 0.4)
            result = service.wrk(grant, c, plan.wrk_seconds, pool=slice_path, sample_every=max(5, 20 * c // 8),
                                 tag=tag)
            result.raw["sign_per_core_adjacent"] = sign_now
            if pool is not None:
                offset += int(result.raw["used"])
                slice_path.unlink()
            bodies, errors = service.samples(tag)
            check = check_tokens(service, bodies, grant=grant, introspect=2)
            if errors:
                check["problems"] = errors[:3] + check["problems"]
            checks.setdefault(grant, []).append(check)
            runs.setdefault(grant, []).append(result)
            best = max(best, result.rps)
            say(f"token: {grant:18s} c={c:<3d} {result.rps:7.0f} req/s  {result.rps_per_core:6.0f}/core  "
                f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}  "
                f"checked {check['valid']}/{check['checked']}")
    return best


# -- verification ------------------------------------------------------------------------------


def verify_section(plan: Plan, limits: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """bench/bench_verify.py (the verify engineer's benchmark), run as it is and read back."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_verify.py"), *plan.verify_args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"bench_verify.py failed: {done.stderr.strip()[-1000:]}")
    text = done.stdout

    def grab(label: str) -> float:
        match = re.search(rf"{label}[^:]*:\s*([\d,]+)", text)
        if not match:
            raise RuntimeError(f"bench_verify.py output has no {label!r} line:\n{text}")
        return float(match.group(1).replace(",", ""))

    raw, first, repeated = grab("raw"), grab("first-seen"), grab("repeated")
    bits = re.search(r"RSA-(\d+)", text)
    result = {"raw_decrypt_verify_per_second": raw, "first_seen_per_second": first,
              "repeated_per_second": repeated, "first_seen_ratio_to_raw": first / raw,
              "audience_key_bits": int(bits.group(1)) if bits else None, "command": " ".join(cmd[1:]),
              "output": text.strip().splitlines()}
    decrypt = limits.get("rsa_oaep256_decrypt_per_core")
    if decrypt:
        result["first_seen_ratio_to_oaep_decrypt"] = first / decrypt
    summary["verify_first_seen_per_second"] = first
    summary["verify_first_seen_ratio"] = first / raw
    summary["verify_repeated_per_second"] = repeated
    return result


# -- vault and breach ----------------------------------------------------------------------------


def store_sections(plan: Plan, workdir: Path, sections: set[str], limits: dict[str, Any],
                   summary: dict[str, Any], results: dict[str, Any]) -> None:
    keys = BenchService(workdir / "store-keys")  # only its key material is used
    keys.workdir.mkdir(parents=True, exist_ok=True)
    keys.init_keys()
    passphrase = keys.env["IDENTITY_KEYS_PASSPHRASE"]
    bench = VaultBench(workdir / "vault.sqlite3", keys.keys_dir, passphrase)
    sizes = plan.vault_sizes if "vault" in sections else ()
    if "breach" in sections:
        sizes = tuple(sorted(set(sizes) | {plan.breach_count}))
    vault: dict[str, Any] = {}
    for size in sizes:
        seconds = bench.grow_to(size)
        say(f"vault: {size:,} identities seeded in {seconds:.1f} s")
        if "vault" in sections and size in plan.vault_sizes:
            vault[str(size)] = bench.measure(lookups=plan.vault_lookups, creates=plan.vault_creates,
                                             rounds=plan.rounds)
            v = vault[str(size)]
            say(f"vault: {size:>9,}  resolve p50 {v['resolve_p50_ms']:.3f} ms  p99 {v['resolve_p99_ms']:.3f} ms"
                f"  first login p50 {v['create_p50_ms']:.2f} ms  p99 {v['create_p99_ms']:.2f} ms")
    if vault:
        results["vault"] = vault
        largest = vault[str(max(plan.vault_sizes))]
        summary["vault_largest"] = max(plan.vault_sizes)
        summary["vault_resolve_p50_ms"] = largest["resolve_p50_ms"]
        summary["vault_resolve_p99_ms"] = largest["resolve_p99_ms"]
        summary["vault_create_p99_ms"] = largest["create_p99_ms"]
    if "breach" in sections:
        runs = []
        for _ in range(plan.breach_runs):
            run = breach_run(bench, dpo_key=keys.dpo_shares(),
                             dpo_public=keys.keys_dir / "dpo_public.pem", passphrase=keys.dpo_passphrase,
                             workdir=workdir, count=plan.breach_count)
            runs.append(run)
            say(f"breach: {plan.breach_count:,} pseudonyms in {run['seconds']:.1f} s ({run['per_second']:,.0f}/s), "
                f"peak {run['peak_rss_mb_all']:.0f} MB all processes ({run['peak_rss_mb_main']:.0f} MB main)")
        per_second = statistics.median(r["per_second"] for r in runs)
        opens = open_rate(1.0)  # the limit again, now: a shared machine's speed drifts
        results["sealed_box_open_per_core_next_to_runs"] = opens
        cores = os.cpu_count() or 1
        results["breach"] = {
            "pseudonyms": plan.breach_count, "seconds": statistics.median(r["seconds"] for r in runs),
            "per_second": per_second, "peak_rss_mb_all": statistics.median(r["peak_rss_mb_all"] for r in runs),
            "peak_rss_mb_main": statistics.median(r["peak_rss_mb_main"] for r in runs),
            "ratio_to_open_limit_all_cores": per_second / (opens * cores) if opens else None,
            "runs": runs,
        }
        summary["breach_pseudonyms"] = plan.breach_count
        summary["breach_per_second"] = per_second
        summary["breach_seconds"] = results["breach"]["seconds"]
        summary["breach_peak_mb"] = results["breach"]["peak_rss_mb_all"]
        summary["breach_ratio_to_open_limit"] = results["breach"]["ratio_to_open_limit_all_cores"]
        pairwise = []
        for _ in range(plan.breach_runs):  # the same people, by their pairwise subjects of one sector
            run = breach_run(bench, dpo_key=keys.dpo_shares(), dpo_public=keys.keys_dir / "dpo_public.pem",
                             passphrase=keys.dpo_passphrase, workdir=workdir, count=plan.breach_count,
                             sector=PAIRWISE_SECTOR)
            pairwise.append(run)
            say(f"breach (pairwise, --sector): {plan.breach_count:,} subjects in {run['seconds']:.1f} s "
                f"({run['per_second']:,.0f}/s), peak {run['peak_rss_mb_all']:.0f} MB all processes, main CPU "
                f"{run['main_cpu_seconds']:.1f} s")
        results["breach_pairwise"] = {
            "subjects": plan.breach_count, "sector": PAIRWISE_SECTOR,
            "seconds": statistics.median(r["seconds"] for r in pairwise),
            "per_second": statistics.median(r["per_second"] for r in pairwise),
            "peak_rss_mb_all": statistics.median(r["peak_rss_mb_all"] for r in pairwise),
            "main_cpu_seconds": statistics.median(r["main_cpu_seconds"] for r in pairwise),
            "main_cpu_seconds_pseudonyms": statistics.median(r["main_cpu_seconds"] for r in runs),
            "record_seconds": round(bench.seed_seconds.get(-plan.breach_count, 0.0), 1), "runs": pairwise,
        }
        summary["breach_pairwise_seconds"] = results["breach_pairwise"]["seconds"]
        summary["breach_pairwise_peak_mb"] = results["breach_pairwise"]["peak_rss_mb_all"]


# -- output ------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lim = results.get("crypto_limits", {})
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, value: str, ratio: str = "", target: str = "") -> None:
        rows.append((name, value, ratio, target))

    sign = lim.get("rsa_sign_per_core")
    if sign:
        add("rsa_sign_per_core (RSA-2048 PKCS#1 v1.5)", f"{sign:,.0f}/s", "1.00 (the limit)")
        near = results.get("token", {}).get("rsa_sign_per_core_next_to_runs")
        if near:
            add("  the same, measured next to each load run", f"{near:,.0f}/s", "(token ratios use these)")
        add("RSA-OAEP-256 decrypt per core (3072 / 2048)",
            f"{lim['rsa_oaep256_decrypt_per_core']:,.0f} / {lim['rsa_oaep256_decrypt_2048_per_core']:,.0f}/s")
        add("sealed-box open per core (X25519)", f"{lim['sealed_box_open_per_core']:,.0f}/s")
    grants = results.get("token", {}).get("grants", {})
    for grant, data in grants.items():
        for c, v in data["by_concurrency"].items():
            target = {"refresh_token": ">= 0.5 of sign", "authorization_code": ">= 0.4 of sign"}.get(grant, "")
            add(f"token {grant} c={c}",
                f"{v['rps']:,.0f} req/s, {v['rps_per_core']:,.0f}/core, p50 {v['p50_ms']:.1f} ms, "
                f"p99 {v['p99_ms']:.1f} ms, errors {v['errors']}",
                f"{v['ratio_to_sign']:.2f} of sign" if v.get("ratio_to_sign") else "", target)
        add(f"  tokens checked ({grant})", f"{data['tokens_valid']}/{data['tokens_checked']} valid, "
            f"{data['tokens_introspected_active']}/{data['tokens_introspected']} introspected active")
    cost = results.get("token", {}).get("cost_breakdown_us")
    if cost:
        add("one cc token in-process: WSGI app / endpoint / mint",
            f"{cost['wsgi_app_us']:,.0f} / {cost['token_endpoint_us']:,.0f} / {cost['mint_us']:,.0f} us",
            f"sign {cost['rsa_sign_us']:,.0f}, OAEP {cost['rsa_oaep_encrypt_us']:,.0f}, "
            f"sealed reference {cost['token_reference_seal_us']:,.0f} us")
        if "issue_pairwise_us" in cost:
            add("a person's token: public / pairwise audience (issue_access_token)",
                f"{cost['issue_public_us']:,.0f} / {cost['issue_pairwise_us']:,.0f} us; subject_for "
                f"{cost['subject_for_cached_us']:.1f} us cached, {cost['subject_for_uncached_us']:.1f} us not",
                f"+{cost['pairwise_overhead_percent']:.1f} %", "<= +5 %")
        if "wsgi_app_without_fast_path_us" in cost:
            add("  the same without the token fast path (Flask's view)", f"{cost['wsgi_app_without_fast_path_us']:,.0f} us",
                f"the fast path: {cost['wsgi_app_without_fast_path_us'] / cost['wsgi_app_us']:.2f}x less CPU",
                "keep it only if >= 1.15x (issue 16)")
            add("one refresh in-process: endpoint / rotation write", f"{cost['refresh_endpoint_us']:,.0f} / "
                f"{cost['refresh_rotation_write_us']:,.0f} us", "no fsync per token (identity.oauth.grants)")
    for name, v in results.get("servers", {}).items():
        if name not in SERVER_NAMES:
            continue
        memory = v.get("rss_mb_per_worker_after")
        add(f"c=32, one core: {SERVER_NAMES[name]}",
            f"{v['rps']:,.0f} req/s, {v['rps_per_core']:,.0f}/core, p99 {v['p99_ms']:.1f} ms, errors {v['errors']}"
            + (f", {v['tokens']['valid']}/{v['tokens']['checked']} valid" if "tokens" in v else "")
            + (f", RSS {memory:.0f} MB/worker" if memory else ""),
            f"{v['ratio_to_sign']:.2f} of sign", ">= 0.55 of sign, 0 errors" if name == "service_serve" else "")
    if "sign_per_core" in results.get("servers", {}):
        add("  the limit for these rows (median of the probes between them)",
            f"{results['servers']['sign_per_core']:,.0f}/s", "")
    vs_peer = results["summary"].get("token_cc_vs_peer_per_core")
    if vs_peer:
        add("  serve.py against the peer, per core", f"{vs_peer:.2f}x (by round: "
            f"{', '.join(str(x) for x in results['servers'].get('serve_vs_peer_by_round', []))})",
            f"p99 {results['summary']['token_cc_serve_p99_ms']:.1f} vs {results['summary']['token_cc_peer_p99_ms']:.1f} ms",
            ">= 1.3x; p99 not above the peer's")
    rows.extend(issue16_targets(results))
    v = results.get("verify")
    if v:
        add("verify first-seen", f"{v['first_seen_per_second']:,.0f}/s",
            f"{v['first_seen_ratio_to_raw']:.2f} of raw decrypt+verify", ">= 0.85")
        add("verify repeated", f"{v['repeated_per_second']:,.0f}/s", "", ">= 50,000/s")
    for size, vv in results.get("vault", {}).items():
        add(f"vault pseudonymise, {int(size):,} identities",
            f"p50 {vv['resolve_p50_ms']:.3f} ms, p99 {vv['resolve_p99_ms']:.3f} ms; first login p99 "
            f"{vv['create_p99_ms']:.2f} ms", "", "p99 < 2 ms at 1M")
    b = results.get("breach")
    if b:
        add(f"breach {b['pseudonyms']:,} pseudonyms", f"{b['seconds']:.1f} s, {b['per_second']:,.0f}/s, "
            f"peak {b['peak_rss_mb_all']:.0f} MB", f"{b['ratio_to_open_limit_all_cores']:.2f} of open limit "
            f"x {os.cpu_count()} cores" if b.get("ratio_to_open_limit_all_cores") else "",
            "1M < 60 s, < 300 MB")
    bp = results.get("breach_pairwise")
    if bp:
        add(f"breach {bp['subjects']:,} pairwise subjects (--sector)",
            f"{bp['seconds']:.1f} s, {bp['per_second']:,.0f}/s, peak {bp['peak_rss_mb_all']:.0f} MB",
            f"main CPU {bp['main_cpu_seconds']:.1f} s (pseudonyms: {bp['main_cpu_seconds_pseudonyms']:.1f} s)",
            "1M < 60 s, < 300 MB")
    load = results.get("load", {})
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "ratio", "target")]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("figure", "value", "ratio", "target"), widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    before, after = load.get("before", {}), load.get("after", {})
    lines.append(f"load average at start {before.get('loadavg_1m', float('nan')):.2f} / end "
                 f"{after.get('loadavg_1m', float('nan')):.2f} (1 min), CPU steal {before.get('cpu_steal_percent_now')}"
                 f" %, other test processes at start: {len(before.get('other_processes', []))}")
    return "\n".join(lines)


def issue16_targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """One row per target of issue 16 that this run measured: figure, value, ratio, target and whether met."""
    s, servers = results["summary"], results.get("servers", {})
    rows: list[tuple[str, str, str, str]] = []

    def target(name: str, value: str, ratio: str, goal: str, met: bool | None) -> None:
        verdict = "" if met is None else ("met" if met else "NOT met")
        rows.append((f"TARGET {name}", value, ratio, f"{goal}: {verdict}" if verdict else goal))

    serve, peer = servers.get("service_serve"), servers.get("peer_oidc_provider")
    if serve and peer:
        vs = s["token_cc_vs_peer_per_core"]
        target("client_credentials per core vs the peer", f"{serve['rps_per_core']:,.0f} vs {peer['rps_per_core']:,.0f}"
               f" per core", f"{vs:.2f}x", ">= 1.3x", vs >= TARGETS["token_cc_vs_peer_per_core"])
        target("client_credentials p99 at c=32 vs the peer's", f"{serve['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms",
               "", "not above", serve["p99_ms"] <= peer["p99_ms"])
        ours, theirs = serve.get("rss_mb_per_worker_after"), peer.get("rss_mb_per_worker_after")
        if ours and theirs:
            target("memory per worker (RSS after the runs) vs the peer's", f"{ours:.0f} vs {theirs:.0f} MB",
                   f"{ours / theirs:.2f}x", "reported", None)
    if serve and "token_fast_path_gain_per_core" in s:
        gain = s["token_fast_path_gain_per_core"]
        target("the token fast path behind serve.py (kept only if it buys 15 %)",
               f"{serve['rps_per_core']:,.0f} vs {servers['service_serve_no_fast_path']['rps_per_core']:,.0f} per core",
               f"{gain:.2f}x (by round: {', '.join(str(x) for x in servers.get('fast_path_gain_by_round', []))})",
               ">= 1.15x", gain >= 1.15)
    if serve:
        target("client_credentials of the per-core sign rate (one pinned core)", f"{serve['rps_per_core']:,.0f}/core",
               f"{serve['ratio_to_sign']:.2f}", ">= 0.55", serve["ratio_to_sign"] >= TARGETS["token_cc_serve_ratio_to_sign"])
        errors = s.get("token_errors_side_by_side", 0) + s.get("token_errors", 0)
        target("errors (side by side and grid)", str(errors), "", "0", errors == 0)
    if "token_refresh_ratio_to_sign" in s:
        target("refresh_token of the sign rate (c=32)", f"{s['token_refresh_rps_per_core']:,.0f}/core",
               f"{s['token_refresh_ratio_to_sign']:.2f}", ">= 0.5",
               s["token_refresh_ratio_to_sign"] >= TARGETS["token_refresh_ratio_to_sign"])
    if "token_code_ratio_to_sign" in s:
        target("authorization_code + PKCE of the sign rate (c=32)", f"{s['token_code_rps_per_core']:,.0f}/core",
               f"{s['token_code_ratio_to_sign']:.2f}", ">= 0.4",
               s["token_code_ratio_to_sign"] >= TARGETS["token_code_ratio_to_sign"])
    return rows


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("plot: matplotlib is not installed (pip install -r requirements-bench.txt); no PNG written")
        return False
    grants = results.get("token", {}).get("grants", {})
    if not grants:
        return False
    sign = (results.get("token", {}).get("rsa_sign_per_core_next_to_runs")
            or results.get("crypto_limits", {}).get("rsa_sign_per_core"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.2))
    for grant, style in (("client_credentials", "o-"), ("refresh_token", "s--"), ("authorization_code", "P")):
        data = grants.get(grant)
        if not data:
            continue
        cs = [int(c) for c in data["by_concurrency"]]
        per_core = [v["rps_per_core"] for v in data["by_concurrency"].values()]
        p99 = [v["p99_ms"] for v in data["by_concurrency"].values()]
        ax1.plot(cs, per_core, style, label=grant)
        ax2.plot(cs, p99, style, label=grant)
    servers = results.get("servers", {})
    for name, marker, color in (("service_serve", "*", "tab:blue"), ("ceiling_serve", "^", "black"),
                                ("service_gunicorn", "v", "grey"), ("peer_oidc_provider", "D", "purple"),
                                ("service_serve_no_fast_path", "x", "tab:orange")):
        if name in servers:
            label = f"{SERVER_NAMES[name]}, one core, c=32"
            ax1.plot([32], [servers[name]["rps_per_core"]], marker, color=color, label=label)
            ax2.plot([32], [servers[name]["p99_ms"]], marker, color=color, label=label)
    if sign:
        ax1.axhline(sign, color="grey", lw=1, label=f"RSA-2048 signs/s per core ({sign:,.0f}, next to the runs)")
        ax1.axhline(0.55 * sign, color="red", lw=1, ls=":", label="target: 55 % of the sign rate")
    for ax, title, ylabel in ((ax1, "POST /token: requests/s per server core", "requests per CPU-second"),
                              (ax2, "POST /token: p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent connections (wrk)")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax1.set_ylim(0, 1.75 * max([sign or 0.0] + [v["rps_per_core"] for v in servers.values() if isinstance(v, dict)
                                               and "rps_per_core" in v]))
    ax2.set_yscale("log")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 10)  # room for the legend above the lines
    m = results["machine"]
    g = results.get("token", {}).get("server", {})
    fig.suptitle(f"{m['cpu']}, {m['cores']} cores; scripts/serve.py (granian {m['versions'].get('granian')}, "
                 f"{g.get('workers')} workers), embedded SQLite store; load average "
                 f"{results['load']['before']['loadavg_1m']:.2f} at start", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a run of about a minute (fewer, shorter runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: next to --out)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (debugging)")
    parser.add_argument("--without-ifma", action="store_true",
                        help="hide AVX-512 IFMA from OpenSSL everywhere (OPENSSL_ia32cap): RSA as on a CPU without it")
    args = parser.parse_args()
    if args.without_ifma and os.environ.get("OPENSSL_ia32cap") != WITHOUT_IFMA:
        # OpenSSL reads the variable once, when it is loaded: start again with it set, for every process.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OPENSSL_ia32cap": WITHOUT_IFMA})
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    if sections - set(SECTIONS):
        parser.error(f"unknown section(s) {sorted(sections - set(SECTIONS))}")
    if "token" in sections and shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk; `make bench` does it)")
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": "quick" if plan.quick else "full", "machine": machine(),
                               "load": {"before": load_snapshot()}, "summary": {}, "targets": TARGETS,
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    say(f"bench: {results['mode']} run on {results['machine']['cpu']} ({results['machine']['cores']} cores, RSA "
        f"{results['machine']['rsa']}); load {results['load']['before']['loadavg_1m']:.2f}")
    summary = results["summary"]
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every finally stops its processes
    try:
        limits: dict[str, Any] = {}
        if sections & {"crypto", "token", "verify", "breach"}:
            say("crypto: measuring the limits")
            limits = crypto_limits(plan)
            results["crypto_limits"] = limits
            summary["rsa_sign_per_core"] = limits["rsa_sign_per_core"]
            summary["rsa_oaep256_decrypt_per_core"] = limits["rsa_oaep256_decrypt_per_core"]
            summary["sealed_box_open_per_core"] = limits["sealed_box_open_per_core"]
        if "token" in sections:
            results["token"] = token_section(plan, workdir, limits, summary)
        if "servers" in sections:
            say("servers: serve.py, gunicorn (reference), the ceiling app and oidc-provider, one pinned core each")
            results["servers"] = server_comparison(plan, workdir, summary)
        if "verify" in sections:
            say("verify: bench/bench_verify.py " + " ".join(plan.verify_args))
            results["verify"] = verify_section(plan, limits, summary)
        if sections & {"vault", "breach"}:
            store_sections(plan, workdir, sections, limits, summary, results)
    finally:
        if args.keep:
            say(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load"]["after"] = load_snapshot()
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rounded(results), indent=2) + "\n")
    png = args.plot or args.out.with_name("token_rps.png")
    if plot(results, png):
        say(f"bench: plot written to {png}")
    print(table(results))
    print(f"\nresults written to {args.out} ({results['seconds']:.0f} s)")
    return 0 if not summary.get("token_errors") else 1


def rounded(value: Any) -> Any:
    """Floats to a sensible precision for the record (results.json)."""
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 10 else round(value, 1)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
