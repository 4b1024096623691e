"""The two ways a breach run ends early."""

from __future__ import annotations


class Refused(Exception):
    """The run was refused before any e-mail was opened; the message says why (never an address)."""


class BreachError(Exception):
    """The run started but could not finish; its progress is kept, so running it again resumes."""
