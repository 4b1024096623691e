"""Settings: read once from ``IDENTITY_*`` environment variables and validated together."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, overload
from urllib.parse import urlsplit

from .addresses import TrustedProxies, parse_trusted_proxies
from .audit_heads import heads_spec_problems
from .metrics_exporter import parse_bind as parse_metrics_bind
from .store.mongo import mongo_tls_problem
from .verify.http import is_loopback_host

DEVELOPMENT = "development"
PRODUCTION = "production"
DEFAULT_DB_URI = "sqlite:///var/identity.sqlite3"
DEFAULT_DEV_ISSUER = "http://127.0.0.1:5000"


class ConfigError(Exception):
    """Every configuration problem found at start-up, one per line, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    """The validated service configuration. ``repr`` never shows a secret."""

    env: str = DEVELOPMENT
    env_explicit: bool = False  # IDENTITY_ENV was set: the development IdP is never served by omission
    issuer: str = DEFAULT_DEV_ISSUER
    db_uri: str = DEFAULT_DB_URI
    keys_dir: Path = Path("keys")
    keys_passphrase: str | None = field(default=None, repr=False)
    access_token_ttl: int = 600
    id_token_ttl: int = 600
    code_ttl: int = 60
    refresh_token_ttl: int = 30 * 24 * 3600
    refresh_token_idle_ttl: int = 14 * 24 * 3600
    pending_login_ttl: int = 600
    upstream_issuer: str | None = None
    upstream_client_id: str | None = None
    upstream_client_secret: str | None = field(default=None, repr=False)
    upstream_timeout: float = 5.0
    rate_limit_storage_uri: str = "memory://"
    rate_limits_enabled: bool = True
    trusted_proxies: TrustedProxies = TrustedProxies()
    four_eyes_required: bool | None = None
    log_level: str = "INFO"
    audit_heads: str | None = None  # IDENTITY_AUDIT_HEADS; None: the store's default (identity/audit_heads.py)
    metrics_bind: tuple[str, int] | None = None  # IDENTITY_METRICS_BIND: /metrics on its own listener (serve.py)

    def __repr__(self) -> str:
        return f"Settings({self.redacted()})"

    @property
    def is_production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def issuer_is_https(self) -> bool:
        return urlsplit(self.issuer).scheme == "https"

    @property
    def longest_signed_token_ttl(self) -> int:
        """How long a retired signing key must stay published (access and ID tokens)."""
        return max(self.access_token_ttl, self.id_token_ttl)

    @property
    def requires_four_eyes(self) -> bool:
        """Breach resolutions need a second officer: by default in production only."""
        if self.four_eyes_required is None:
            return self.is_production
        return self.four_eyes_required

    def redacted(self) -> dict[str, object]:
        """The settings as a dict fit for printing: secrets replaced by a marker."""
        shown: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.repr:
                value = "<set>" if value else "<unset>"
            elif isinstance(value, (Path, TrustedProxies)):
                value = str(value)
            shown[f.name] = value
        shown["db_uri"] = _redact_uri_password(self.db_uri)
        shown["rate_limit_storage_uri"] = _redact_uri_password(self.rate_limit_storage_uri)
        return shown


def _redact_uri_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri


