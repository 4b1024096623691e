"""The service objects one app (or one script) works with, built once from ``Settings``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .account_sessions import AccountSessions
from .audit import AuditLog, HeadsUnavailable, check_heads_sink, open_audit_log
from .audit_heads import heads_spec_problems
from .audit_signing import audit_key_production_problems
from .config import ConfigError, Settings
from .email_change import EmailChanges
from .keys import KeyMaterialError, KeyPaths, Keyring
from .keys.passphrase import passphrase_problem
from .oauth import OAuthServer, build_oauth
from .oauth.self_audience import ensure_self_audience
from .rights import SubjectRights
from .signins import SignIns
from .sealing import Sealer
from .store import ClientFactory, Store, open_store
from .vault import Vault

Clock = Callable[[], float]
log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler or an operator script needs; kept on ``app.extensions``."""

    settings: Settings
    store: Store
    keyring: Keyring
    vault: Vault
    audit: AuditLog
    oauth: OAuthServer
    rights: SubjectRights
    email_changes: EmailChanges
    signins: SignIns
    account_sessions: AccountSessions
    clock: Clock = field(default=time.time)

    def derived_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for ``purpose``, derived from the pepper (HKDF, domain-separated)."""
        return derive_secret(self.keyring.pepper, purpose)


def derive_secret(pepper: bytes, purpose: str) -> bytes:
    """HKDF-SHA256 of the pepper with ``purpose`` as info: independent keys from one secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"identity-service", info=purpose.encode()).derive(pepper)


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    mongo_client_factory: ClientFactory | None = None,
    mongo_operation_timeout: float | None = None,
) -> Services:
    """Open key material and the store; refuse unsafe production set-ups with ``ConfigError``.

    ``mongo_operation_timeout``: the deadline of each MongoDB operation (``open_store``); None for the
    operator scripts, whose index builds and purges may take long.
    """
    clock = clock or time.time
    try:
        keyring = Keyring(settings.keys_dir, passphrase=settings.keys_passphrase)
    except KeyMaterialError as exc:
        raise ConfigError([f"IDENTITY_KEYS_DIR ({settings.keys_dir}): {exc}"]) from exc
    if settings.is_production:
        problems = keyring.production_problems() + audit_key_production_problems(KeyPaths(settings.keys_dir))
        problems += heads_spec_problems(settings.audit_heads, production=True)
        if problems:
            raise ConfigError([f"refusing to start in production: {p}" for p in problems])
        weak = passphrase_problem(settings.keys_passphrase, production=True)
        if weak:  # not refused: a deployment made before the rule must still start, to be fixed
            log.warning("IDENTITY_KEYS_PASSPHRASE is weak: %s; change it with `python scripts/keys.py passphrase`", weak)
    store = store or open_store(settings.db_uri, mongo_client_factory=mongo_client_factory,
                                mongo_operation_timeout=mongo_operation_timeout)
    vault = Vault(store, pepper=keyring.pepper, sealer=Sealer(keyring.dpo_public_key), clock=clock)
    audit = build_audit_log(settings, store, clock=clock)
    oauth = build_oauth(settings, store=store, vault=vault, keyring=keyring, clock=clock,
                        client_secret_key=derive_secret(keyring.pepper, "client-secret-hash-v1"))
    account_sessions = AccountSessions(store, csrf_key=derive_secret(keyring.pepper, "account-csrf-v1"), clock=clock)
    rights = SubjectRights(store=store, vault=vault, grants=oauth.grants, clients=oauth.clients,
                           subjects=oauth.subjects, audit=audit, consents=oauth.consents, sessions=account_sessions,
                           clock=clock)
    signins = SignIns(oauth.authorizer)
    email_changes = EmailChanges(store=store, vault=vault, grants=oauth.grants, consents=oauth.consents,
                                 sessions=account_sessions, signins=signins, audit=audit,
                                 ttl=settings.pending_login_ttl, clock=clock)
    ensure_self_audience(oauth.audiences, keyring, issuer=settings.issuer)
    return Services(settings=settings, store=store, keyring=keyring, vault=vault, audit=audit, oauth=oauth,
                    rights=rights, email_changes=email_changes, signins=signins, account_sessions=account_sessions,
                    clock=clock)


def build_audit_log(settings: Settings, store: Store, *, clock: Clock) -> AuditLog:
    """The service's audit log (service audit key, configured heads sink); ``ConfigError`` without its key.

    A heads sink that cannot take heads at start is logged, not fatal: like the store, it may recover,
    and until then every audited action answers 503 rather than leave a head unexported.
    """
    try:
        audit = open_audit_log(settings, store, check=False, clock=clock)
    except KeyMaterialError as exc:
        raise ConfigError([f"IDENTITY_KEYS_DIR ({settings.keys_dir}): {exc}"]) from exc
    try:
        check_heads_sink(audit)
    except HeadsUnavailable as exc:
        log.warning("%s; audited actions will answer 503 until it can", exc)
    return audit
