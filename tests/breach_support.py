"""Helpers shared by the breach-contact tests: a populated vault, parameters, officers, an SMTP server."""

from __future__ import annotations

import csv
import datetime
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from identity.audit import AuditLog
from identity.breach import ceremony
from identity.breach.officers import sign_claim
from identity.breach.registry import Registry
from identity.breach.resolve import ResolveParams
from identity.keys import Keyring
from identity.keys.dpo_shares import unlock
from identity.keys.files import load_dpo_public_key, private_key_pem
from identity.sealing import Sealer
from identity.store import Store
from identity.vault import IDENTITIES, IDENTITY_ERASED, IDENTITY_RESTRICTED, Vault
from tests.audit_support import signed_log

EMAILS = [f"person{i}@example.org" for i in range(12)]


@dataclass
class Population:
    """Twelve people in a vault: one erased, one restricted; the list file names them all."""

    pseudonyms: dict[str, str]  # pseudonym → e-mail (only those still resolvable)
    erased: str
    restricted: str
    order: list[str] = field(default_factory=list)


def populate(store: Store, keys_dir: Path) -> Population:
    keyring = Keyring(keys_dir, passphrase=None)
    vault = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key))
    order = [vault.pseudonymise(email).identity.pseudonym for email in EMAILS]
    erased, restricted = order[3], order[5]
    store.update(IDENTITIES, {"pseudonym": erased},
                 {"status": IDENTITY_ERASED, "sealed_email": None, "blind_index": None})
    store.update(IDENTITIES, {"pseudonym": restricted}, {"status": IDENTITY_RESTRICTED})
    resolvable = {p: e for p, e in zip(order, EMAILS) if p != erased}
    return Population(resolvable, erased, restricted, order)


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def params(tmp_path: Path, keys_dir: Path, listing: Path, **overrides: Any) -> ResolveParams:
    values: dict[str, Any] = dict(
        incident="INC-2026-01", operator="dpo.jansen", reason="tracking data leaked from the analytics bucket",
        pseudonyms=listing, dpo_key=tuple(dpo_shares(keys_dir)[:2]), dpo_public=keys_dir / "dpo_public.pem",
        out=tmp_path / "contacts.csv", workers=0, chunk_size=4, progress=False,
    )
    values.update(overrides)
    return ResolveParams(**values)


def dpo_shares(keys_dir: Path) -> list[Path]:
    """The development key set's share files (``keys.py init`` writes three, two open)."""
    return sorted(keys_dir.glob("dpo_share_*.json"))


def dpo_private_key(keys_dir: Path) -> X25519PrivateKey:
    """The DPO private key, rebuilt from two development shares (what a breach run does in memory)."""
    public = load_dpo_public_key(keys_dir / "dpo_public.pem")
    return unlock(dpo_shares(keys_dir)[:2], public, lambda share: None).private_key


def encrypted_dpo_key(keys_dir: Path, target: Path, passphrase: str) -> Path:
    """A whole DPO key file (a vault not yet moved to shares), encrypted with ``passphrase``."""
    key = dpo_private_key(keys_dir)
    target.write_bytes(private_key_pem(key, passphrase))
    target.chmod(0o600)
    return target


def other_x25519_key(target: Path) -> Path:
    target.write_bytes(private_key_pem(X25519PrivateKey.generate(), None))
    return target


class FailingStore:
    """Delegates to a real store but fails the n-th read of identities (a lost connection)."""

    def __init__(self, inner: Store, fail_on_call: int, error: BaseException | None) -> None:
        self._inner, self._left, self._error = inner, fail_on_call, error

    def find(self, coll: Any, where: Any, **kwargs: Any) -> Any:
        self._count(coll)
        return self._inner.find(coll, where, **kwargs)

    def find_fields(self, coll: Any, where: Any, fields: Any, **kwargs: Any) -> Any:
        self._count(coll)
        return self._inner.find_fields(coll, where, fields, **kwargs)

    def _count(self, coll: Any) -> None:
        if coll.name == "identities":
            self._left -= 1
            if self._left == 0 and self._error is not None:
                raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# -- officers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Officer:
    """An officer's name and private key (generated in memory: tests need no key files)."""

    name: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def proof(self) -> str:
        return sign_claim(self.name, self.key)


def found(registry: Registry, first: Officer, second: Officer, *, now: float | None = None) -> None:
    """The founding ceremony: ``first`` writes and signs the statement, ``second`` countersigns and founds."""
    started = ceremony.start(first.name, first.key, second.name, second.key.public_key(),
                             now=time.time() if now is None else now)
    registry.found(started.sign(second.name, second.key), by=second.name)


def enrol(registry: Registry, newcomer: Officer, by: Officer, confirmed_by: Officer) -> None:
    """``by`` enrols ``newcomer``; ``confirmed_by`` confirms (the two signatures an enrolment needs)."""
    for officer in (by, confirmed_by):
        registry.enrol(newcomer.name, newcomer.key.public_key(), newcomer.proof, by=officer.name, signer=officer.key)


# -- a real SMTP server on 127.0.0.1 (aiosmtpd) ---------------------------------------------------


class Inbox:
    """Collects delivered messages; ``plan`` scripts replies (e.g. ``["451 busy", None]``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.plan: list[str | None] = []
        self.fail_for: dict[str, str] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd calls the hook by this name
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                if rcpt in self.fail_for:
                    return self.fail_for[rcpt]
            scripted = self.plan.pop(0) if self.plan else None
            if scripted:
                return scripted
            self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"

    def recipients(self) -> list[str]:
        return [r for rcpts, _ in self.messages for r in rcpts]


def self_signed_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 and localhost; returns the CA file and the server's context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


NOTICE: dict[str, Any] = {
    "organisation": "Voorbeeld B.V.",
    "dpo_contact": "Functionaris gegevensbescherming, privacy@voorbeeld.nl, 020 123 4567",
    "nl": {"nature": "Een onbeveiligde opslag met klikgedrag was een week openbaar.",
           "consequences": "Anderen kunnen zien welke pagina's u bekeek; misbruik voor phishing is mogelijk.",
           "measures": "De opslag is afgesloten, de toegang onderzocht en de Autoriteit Persoonsgegevens ingelicht."},
    "en": {"nature": "An unprotected store of click data was public for a week.",
           "consequences": "Others could see which pages you viewed; it could be used for phishing.",
           "measures": "The store was closed, access investigated and the Dutch DPA informed.",
           "advice": "Do not click links in unexpected e-mails that mention this incident."},
}


@pytest.fixture
def people(store: Store, keys_dir: Path) -> Population:
    """The standard breach population in ``store`` (import the fixture into a test module to use it)."""
    return populate(store, keys_dir)


@pytest.fixture
def audit(store: Store) -> AuditLog:
    """A signed audit log in ``store``."""
    return signed_log(store)


def rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file the breach run wrote."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))
