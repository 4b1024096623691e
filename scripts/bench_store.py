"""The vault and the breach path at scale, on the embedded SQLite store (used by ``scripts/bench.py``).

Seeding writes pre-built identity documents straight into the store's table in large
``executemany`` batches (seeding only; the service writes one statement at a time). Every document
has the real blind index of its address (HMAC-SHA256 under the bench key material's pepper), so
``Vault.pseudonymise`` finds it exactly as it finds a returning person. Sealing costs two key
agreements, so only ``DISTINCT_SEALS`` addresses are sealed to the DPO key and the sealed values are
reused: every record still costs one full open in the breach run, which is what it measures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import _bootstrap  # noqa: F401

from identity.breach.seed import seed_sector_subjects
from identity.keys import Keyring
from identity.pairwise import PairwiseKey
from identity.sealing import Sealer
from identity.store import SQLiteStore
from identity.vault import IDENTITIES, IDENTITY_ACTIVE, Vault

ROOT = Path(__file__).resolve().parent.parent
DISTINCT_SEALS = 1000
BATCH = 50_000


def email_for(i: int) -> str:
    return f"person{i}@bench.example"


class VaultBench:
    """A vault of ``size`` identities in ``db_path``, grown in place (10 k → 100 k → 1 M)."""

    def __init__(self, db_path: Path, keys_dir: Path, keys_passphrase: str | None) -> None:
        keyring = Keyring(keys_dir, passphrase=keys_passphrase)
        self.pepper = keyring.pepper
        self.pairwise_key = PairwiseKey(keyring.pairwise_key)
        self.sealer = Sealer(keyring.dpo_public_key)
        self.db_path = db_path
        self.store = SQLiteStore(db_path)
        self.vault = Vault(self.store, pepper=self.pepper, sealer=self.sealer)
        self.size = 0
        self.pseudonyms_path = db_path.with_suffix(".pseudonyms.txt")
        self._seals: list[str] = []
        self.seed_seconds: dict[int, float] = {}

    def grow_to(self, size: int) -> float:
        """Add identities ``self.size … size - 1``; returns the seconds it took."""
        started = time.perf_counter()
        if not self._seals:
            self._seals = [self.sealer.seal(email_for(i).encode()) for i in range(DISTINCT_SEALS)]
            self.vault.pseudonymise(email_for(-1))  # the service creates the table and its indexes
        names = list(IDENTITIES.fields)
        sql = f'INSERT INTO "{IDENTITIES.name}" ({", ".join(names)}) VALUES ({", ".join("?" * len(names))})'
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
        now = int(time.time())
        with conn, open(self.pseudonyms_path, "a", encoding="ascii") as listing:
            conn.execute("PRAGMA synchronous=OFF")
            while self.size < size:
                end = min(size, self.size + BATCH)
                rows = []
                for i in range(self.size, end):
                    pseudonym = base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()
                    index = hmac.new(self.pepper, email_for(i).encode(), hashlib.sha256).hexdigest()
                    rows.append((pseudonym, index, self._seals[i % DISTINCT_SEALS], now, None, IDENTITY_ACTIVE, now))
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
                listing.writelines(row[0] + "\n" for row in rows)
                self.size = end
        conn.close()
        seconds = time.perf_counter() - started
        self.seed_seconds[size] = seconds
        return seconds

    def measure(self, *, lookups: int, creates: int, rounds: int) -> dict[str, Any]:
        """pseudonymise latency for returning people (random existing addresses) and for new
        people (first login: a miss, a seal and a durable insert); medians over ``rounds``."""
        found_p50, found_p99, new_p50, new_p99 = [], [], [], []
        for _ in range(rounds):
            latencies = []
            for i in random.sample(range(self.size), lookups):
                t = time.perf_counter()
                result = self.vault.pseudonymise(email_for(i))
                latencies.append(time.perf_counter() - t)
                assert not result.created
            found_p50.append(percentile(latencies, 50))
            found_p99.append(percentile(latencies, 99))
            latencies = []
            for _ in range(creates):
                email = f"new-{secrets.token_hex(8)}@bench.example"
                t = time.perf_counter()
                result = self.vault.pseudonymise(email)
                latencies.append(time.perf_counter() - t)
                assert result.created
            new_p50.append(percentile(latencies, 50))
            new_p99.append(percentile(latencies, 99))
        ms = 1e3
        return {
            "identities": self.size,
            "resolve_p50_ms": statistics.median(found_p50) * ms,
            "resolve_p99_ms": statistics.median(found_p99) * ms,
            "create_p50_ms": statistics.median(new_p50) * ms,
            "create_p99_ms": statistics.median(new_p99) * ms,
            "lookups_per_round": lookups, "creates_per_round": creates, "rounds": rounds,
            "seed_seconds": round(self.seed_seconds.get(self.size, 0.0), 1),
            "db_mb": round(sum(p.stat().st_size for p in self.db_path.parent.glob(self.db_path.name + "*"))
                           / 2**20),
        }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


BREACH_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, {scripts!r}); sys.path.insert(0, {root!r})
from bench_breach import MemorySampler  # the breach engineer's sampler (process tree RSS and CPU)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from identity.audit import AuditLog
from identity.audit_signing import ServiceSigner
from identity.breach.resolve import ResolveParams, resolve_pseudonyms
from identity.store import SQLiteStore
store = SQLiteStore(Path({db!r}))
params = ResolveParams(incident="BENCH", operator="bench", reason="benchmark", pseudonyms=Path({listing!r}),
                       dpo_key=tuple(Path(p) for p in {dpo_key!r}), dpo_public=Path({dpo_public!r}),
                       passphrase={passphrase!r}, sector={sector!r},
                       out=Path({out!r}), progress=False)
sampler = MemorySampler(); sampler.start()
started, cpu = time.perf_counter(), time.process_time()
summary = resolve_pseudonyms(store, AuditLog(store, signer=ServiceSigner(Ed25519PrivateKey.generate())), params)
seconds = time.perf_counter() - started
main_cpu = time.process_time() - cpu
sampler.stop()
print(json.dumps({{"seconds": seconds, "resolved": summary.counts["resolved"], "summary": summary.line(),
                  "main_cpu_seconds": main_cpu, "workers_cpu_seconds": sum(sampler.cpu.values()),
                  "peak_rss_mb_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_rss_mb_all": sampler.peak_total_kb / 1024}}))
"""


