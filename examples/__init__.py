"""Runnable examples of services built on this repository's libraries."""
