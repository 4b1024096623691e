"""Sending notices through SMTP: settings from ``IDENTITY_SMTP_*``, retries with backoff.

| variable | default | meaning |
| --- | --- | --- |
| ``IDENTITY_SMTP_HOST`` | — (required for ``--notify``) | the mail server |
| ``IDENTITY_SMTP_PORT`` | 587 (starttls), 465 (tls), 25 (none) | its port |
| ``IDENTITY_SMTP_SECURITY`` | ``starttls`` | ``starttls``, ``tls`` (implicit TLS) or ``none`` (loopback hosts only) |
| ``IDENTITY_SMTP_USERNAME`` / ``IDENTITY_SMTP_PASSWORD`` | — | both or neither; never over ``none`` |
| ``IDENTITY_SMTP_FROM`` | — (required) | the sender (the DPO's mailbox), ``address`` or ``Name <address>`` |
| ``IDENTITY_SMTP_CA_FILE`` | system CAs | a CA bundle to verify the server with |
| ``IDENTITY_SMTP_TIMEOUT`` | 30 | seconds per SMTP operation |
| ``IDENTITY_SMTP_ATTEMPTS`` | 4 | tries per message before it counts as failed |
| ``IDENTITY_SMTP_BACKOFF`` | 2 | seconds before the first retry; doubled each time |

Certificates and host names are always verified. A reply code is kept for the audit log, never
the server's text, which often repeats the recipient's address. A message is retried only when it
certainly was not accepted (a 4xx reply, or a connection lost before ``DATA``); if the connection
drops while the message itself is being sent, the outcome is *uncertain* and it is not resent.
"""

from __future__ import annotations

import ipaddress
import os
import random
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import parseaddr
from typing import Any, Callable, Mapping

from ..config import ConfigError, EnvReader

STARTTLS, TLS, NONE = "starttls", "tls", "none"
DEFAULT_PORTS = {STARTTLS: 587, TLS: 465, NONE: 25}
SENT, FAILED, UNCERTAIN = "sent", "failed", "uncertain"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    sender: str
    port: int = 587
    security: str = STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0
    attempts: int = 4
    backoff: float = 2.0

    @property
    def envelope_sender(self) -> str:
        """The bare address of ``sender`` (which may carry a display name) for ``MAIL FROM``."""
        return parseaddr(self.sender)[1]

    def describe(self) -> str:
        """For the operator: where messages go (no secret)."""
        login = f", as {self.username}" if self.username else ""
        return f"{self.host}:{self.port} ({self.security}{login}) from {self.sender}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_smtp_settings(env: Mapping[str, str] | None = None) -> SmtpSettings:
    """Read and check ``IDENTITY_SMTP_*``; raise ``ConfigError`` listing every problem."""
    read = EnvReader(os.environ if env is None else env)
    problems = read.problems
    host = read.text("IDENTITY_SMTP_HOST")
    sender = read.text("IDENTITY_SMTP_FROM")
    security = (read.text("IDENTITY_SMTP_SECURITY", STARTTLS) or STARTTLS).lower()
    if not host:
        problems.append("IDENTITY_SMTP_HOST is required to send notices")
    if not sender or "@" not in parseaddr(sender)[1]:
        problems.append("IDENTITY_SMTP_FROM must be the sender's e-mail address (optionally 'Name <address>')")
    if security not in DEFAULT_PORTS:
        problems.append(f"IDENTITY_SMTP_SECURITY must be starttls, tls or none, got {security!r}")
        security = STARTTLS
    username, password = read.text("IDENTITY_SMTP_USERNAME"), read.text("IDENTITY_SMTP_PASSWORD")
    if bool(username) != bool(password):
        problems.append("IDENTITY_SMTP_USERNAME and IDENTITY_SMTP_PASSWORD must be set together")
    if security == NONE and host and not _is_loopback(host):
        problems.append("IDENTITY_SMTP_SECURITY=none is allowed only for a mail server on this host (loopback)")
    if security == NONE and username:
        problems.append("IDENTITY_SMTP_USERNAME needs starttls or tls: credentials never travel in clear")
    ca_file = read.text("IDENTITY_SMTP_CA_FILE")
    if ca_file and not os.path.isfile(ca_file):
        problems.append(f"IDENTITY_SMTP_CA_FILE {ca_file!r} is not a file")
    settings = SmtpSettings(
        host=host or "", sender=sender or "", security=security, username=username, password=password,
        port=read.integer("IDENTITY_SMTP_PORT", DEFAULT_PORTS[security], minimum=1, maximum=65535),
        ca_file=ca_file,
        timeout=read.number("IDENTITY_SMTP_TIMEOUT", 30.0, minimum=1, maximum=600),
        attempts=read.integer("IDENTITY_SMTP_ATTEMPTS", 4, minimum=1, maximum=20),
        backoff=read.number("IDENTITY_SMTP_BACKOFF", 2.0, minimum=0, maximum=300),
    )
    if problems:
        raise ConfigError(problems)
    return settings