class EnvReader:
    """Reads IDENTITY_* style variables, collecting problems so that all are reported at once (also used by
    the breach path's SMTP settings)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    @overload
    def text(self, name: str) -> str | None: ...
    @overload
    def text(self, name: str, default: str) -> str: ...
    @overload
    def text(self, name: str, default: str | None) -> str | None: ...

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number of seconds, got {raw!r}")
            return default
        if not minimum <= value <= maximum:
            self.problems.append(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if not minimum <= value <= maximum:
            self.problems.append(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def flag(self, name: str, default: bool | None) -> bool | None:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate ``IDENTITY_*`` variables; raise ``ConfigError`` listing every problem."""
    read = EnvReader(os.environ if env is None else env)
    problems = read.problems

    explicit_mode = read.text("IDENTITY_ENV")
    mode = explicit_mode or DEVELOPMENT
    if mode not in (DEVELOPMENT, PRODUCTION):
        problems.append(f"IDENTITY_ENV must be 'development' or 'production', got {mode!r}")
        mode = PRODUCTION  # validate the rest as strictly as possible
    production = mode == PRODUCTION

    issuer = read.text("IDENTITY_ISSUER")
    if issuer is None:
        if production:
            problems.append("IDENTITY_ISSUER is required in production (the public https base URL)")
        issuer = DEFAULT_DEV_ISSUER
    issuer = issuer.rstrip("/")
    problems.extend(_issuer_problems(issuer, production=production))
    if explicit_mode is None and not _is_loopback_url(issuer):
        problems.append(f"IDENTITY_ENV is not set and IDENTITY_ISSUER ({issuer}) is not a loopback address: "
                        "set IDENTITY_ENV=production (or IDENTITY_ENV=development for a development set-up)")

    db_uri = read.text("IDENTITY_DB_URI", DEFAULT_DB_URI)
    if not db_uri.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
        problems.append("IDENTITY_DB_URI must start with sqlite:///, mongodb:// or mongodb+srv://")

    passphrase = read.text("IDENTITY_KEYS_PASSPHRASE")
    if production and not passphrase:
        problems.append("IDENTITY_KEYS_PASSPHRASE is required in production (private keys are encrypted)")

    upstream = (
        read.text("IDENTITY_UPSTREAM_ISSUER"),
        read.text("IDENTITY_UPSTREAM_CLIENT_ID"),
        read.text("IDENTITY_UPSTREAM_CLIENT_SECRET"),
    )
    if any(upstream) and not all(upstream):
        problems.append(
            "IDENTITY_UPSTREAM_ISSUER, IDENTITY_UPSTREAM_CLIENT_ID and IDENTITY_UPSTREAM_CLIENT_SECRET "
            "must be set together"
        )
    if production and not all(upstream):
        problems.append("IDENTITY_UPSTREAM_* must be set in production (the development IdP is refused)")
    if upstream[0] and production and urlsplit(upstream[0]).scheme != "https":
        problems.append("IDENTITY_UPSTREAM_ISSUER must be an https URL in production")

    log_level = (read.text("IDENTITY_LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"IDENTITY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    try:
        trusted_proxies = parse_trusted_proxies(read.text("IDENTITY_TRUSTED_PROXIES"))
    except ValueError as exc:
        problems.append(f"IDENTITY_TRUSTED_PROXIES {exc}")
        trusted_proxies = TrustedProxies()

    audit_heads = read.text("IDENTITY_AUDIT_HEADS")
    problems.extend(heads_spec_problems(audit_heads, production=production))

    metrics_bind = None
    if read.text("IDENTITY_METRICS_BIND"):
        try:
            metrics_bind = parse_metrics_bind(read.text("IDENTITY_METRICS_BIND") or "")
        except ValueError as exc:
            problems.append(f"IDENTITY_METRICS_BIND: {exc}")

    settings = Settings(
        env=mode,
        env_explicit=explicit_mode is not None,
        issuer=issuer,
        db_uri=db_uri,
        keys_dir=Path(read.text("IDENTITY_KEYS_DIR", "keys") or "keys"),
        keys_passphrase=passphrase,
        access_token_ttl=read.integer("IDENTITY_ACCESS_TOKEN_TTL", 600, minimum=30, maximum=3600),
        id_token_ttl=read.integer("IDENTITY_ID_TOKEN_TTL", 600, minimum=30, maximum=3600),
        code_ttl=read.integer("IDENTITY_CODE_TTL", 60, minimum=5, maximum=60),
        refresh_token_ttl=read.integer(
            "IDENTITY_REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=300, maximum=180 * 24 * 3600
        ),
        refresh_token_idle_ttl=read.integer(
            "IDENTITY_REFRESH_TOKEN_IDLE_TTL", 14 * 24 * 3600, minimum=300, maximum=180 * 24 * 3600
        ),
        pending_login_ttl=read.integer("IDENTITY_PENDING_LOGIN_TTL", 600, minimum=60, maximum=3600),
        upstream_issuer=upstream[0].rstrip("/") if upstream[0] else None,
        upstream_client_id=upstream[1],
        upstream_client_secret=upstream[2],
        upstream_timeout=read.number("IDENTITY_UPSTREAM_TIMEOUT", 5.0, minimum=0.1, maximum=60),
        rate_limit_storage_uri=read.text("IDENTITY_RATE_LIMIT_STORAGE_URI", "memory://") or "memory://",
        rate_limits_enabled=bool(read.flag("IDENTITY_RATE_LIMITS_ENABLED", True)),
        trusted_proxies=trusted_proxies,
        four_eyes_required=read.flag("IDENTITY_FOUR_EYES_REQUIRED", None),
        log_level=log_level,
        audit_heads=audit_heads,
        metrics_bind=metrics_bind,
    )
    if production:
        problems.extend(_production_safety_problems(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def _issuer_problems(issuer: str, *, production: bool) -> list[str]:
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"IDENTITY_ISSUER must be an absolute http(s) URL, got {issuer!r}"]
    if parts.query or parts.fragment:
        return ["IDENTITY_ISSUER must not have a query or fragment (RFC 8414 §2)"]
    if production and parts.scheme != "https":
        return ["IDENTITY_ISSUER must use https in production"]
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return [f"IDENTITY_ISSUER must use https (plain http only on a loopback address, e.g. {DEFAULT_DEV_ISSUER})"]
    return []


def _is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


def _production_safety_problems(settings: Settings) -> list[str]:
    """Protections production may not switch off, each refused with its reason."""
    problems: list[str] = []
    if not settings.rate_limits_enabled:
        problems.append("IDENTITY_RATE_LIMITS_ENABLED=false is refused in production "
                        "(client secrets and logins could be tried without limit)")
    if settings.four_eyes_required is False:
        problems.append("IDENTITY_FOUR_EYES_REQUIRED=false is refused in production "
                        "(one officer alone could turn pseudonyms into e-mail addresses)")
    tls = mongo_tls_problem(settings.db_uri)
    if tls:
        problems.append(f"IDENTITY_DB_URI is refused in production: {tls}")
    return problems
