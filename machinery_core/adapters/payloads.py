"""S3: the payload bucket, where an event's payloads past the threshold are kept
(domain/payloads.py says which). The one place S3's error codes become domain errors.

Objects are named `events/{event id}/{sha256 of the JSON}`: written once, never changed, so
a put of a value already stored is skipped by whoever knows it is there, and a read never
goes stale. The bucket's lifecycle rule removes them with their event's retention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from machinery_core.domain.errors import NotFound, PayloadStoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def object_key(event_id: str, ref: str) -> str:
    return f"events/{event_id}/{ref}"


class PayloadBucket:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, event_id: str, ref: str, body: bytes) -> None:
        with _mapped(f"payload {ref} of event {event_id!r}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=object_key(event_id, ref),
                Body=body,
                ContentType="application/json",
            )

    def get(self, event_id: str, ref: str) -> bytes:
        with _mapped(f"payload {ref} of event {event_id!r}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=object_key(event_id, ref))
            body: bytes = answer["Body"].read()
            return body


class _mapped:
    """S3's errors as domain errors: a missing object is NotFound; anything else that is
    S3's or the network's, after botocore's retries, is PayloadStoreUnavailable."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, _: object) -> None:
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise NotFound(f"{self.what} does not exist") from error
            raise PayloadStoreUnavailable(
                f"the payload store did not answer for {self.what} ({code}); try again"
            ) from error
        if isinstance(error, BotoCoreError):
            raise PayloadStoreUnavailable(
                f"the payload store did not answer for {self.what}; try again"
            ) from error