def breach_run(bench: VaultBench, *, dpo_key: Sequence[Path], dpo_public: Path, passphrase: str, workdir: Path,
               count: int, sector: str | None = None) -> dict[str, Any]:
    """One ``resolve_pseudonyms`` run over the first ``count`` seeded pseudonyms, in a fresh process;
    with ``sector``, over their pairwise subjects of that sector (mapping rows recorded first, once)."""
    listing = workdir / f"breach-{count}.txt"
    if not listing.exists():
        with open(bench.pseudonyms_path, encoding="ascii") as src, open(listing, "w", encoding="ascii") as dst:
            for n, line in enumerate(src):
                if n >= count:
                    break
                dst.write(line)
    if sector is not None:
        subjects = workdir / f"breach-{count}-subjects.txt"
        if not subjects.exists():
            seconds = seed_sector_subjects(bench.store, bench.pairwise_key, sector, listing, subjects)
            bench.seed_seconds[-count] = seconds  # the subjects' rows, recorded as the service records them
        listing = subjects
    out = workdir / f"breach-out-{secrets.token_hex(4)}.csv"
    code = BREACH_CHILD.format(scripts=str(ROOT / "scripts"), root=str(ROOT), db=str(bench.db_path),
                               listing=str(listing), dpo_key=[str(p) for p in dpo_key], dpo_public=str(dpo_public),
                               passphrase=passphrase, out=str(out), sector=sector)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    for path in workdir.glob(out.name + "*"):
        path.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"breach run failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["per_second"] = result["resolved"] / result["seconds"]
    result["pseudonyms"] = count
    result["sector"] = sector
    return result
