"""The dataset pipeline's error and warning types."""

from __future__ import annotations

from alm_offline.errors import AlmError, AlmWarning


class DatasetError(AlmError):
    """A dataset that cannot be read, written or used; the message is one line."""


class DatasetWarning(AlmWarning):
    """Something about a dataset the user should know (e.g. inferred episode ends)."""
