"""What can go wrong in the lake, one exception type per kind so callers can react.

Every message names the run, step, table or key involved and never contains credentials
(see ``oreal_core.store.filesystems.redact``).
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class: the lake could not do what was asked."""


class InvalidRunId(StoreError, ValueError):
    """A run id that could name a path outside its run directory."""


class RunNotFound(StoreError):
    """No run manifest for this run id."""


class ArtefactNotFound(StoreError):
    """No committed artefact for this (run, step, table)."""


class ArtefactExists(StoreError):
    """The artefact is already committed and overwrite was not asked for."""


class ConfigMismatch(StoreError):
    """A run is resumed under a different configuration than it was started with."""


class CodeVersionMismatch(StoreError):
    """A run is resumed under other code than it was started with, and that was not allowed."""


class SchemaError(StoreError, ValueError):
    """A table does not fit its lake schema, or an artefact has another schema version."""


class ChecksumMismatch(StoreError):
    """A committed artefact's data file does not match its manifest (missing, another size or
    sha256, or unreadable): one line naming run, step, table and file (integrity.mismatch)."""


class StorageUnavailable(StoreError):
    """The filesystem or object store failed (after retries for S3)."""


class QueryRefused(StoreError, ValueError):
    """A query that is not read-only, or not a single statement."""


class QueryFailed(StoreError):
    """A read-only query that DuckDB could not run (syntax, unknown column, I/O)."""


class PromptsMismatch(StoreError):
    """A run is resumed with a prompt set whose content differs from the one it started with."""


class RunLocked(StoreError):
    """Another process holds the run: two writers of one run would collide on every commit."""


class QueryTimeout(QueryFailed):
    """A query ran past ``store.query_timeout_s`` and was interrupted."""
