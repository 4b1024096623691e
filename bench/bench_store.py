"""The vault and the breach path at scale, on the embedded SQLite store (used by ``bench/bench.py``).

Seeding is ``bench/seed.py``'s (the store's bulk insert; each document with the real pseudonym and blind
index the vault would make, so ``Vault.pseudonymise`` finds it exactly as it finds a returning
person; ``DISTINCT_SEALS`` sealed addresses reused: every record still costs one full open in the
breach run, which is what it measures).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence


from identity.keys import Keyring
from identity.pairwise import PairwiseKey
from identity.store import SQLiteStore
from seed import IdentitySeeder, email_for, seed_sector_subjects

ROOT = Path(__file__).resolve().parent.parent


class VaultBench:
    """A vault of ``size`` identities in ``db_path``, grown in place (10 k → 100 k → 1 M)."""

    def __init__(self, db_path: Path, keys_dir: Path, keys_passphrase: str | None) -> None:
        keyring = Keyring(keys_dir, passphrase=keys_passphrase)
        self.pairwise_key = PairwiseKey(keyring.pairwise_key)
        self.db_path = db_path
        self.store = SQLiteStore(db_path)
        self.pseudonyms_path = db_path.with_suffix(".pseudonyms.txt")
        self.seeder = IdentitySeeder(self.store, keyring, self.pseudonyms_path)
        self.vault = self.seeder.vault
        self.seed_seconds: dict[int, float] = {}

    @property
    def size(self) -> int:
        return self.seeder.size

    def grow_to(self, size: int) -> float:
        """Add identities ``self.size … size - 1``; returns the seconds it took."""
        seconds = self.seed_seconds[size] = self.seeder.grow_to(size)
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
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
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
    code = BREACH_CHILD.format(bench=str(ROOT / "bench"), root=str(ROOT), db=str(bench.db_path),
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
