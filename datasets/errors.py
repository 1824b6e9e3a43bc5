"""The dataset pipeline's error and warning types."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset that cannot be read, written or used; the message is one line."""


class DatasetWarning(UserWarning):
    """Something about a dataset the user should know (e.g. inferred episode ends)."""