@dataclass(frozen=True)
class Delivery:
    """What became of one message: ``sent``, ``failed`` or ``uncertain`` (never the address)."""

    outcome: str
    attempts: int
    code: int | None = None
    error: str | None = None

    def details(self) -> dict[str, Any]:
        return {k: v for k, v in (("attempts", self.attempts), ("smtp_code", self.code), ("error", self.error))
                if v is not None}


class MailServerUnavailable(Exception):
    """The server could not be reached (or refused our login) after every retry; nothing was sent."""


class _Refused(Exception):
    def __init__(self, code: int, stage: str) -> None:
        super().__init__(f"{stage} refused with {code}")
        self.code, self.stage = code, stage


class _Uncertain(Exception):
    """The connection failed while the message itself was being transferred."""


class Mailer:
    """One SMTP connection, reused for many messages, reopened when it breaks."""

    def __init__(self, settings: SmtpSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._conn: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == TLS:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls_context())
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.security == STARTTLS:
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if s.username:
                conn.login(s.username, s.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                self._conn.close()
            self._conn = None

    def _backoff(self, attempt: int) -> None:
        delay = self.settings.backoff * 2 ** (attempt - 1)
        if delay:
            self._sleep(delay + random.uniform(0, delay / 4))

    def deliver(self, recipient: str, message: EmailMessage) -> Delivery:
        """Send one message, retrying what certainly failed; ``MailServerUnavailable`` if unreachable."""
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._transmit(self._conn, recipient, message)
                return Delivery(SENT, attempt)
            except smtplib.SMTPAuthenticationError as exc:
                self.close()
                raise MailServerUnavailable(f"the mail server refused the login ({exc.smtp_code})") from exc
            except _Uncertain:
                self._drop()
                return Delivery(UNCERTAIN, attempt, error="connection lost during DATA")
            except _Refused as exc:
                if exc.code >= 500:
                    return Delivery(FAILED, attempt, exc.code, f"{exc.stage} refused")
                if attempt == attempts:
                    return Delivery(FAILED, attempt, exc.code, f"{exc.stage} deferred")
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                if attempt == attempts:
                    raise MailServerUnavailable(f"cannot talk to the mail server: {type(exc).__name__}") from exc
            self._backoff(attempt)
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _transmit(self, conn: smtplib.SMTP, recipient: str, message: EmailMessage) -> None:
        """MAIL, RCPT, DATA one step at a time, so a failure's stage (and so its certainty) is known."""
        sender = self.settings.envelope_sender
        utf8 = not (recipient.isascii() and sender.isascii())
        if utf8 and not conn.has_extn("smtputf8"):
            raise _Refused(553, "recipient (server lacks SMTPUTF8)")
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])
        payload = message.as_bytes(policy=SMTPUTF8 if utf8 else SMTP)
        code, _ = conn.mail(sender, options)
        if code != 250:
            self._reset(conn)
            raise _Refused(code, "sender")
        code, _ = conn.rcpt(recipient)
        if code not in (250, 251):
            self._reset(conn)
            raise _Refused(code, "recipient")
        try:
            code, _ = conn.data(payload)
        except smtplib.SMTPDataError as exc:  # refused before the message was transferred
            raise _Refused(exc.smtp_code, "data") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _Uncertain() from exc
        if code != 250:
            self._reset(conn)
            raise _Refused(code, "message")

    @staticmethod
    def _reset(conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            pass
