"""The benchmarks under ``bench/``: their one seeder (on every backend) and the breach benchmark's smallest run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from identity.keys import Keyring
from identity.pairwise import PairwiseKey, SubjectMap
from identity.sealing import Opener
from identity.store import Store
from identity.vault import IDENTITIES, IDENTITY_ACTIVE
from tests.breach_support import dpo_private_key
from tests.lookup_support import present

ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


seed = _bench_module("seed")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=300)


def test_the_seeder_grows_a_vault_the_vault_itself_finds_its_people_in(store: Store, keys_dir: Path,
                                                                        tmp_path: Path):
    listing = tmp_path / "pseudonyms.txt"
    seeder = seed.IdentitySeeder(store, Keyring(keys_dir, passphrase=None), listing, distinct_seals=3)
    assert seeder.grow_to(4) >= 0 and seeder.grow_to(7) >= 0 and seeder.size == 7
    pseudonyms = listing.read_text().splitlines()
    assert len(set(pseudonyms)) == 7 == store.count(IDENTITIES, {"status": IDENTITY_ACTIVE})
    for i, pseudonym in enumerate(pseudonyms):  # a returning person's login finds exactly the seeded record
        found = seeder.vault.pseudonymise(seed.email_for(i))
        assert not found.created and found.identity.pseudonym == pseudonym
    dpo = Opener(dpo_private_key(keys_dir))
    opened = [dpo.open(present(store.get(IDENTITIES, p))["sealed_email"]) for p in pseudonyms]
    assert opened == [seed.email_for(i % 3).encode() for i in range(7)]  # 3 distinct seals, reused


def test_the_seeder_refuses_a_store_that_already_holds_its_people(store: Store, keys_dir: Path, tmp_path: Path):
    keyring = Keyring(keys_dir, passphrase=None)
    seed.IdentitySeeder(store, keyring, tmp_path / "first.txt").grow_to(3)
    with pytest.raises(RuntimeError, match="seed an empty one"):
        seed.IdentitySeeder(store, keyring, tmp_path / "second.txt").grow_to(3)


def test_seeded_pairwise_subjects_resolve_as_the_services_own(store: Store, keys_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(seed, "BULK_BATCH", 2)  # cross a few batches
    keyring = Keyring(keys_dir, passphrase=None)
    pseudonyms, subjects = tmp_path / "pseudonyms.txt", tmp_path / "subjects.txt"
    seed.IdentitySeeder(store, keyring, pseudonyms).grow_to(5)
    key = PairwiseKey(keyring.pairwise_key)
    assert seed.seed_sector_subjects(store, key, "diary.example", pseudonyms, subjects, count=4) >= 0
    listed, people = subjects.read_text().splitlines(), pseudonyms.read_text().splitlines()
    mapping = SubjectMap(store)
    assert listed == [key.subject("diary.example", p) for p in people[:4]]
    assert [mapping.resolve("diary.example", s) for s in listed] == people[:4]
    assert mapping.sectors() == ["diary.example"]


def test_the_breach_benchmark_seeds_and_measures(tmp_path: Path):
    result = _run("bench_breach.py", "--n", "300", "--dir", str(tmp_path / "bench"), "--distinct-seals", "10",
                  "--chunk", "50")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["summary"] == "resolved=300 unknown=0 erased=0 malformed=0"
    # workers may come and go between two samples of a short run: only the main process is sure to be seen
    assert report["seconds"] > 0 and report["peak_rss_mb_main"] > 0
    assert not list((tmp_path / "bench").glob("out-*"))  # its output is removed
    again = _run("bench_breach.py", "--n", "200", "--dir", str(tmp_path / "bench"), "--distinct-seals", "10")
    assert again.returncode == 0, again.stderr.decode()  # another N in the same directory: a vault of its own
    assert json.loads(again.stdout)["summary"] == "resolved=200 unknown=0 erased=0 malformed=0"


def test_make_bench_runs_bench_py_which_starts():
    assert "$(BIN)/python bench/bench.py $(BENCH_ARGS)" in (ROOT / "Makefile").read_text()
    result = _run("bench.py", "--help")
    assert result.returncode == 0 and b"--quick" in result.stdout, result.stderr.decode()


def test_the_record_says_which_rsa_code_the_sign_rate_comes_from(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench = _bench_module("bench")
    monkeypatch.delenv("OPENSSL_ia32cap", raising=False)
    assert bench.rsa_path({"avx2", "avx512ifma"}) == "AVX-512 IFMA"
    assert bench.rsa_path({"avx2"}) == "without AVX-512 IFMA"
    monkeypatch.setenv("OPENSSL_ia32cap", bench.WITHOUT_IFMA)  # what --without-ifma starts everything with
    assert bench.rsa_path({"avx2", "avx512ifma"}) == f"AVX-512 IFMA hidden (OPENSSL_ia32cap={bench.WITHOUT_IFMA})"
    assert bench.machine()["rsa"] in {"AVX-512 IFMA hidden (OPENSSL_ia32cap=:~0x200000)", "without AVX-512 IFMA"}
