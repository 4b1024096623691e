"""The DPO key as k-of-n share files: two holders open, one opens nothing, every wrong file is refused."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from identity.keys.dpo_shares import (PASSPHRASE_KDF, Holder, KeyMaterialError, create_key_set, fingerprint,
                                      read_share, unlock, write_key_set)

PASSPHRASES = {"anna": "anna's own long passphrase", "bram": "bram kept his in a safe",
               "carl": "carl: correct horse battery"}


class Asked:
    """A holder at the prompt: answers from ``PASSPHRASES``, records who was asked."""

    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.answers = PASSPHRASES if answers is None else answers
        self.asked: list[str] = []

    def __call__(self, share) -> str | None:
        self.asked.append(share.holder)
        return self.answers.get(share.holder)


@pytest.fixture(scope="module")
def key_set_dir(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("dpo-set")
    key_set = create_key_set([Holder(n, p) for n, p in PASSPHRASES.items()], 2)
    return key_set, write_key_set(directory, key_set)


@pytest.fixture
def shares(key_set_dir, tmp_path: Path) -> list[Path]:
    """Copies of the three share files (tests may alter them)."""
    return [Path(shutil.copy(path, tmp_path / path.name)) for path in key_set_dir[1]]


@pytest.fixture
def public(key_set_dir):
    return key_set_dir[0].public_key


def raw_private_bytes(key) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def test_any_two_different_shares_open_and_give_the_vaults_key(shares, public):
    keys = set()
    for pair in itertools.combinations(shares, 2):
        unlocked = unlock(list(pair), public, Asked())
        assert fingerprint(unlocked.private_key.public_key()) == fingerprint(public)
        keys.add(raw_private_bytes(unlocked.private_key))
    assert len(keys) == 1
    details = unlock([shares[2], shares[0]], public, Asked()).audit_details()
    assert details["shares"] == [{"index": 3, "holder": "carl"}, {"index": 1, "holder": "anna"}]
    assert details["threshold"] == 2 and "passphrase" not in json.dumps(details)


def test_one_share_opens_nothing(shares, public):
    for share in shares:
        asked = Asked()
        with pytest.raises(KeyMaterialError, match="2 different shares of DPO key set .* needed .* 1 given"):
            unlock([share], public, asked)
        assert asked.asked == []  # refused before any passphrase is asked for


def test_the_same_share_given_twice_counts_once(shares, public, tmp_path: Path):
    copy = Path(shutil.copy(shares[0], tmp_path / "renamed-copy.json"))
    for given in ([shares[0], shares[0]], [shares[0], copy]):
        with pytest.raises(KeyMaterialError, match="1 given \\(the same share was given more than once"):
            unlock(given, public, Asked())
    assert unlock([shares[0], copy, shares[1]], public, Asked()).private_key  # with a second holder it opens


def test_a_wrong_passphrase_is_refused_clearly(shares, public):
    wrong = Asked({"anna": PASSPHRASES["anna"], "bram": "not bram's passphrase"})
    with pytest.raises(KeyMaterialError) as refused:
        unlock([shares[0], shares[1]], public, wrong)
    message = str(refused.value)
    assert f"cannot unlock {shares[1]} (share 2 of 3, holder bram): wrong passphrase" in message
    assert "not bram" not in message and PASSPHRASES["anna"] not in message


def test_no_passphrase_without_a_terminal_is_refused(shares, public):
    with pytest.raises(KeyMaterialError, match="no passphrase for .*holder anna.*run on a terminal"):
        unlock([shares[0], shares[1]], public, lambda share: None)


def test_shares_of_another_key_set_are_refused(shares, public, tmp_path: Path):
    other = write_key_set(tmp_path / "other", create_key_set([Holder("anna", "a" * 12), Holder("bram", "b" * 12)], 2,
                                                              development=True))
    with pytest.raises(KeyMaterialError, match="is a share of another DPO key .* not of this vault's dpo_public.pem"):
        unlock([shares[0], other[1]], public, Asked())
    with pytest.raises(KeyMaterialError, match="is a share of another DPO key"):  # a whole other set, too
        unlock(other, public, Asked())


def test_two_sets_of_the_same_key_do_not_mix(shares, public, tmp_path: Path):
    forged = json.loads(shares[1].read_text())
    forged["set"] = "0123456789abcdef"
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(KeyMaterialError, match="belong to different DPO key sets"):
        unlock([shares[0], tmp_path / "forged.json"], public, Asked())


def test_altered_files_are_refused(shares, public):
    for field, value in (("holder", "mallory"), ("index", 3)):
        doc = json.loads(shares[1].read_text())
        original = shares[1].read_text()
        doc[field] = value
        shares[1].write_text(json.dumps(doc))
        with pytest.raises(KeyMaterialError, match="wrong passphrase \\(or the file was altered\\)|both claim share 3"):
            unlock([shares[0], shares[1], shares[2]] if field == "index" else [shares[0], shares[1]], public,
                   Asked(PASSPHRASES | {"mallory": PASSPHRASES["bram"]}))
        shares[1].write_text(original)
    doc = json.loads(shares[1].read_text())
    doc["private_key"] = doc["private_key"][:-4] + ("AAAA" if not doc["private_key"].endswith("AAAA") else "BBBB")
    shares[1].write_text(json.dumps(doc))
    with pytest.raises(KeyMaterialError, match="disagrees with .* a file was altered"):
        unlock([shares[0], shares[1]], public, Asked())


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"format": "something else"}',
                                     b'{"format": "identity-dpo-share/1", "shares": true}'])
def test_malformed_files_are_refused(content, shares, public, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(KeyMaterialError, match="is not a DPO share file"):
        unlock([shares[0], bad], public, Asked())
    with pytest.raises(KeyMaterialError, match="cannot read"):
        read_share(tmp_path / "missing.json")


def test_only_the_needed_holders_are_asked(shares, public):
    asked = Asked()
    unlock(shares, public, asked)
    assert asked.asked == ["anna", "bram"]


def test_files_are_private_and_never_hold_the_whole_key(key_set_dir, shares, public):
    key = unlock(shares[:2], public, Asked()).private_key
    raw = raw_private_bytes(key)
    for path in key_set_dir[1]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        content = path.read_bytes()
        assert raw not in content and raw.hex().encode() not in content
        assert not any(p.encode() in content for p in PASSPHRASES.values())
        share = read_share(path)
        assert share.kdf == PASSPHRASE_KDF and not share.development


def test_three_of_five(tmp_path: Path):
    holders = [Holder(f"h{i}", "x") for i in range(5)]
    key_set = create_key_set(holders, 3, development=True)
    paths = write_key_set(tmp_path, key_set)
    with pytest.raises(KeyMaterialError, match="3 different shares .* 2 given"):
        unlock(paths[1:3], key_set.public_key, Asked())
    for trio in itertools.combinations(paths, 3):
        assert fingerprint(unlock(list(trio), key_set.public_key, Asked()).private_key.public_key()) == \
            fingerprint(key_set.public_key)


@pytest.mark.parametrize("names, threshold, problem", [
    (["a", "b", "c"], 1, "one share must never be enough"),
    (["a", "b"], 3, "threshold ≤ holders"),
    (["a"], 2, "threshold ≤ holders"),
    (["a", "a"], 2, "named once"),
    (["a", "b c"], 2, "holder names"),
])
def test_a_key_set_one_person_could_open_is_not_made(names, threshold, problem):
    with pytest.raises(KeyMaterialError, match=problem):
        create_key_set([Holder(n, "p") for n in names], threshold, development=True)


def test_write_refuses_to_overwrite(tmp_path: Path):
    key_set = create_key_set([Holder("a", "p"), Holder("b", "p")], 2, development=True)
    write_key_set(tmp_path, key_set)
    with pytest.raises(KeyMaterialError, match="already exists"):
        write_key_set(tmp_path, key_set)
