"""The project's error types: every user-facing failure is an :class:`OksposeError`.

The CLI prints an ``OksposeError`` as one line and exits with code 2; any other exception is a bug in
okspose and keeps its traceback.
"""

from __future__ import annotations


class OksposeError(Exception):
    """A mistake in the user's input (file, record, setting, checkpoint, device); the message names it."""


class ConfigError(OksposeError):
    """A config file, override or setting that does not fit the schema or the model."""


class DataError(OksposeError):
    """Input data that cannot be used; the message names the file and the record."""


class CheckpointError(OksposeError):
    """A checkpoint that is missing, corrupt, or does not fit the model it is loaded into."""
