#!/usr/bin/env python3
"""Benchmark the breach run: seed N identities in an SQLite store, resolve them all, report time and memory.

  python bench/bench_breach.py --n 1000000 [--dir DIR] [--workers N] [--chunk 1000] [--distinct-seals 1000]
                                 [--sector NAME]

``--sector NAME`` resolves the people's pairwise subjects of that sector instead of their pseudonyms
(a data set leaked by one service): every subject's mapping row is recorded first, as the service
records it, and the run reads those rows before the vault.

Uses its own development keys and database under DIR (default: a new temporary directory; an
existing DIR with the same N is reused, so seeding happens once). Prints one JSON object: wall
seconds, resolutions per second, CPU seconds of the main process and of the workers, and the peak
resident memory of the main process and of all processes together (sampled every 0.1 s;
the workers are the fork server's children).
Target: 1,000,000 pseudonyms in < 60 s and < 300 MB on a 2-core machine.

Next to the run (0.5 s just before and just after it) it measures the crypto limit the way
``bench/bench.py`` does: sealed-box opens per CPU-second of one process (``bindings.crypto_box_seal_open``),
and gives the run's ratio to that limit times the cores. The machine is shared, so it also prints the
load average at the start and the end, and opens per CPU-second of the run's processes together.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path


from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AuditLog
from identity.audit_signing import ServiceSigner
from identity.breach.resolve import ResolveParams, resolve_pseudonyms
from identity.cli import emit, run, say
from identity.keys import Keyring, init_keys
from identity.pairwise import PairwiseKey
from identity.store import SQLiteStore
from seed import IdentitySeeder, seed_sector_subjects

SAMPLE_SECONDS = 0.1
OPEN_RATE_SECONDS = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_breach.py", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="identities to seed and resolve")
    parser.add_argument("--dir", type=Path, help="working directory (reused when it holds the same N)")
    parser.add_argument("--workers", type=int, default=None, help="opening processes (default: one a core)")
    parser.add_argument("--chunk", type=int, default=1000, help="pseudonyms per store read and per worker task")
    parser.add_argument("--distinct-seals", type=int, default=1000,
                        help="e-mails actually sealed while seeding (reused; every record still costs one open)")
    parser.add_argument("--sector", metavar="NAME", help="resolve pairwise subjects of this sector, not pseudonyms")
    return parser.parse_args()


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return found


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren, …: the fork server's workers are grandchildren."""
    found, queue = [], _children(pid)
    while queue:
        child = queue.pop()
        found.append(child)
        queue += _children(child)
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class MemorySampler(threading.Thread):
    """Peak RSS of this process plus all its descendants, and their CPU seconds (Linux /proc)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_total_kb = 0
        self.cpu: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.wait(SAMPLE_SECONDS):
            others = _descendants(me)
            self.peak_total_kb = max(self.peak_total_kb, _rss_kb(me) + sum(_rss_kb(p) for p in others))
            for pid in others:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), _cpu_seconds(pid))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def open_rate(seconds: float) -> float:
    """Sealed-box opens per CPU-second of this process (as ``bench/bench.py`` measures the limit)."""
    from nacl import bindings
    from nacl.public import PrivateKey, SealedBox

    dpo = PrivateKey.generate()
    sealed = SealedBox(dpo.public_key).encrypt(b"person1@bench.example")
    public, private = bytes(dpo.public_key), bytes(dpo)
    bindings.crypto_box_seal_open(sealed, public, private)
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        for _ in range(20):
            bindings.crypto_box_seal_open(sealed, public, private)
        count += 20
    return count / max(time.process_time() - cpu, 1e-9)


def _load() -> float:
    return os.getloadavg()[0]


def prepare(directory: Path, n: int, distinct_seals: int) -> tuple[SQLiteStore, Path]:
    marker, listing = directory / "seeded.json", directory / "pseudonyms.txt"
    if marker.exists() and json.loads(marker.read_text()).get("n") == n:
        return SQLiteStore(directory / "bench.sqlite3"), listing
    if not (directory / "keys").exists():
        init_keys(directory / "keys", passphrase=None, dpo_passphrase=None, development=True, now=time.time())
    for stale in (listing, directory / "sector-seeded.json", *directory.glob("bench.sqlite3*")):
        stale.unlink(missing_ok=True)  # another N: a vault of its own
    store = SQLiteStore(directory / "bench.sqlite3")
    say(f"seeding {n:,} identities in {directory} …")
    seeder = IdentitySeeder(store, Keyring(directory / "keys", passphrase=None), listing, distinct_seals=distinct_seals)
    marker.write_text(json.dumps({"n": n, "seed_seconds": round(seeder.grow_to(n), 1)}))
    return store, listing


def prepare_sector(directory: Path, store: SQLiteStore, n: int, sector: str, pseudonyms: Path) -> Path:
    """The people's subjects in ``sector``, their mapping rows recorded (once per directory, N and sector)."""
    marker, listing = directory / "sector-seeded.json", directory / "subjects.txt"
    if marker.exists() and json.loads(marker.read_text()) == {"n": n, "sector": sector}:
        return listing
    say(f"recording {n:,} pairwise subjects of {sector} …")
    key = PairwiseKey(Keyring(directory / "keys", passphrase=None).pairwise_key)
    seconds = seed_sector_subjects(store, key, sector, pseudonyms, listing)
    say(f"recorded in {seconds:.1f} s")
    marker.write_text(json.dumps({"n": n, "sector": sector}))
    return listing


