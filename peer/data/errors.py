"""Errors raised while reading datasets."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""
