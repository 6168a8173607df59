"""Where the lake lives: a local folder or an S3 prefix, behind one pyarrow FileSystem.

Everything above this module (commit, read, views) sees a ``StoreLocation``: a pyarrow
filesystem plus a root path inside it, so the local and S3 stores run the same code.

S3 credentials come from the standard AWS chain (environment variables, shared
credentials file, profile) as resolved by botocore; the endpoint from
``store.endpoint_url`` or ``AWS_ENDPOINT_URL``. Retries with exponential backoff are the
AWS SDK's standard strategy (``store.max_retries``). Credentials are held in memory only:
every error message leaving this package is passed through :func:`redact`.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from oreal_core.config import StoreConfig
from oreal_core.store.errors import StorageUnavailable, StoreError


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret, even in a traceback's locals
        return "S3Credentials(<redacted>)"


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach the object store; ``host`` is empty for AWS itself."""

    scheme: str = "https"
    host: str = ""  # host:port, e.g. 127.0.0.1:9000
    region: str = "us-east-1"
    attempts: int = 1  # per request: 1 + store.max_retries, with the SDK's exponential backoff
    credentials: S3Credentials | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoreLocation:
    """A filesystem, the lake root inside it, and how DuckDB spells that root."""

    fs: pafs.FileSystem
    root: str  # path inside ``fs``: /abs/folder or bucket/prefix
    uri: str  # the same place as DuckDB reads it: /abs/folder or s3://bucket/prefix
    s3: S3Endpoint | None = None

    @property
    def is_s3(self) -> bool:
        return self.s3 is not None

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri_of(self, path: str) -> str:
        """The DuckDB-readable URI of a path inside ``fs``."""
        return f"s3://{path}" if self.is_s3 else path

    def secrets(self) -> tuple[str, ...]:
        creds = self.s3.credentials if self.s3 else None
        if creds is None:
            return ()
        return tuple(s for s in (creds.access_key, creds.secret_key, creds.session_token) if s)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def storage_error(location: StoreLocation, what: str, exc: BaseException) -> StorageUnavailable:
    """A StorageUnavailable naming the operation and place, with credentials scrubbed."""
    if location.s3 is None:
        return StorageUnavailable(f"{what} failed on lake {location.root}: {exc}")
    where = f"s3://{location.root} at {location.s3.host or 'AWS'} (up to {location.s3.attempts} attempts)"
    return StorageUnavailable(redact(f"{what} failed on lake {where}: {exc}", location.secrets()))


def write_durably(path: str, payload: bytes) -> None:
    """Write a local file and fsync it and its folder. The commit is a rename that follows:
    without the fsync a power loss after it could leave a committed name over empty bytes."""
    make_dirs_durably(os.path.dirname(path))
    with open(path, "wb") as out:
        out.write(payload)
        out.flush()
        os.fsync(out.fileno())
    fsync_dir(os.path.dirname(path))


def rename_durably(src: str, dst: str) -> None:
    """The local commit: an atomic rename, then fsync of the folder that now holds the name."""
    make_dirs_durably(os.path.dirname(dst))
    os.replace(src, dst)
    fsync_dir(os.path.dirname(dst))


def make_dirs_durably(path: str) -> None:
    """``mkdir -p`` that also fsyncs the parent of each folder it creates (a new step=<n>/)."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        os.makedirs(folder, exist_ok=True)
        fsync_dir(os.path.dirname(folder))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def outside_lake(location: StoreLocation, url: str) -> str | None:
    """The normalised ``s3://bucket/key`` of ``url`` if it lies outside an S3 lake, else None.

    The key is normalised with posixpath.normpath semantics first: the HTTP layer resolves
    ``..`` segments, so ``s3://b/lake/../other`` reads ``other`` although it starts with the
    lake's prefix.
    """
    bucket, _, key = url.split("://", 1)[1].partition("/")
    key = posixpath.normpath(key) if key else ""
    key = "" if key == "." else key
    root_bucket, _, prefix = location.root.partition("/")
    escapes = key == ".." or key.startswith("../")
    within = not prefix or key == prefix or key.startswith(prefix + "/")
    return None if bucket == root_bucket and within and not escapes else f"s3://{bucket}/{key}"


def open_location(cfg: StoreConfig) -> StoreLocation:
    """Resolve ``store.uri`` to a filesystem; nothing is created or contacted yet."""
    if cfg.uri.startswith("s3://"):
        return _open_s3(cfg)
    if "://" in cfg.uri:
        raise StoreError(f"store.uri={cfg.uri!r}: only local paths and s3://bucket/prefix are supported")
    root = Path(cfg.uri).expanduser().resolve().as_posix()
    return StoreLocation(fs=pafs.LocalFileSystem(), root=root, uri=root)


def _open_s3(cfg: StoreConfig) -> StoreLocation:
    parsed = urlparse(cfg.uri)
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    if not bucket:
        raise StoreError(f"store.uri={cfg.uri!r}: no bucket name")
    endpoint = _resolve_endpoint(cfg)
    creds = endpoint.credentials
    fs = pafs.S3FileSystem(
        access_key=creds.access_key if creds else None,
        secret_key=creds.secret_key if creds else None,
        session_token=creds.session_token if creds else None,
        anonymous=creds is None,
        region=endpoint.region,
        scheme=endpoint.scheme,
        endpoint_override=endpoint.host or None,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=endpoint.attempts),
        connect_timeout=5,
        request_timeout=60,
        allow_bucket_creation=False,
        check_directory_existence_before_creation=False,
    )
    root = posixpath.join(bucket, prefix) if prefix else bucket
    return StoreLocation(fs=fs, root=root, uri=f"s3://{root}", s3=endpoint)


def _resolve_endpoint(cfg: StoreConfig) -> S3Endpoint:
    import boto3  # the standard credential chain; imported lazily (local lakes don't need it)

    url = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    scheme, host = "https", ""
    if url:
        parsed = urlparse(url if "://" in url else f"https://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StoreError(f"store.endpoint_url={url!r}: expected http(s)://host[:port]")
        scheme, host = parsed.scheme, parsed.netloc
    session = boto3.Session()
    region = cfg.region or session.region_name or "us-east-1"
    found = session.get_credentials()
    creds = None
    if found is not None:
        frozen = found.get_frozen_credentials()
        creds = S3Credentials(frozen.access_key, frozen.secret_key, frozen.token)
    return S3Endpoint(scheme=scheme, host=host, region=region, attempts=cfg.max_retries + 1, credentials=creds)
