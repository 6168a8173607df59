"""Retraining fixtures: the real S3 API on 127.0.0.1 for the S3 cases."""

from tests.store.conftest import BUCKET, s3_server  # noqa: F401 - the real S3 API, for the S3 cases
