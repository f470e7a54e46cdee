"""``python -m testbed.moto_s3 [moto_server args]``: moto's server, answering like S3 for
buckets that do not exist.

S3 authenticates a request (the signature), then looks the bucket up, then evaluates
policies: a correctly signed request for a bucket that does not exist gets 404
NoSuchBucket whatever the caller may do. moto evaluates IAM before it looks the bucket
up, so a user scoped to one bucket would get 403 AccessDenied for a missing one, and
"bucket not found" could not be told from "not allowed". This launcher makes moto's
access-denied answer fall back to NoSuchBucket when the bucket does not exist; signature
and access-key checks are untouched. If moto's internals ever move, it runs moto as is and
says so in the log.
"""

from __future__ import annotations

import sys
from typing import Any


def _answer_missing_buckets_like_s3() -> None:
    try:
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.s3.exceptions import MissingBucket, S3AccessDeniedError
        from moto.s3.models import s3_backends

        original = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action
        registry = s3_backends.bucket_accounts  # bucket name -> (partition, account)
    except (ImportError, AttributeError) as exc:  # pragma: no cover - a moto upgrade
        print(f"[testbed] moto_s3: not patching missing-bucket answers: {exc!r}",
              file=sys.stderr, flush=True)
        return

    def authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None
                  ) -> None:
        try:
            original(self, bucket_name=bucket_name, key_name=key_name)
        except S3AccessDeniedError:  # signature and key errors are other classes
            if bucket_name and bucket_name not in registry:
                raise MissingBucket(bucket=bucket_name) from None
            raise

    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = (  # type: ignore[method-assign]
        authorize)


def main() -> None:
    _answer_missing_buckets_like_s3()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
