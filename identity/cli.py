"""Plumbing shared by the operator scripts: one JSON object on stdout, diagnostics on stderr."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Any, NoReturn

from .config import ConfigError, Settings, load_settings
from .keys.dpo_shares import ShareFile
from .services import Services, build_services
from .store import StoreUnavailable


class CommandError(Exception):
    """A refusal or failure reported to the operator; the exit status is 1 unless given."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def emit(payload: Any) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A diagnostic for the operator (stderr, never mixed with the JSON output)."""
    print(message, file=sys.stderr)


def fail(message: str, exit_code: int = 1) -> NoReturn:
    say(f"error: {message}")
    raise SystemExit(exit_code)


def settings_from_environment() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), exit_code=2)


def services_from_environment() -> Services:
    """The same services the web app uses, from the same ``IDENTITY_*`` environment."""
    try:
        return build_services(settings_from_environment())
    except ConfigError as exc:
        fail(str(exc), exit_code=2)


def passphrase_from(variable: str, prompt: str) -> str | None:
    """The passphrase in ``variable``, else asked for on a terminal, else None."""
    value = os.environ.get(variable)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt) or None
    return None


def share_passphrase(share: ShareFile) -> str | None:
    """A DPO key share's holder types its passphrase (on a terminal; None otherwise): one prompt per holder."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(f"{share.holder}: passphrase of DPO key share {share.index} of {share.count} "
                           f"({share.path}): ") or None


def operator_name() -> str:
    """Who runs the command, for the audit log (``IDENTITY_OPERATOR`` or the login name)."""
    name = os.environ.get("IDENTITY_OPERATOR")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run(main: Any) -> NoReturn:
    """Run a script's ``main()``, turning ``CommandError`` into a clean message and exit code."""
    try:
        code = main()
    except CommandError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except StoreUnavailable as exc:
        fail(f"the store is unavailable: {exc}", 3)
    raise SystemExit(code or 0)