def dpo_key(keys: Path) -> tuple[Path, ...]:
    """Two of the development key set's shares (a directory made before the shares: its whole key)."""
    shares = sorted(keys.glob("dpo_share_*.json"))
    return tuple(shares[:2]) if shares else (keys / "dpo_private.pem",)


def main() -> int:
    args = parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-breach-"))
    directory.mkdir(parents=True, exist_ok=True)
    store, listing = prepare(directory, args.n, args.distinct_seals)
    if args.sector:
        listing = prepare_sector(directory, store, args.n, args.sector, listing)
    out = directory / f"out-{int(time.time())}.csv"
    params = ResolveParams(incident="BENCH", operator="bench", reason="benchmark", pseudonyms=listing,
                           sector=args.sector,
                           dpo_key=dpo_key(directory / "keys"),
                           dpo_public=directory / "keys" / "dpo_public.pem", out=out, workers=args.workers,
                           chunk_size=args.chunk)
    load_before, opens_before = _load(), open_rate(OPEN_RATE_SECONDS)
    sampler = MemorySampler()
    sampler.start()
    started, cpu = time.perf_counter(), time.process_time()
    audit = AuditLog(store, signer=ServiceSigner(Ed25519PrivateKey.generate()))  # a throwaway audit key
    summary = resolve_pseudonyms(store, audit, params)
    seconds = time.perf_counter() - started
    main_cpu = time.process_time() - cpu
    sampler.stop()
    load_after, opens_after = _load(), open_rate(OPEN_RATE_SECONDS)
    opens = (opens_before + opens_after) / 2
    per_second = summary.counts["resolved"] / seconds
    workers_cpu = sum(sampler.cpu.values())
    emit({
        "n": args.n, "list": f"pairwise subjects of {args.sector}" if args.sector else "pseudonyms",
        "summary": summary.line(), "seconds": round(seconds, 2),
        "per_second": round(per_second),
        "main_cpu_seconds": round(main_cpu, 2), "workers_cpu_seconds": round(workers_cpu, 2),
        "sealed_box_open_per_core": round(opens), "sealed_box_open_per_core_before_after": [round(opens_before),
                                                                                              round(opens_after)],
        "ratio_to_open_limit_all_cores": round(per_second / (opens * (os.cpu_count() or 1)), 3),
        "resolved_per_cpu_second": round(summary.counts["resolved"] / max(main_cpu + workers_cpu, 1e-9)),
        "load_average_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "peak_rss_mb_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_mb_all_processes": round(sampler.peak_total_kb / 1024),
        "cores": os.cpu_count(), "workers": args.workers or os.cpu_count(), "directory": str(directory),
    })
    for path in (out, Path(f"{out}.unresolved.csv"), Path(f"{out}.state")):
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    run(main)
