"""The operator and DPO tools: ``python scripts/NAME.py`` in a checkout, or, once the package is installed
(``make setup``; pyproject.toml), the console command ``identity-NAME`` (``identity-breach-contact`` for
``scripts/breach_contact.py``). Installed, this directory is the package ``identity_scripts``; each tool
keeps its code in its own file, and a command runs exactly what ``python scripts/NAME.py`` runs."""

from __future__ import annotations

import importlib
from typing import NoReturn

from identity.cli import run


def _run(tool: str) -> NoReturn:
    run(importlib.import_module(f"{__name__}.{tool}").main)


def serve_command() -> NoReturn:
    _run("serve")


def keys_command() -> NoReturn:
    _run("keys")


def store_command() -> NoReturn:
    _run("store")


def clients_command() -> NoReturn:
    _run("clients")


def audiences_command() -> NoReturn:
    _run("audiences")


def subjects_command() -> NoReturn:
    _run("subjects")


def audit_command() -> NoReturn:
    _run("audit")


def breach_contact_command() -> NoReturn:
    _run("breach_contact")


def four_eyes_command() -> NoReturn:
    _run("four_eyes")
