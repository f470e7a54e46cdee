"""Reason codes of the ``Ready`` condition, and what each means for retries and kstatus.

One table (``POLICY``) says, per reason, whether a person must act (``Stalled=True``, which
kstatus reads as Failed and Argo CD as Degraded) and whether retrying can help at all.
The controller, the status writer, the client and the docs all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """``Ready`` condition reasons of an ExternalStorage (docs/api.md lists what to do)."""

    VALIDATED = "Validated"
    VALIDATING = "Validating"  # Ready=Unknown: the current generation is being validated
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason name, not a secret
    SECRET_KEY_MISSING = "SecretKeyMissing"  # noqa: S105 - a reason name
    AMBIENT_CREDENTIALS_DISABLED = "AmbientCredentialsDisabled"
    INVALID_CREDENTIALS = "InvalidCredentials"
    ACCESS_DENIED = "AccessDenied"
    BUCKET_NOT_FOUND = "BucketNotFound"
    ENDPOINT_UNREACHABLE = "EndpointUnreachable"
    TIMEOUT = "Timeout"
    SERVICE_ERROR = "ServiceError"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    ENDPOINT_NOT_BOUND = "EndpointNotBound"  # the credentials Secret does not name it
    CA_BUNDLE_TOO_LARGE = "CABundleTooLarge"
    INTERNAL_ERROR = "InternalError"
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class ReasonPolicy:
    """``stalled``: only a person can fix it (a spec, Secret, IAM or bucket change), so
    ``Stalled=True`` is published; the operator still retries with backoff, because the
    fix may happen outside Kubernetes (an IAM grant, a created bucket).
    ``retry``: False only where nothing but a new spec generation can help."""

    stalled: bool
    retry: bool = True


POLICY: dict[Reason, ReasonPolicy] = {
    Reason.VALIDATED: ReasonPolicy(stalled=False),
    Reason.VALIDATING: ReasonPolicy(stalled=False),
    Reason.INVALID_SPEC: ReasonPolicy(stalled=True, retry=False),
    Reason.SECRET_NOT_FOUND: ReasonPolicy(stalled=True),
    Reason.SECRET_KEY_MISSING: ReasonPolicy(stalled=True),
    Reason.AMBIENT_CREDENTIALS_DISABLED: ReasonPolicy(stalled=True),
    Reason.INVALID_CREDENTIALS: ReasonPolicy(stalled=True),
    Reason.ACCESS_DENIED: ReasonPolicy(stalled=True),
    Reason.BUCKET_NOT_FOUND: ReasonPolicy(stalled=True),
    Reason.ENDPOINT_NOT_ALLOWED: ReasonPolicy(stalled=True),
    # the spec names an endpoint its credentials Secret does not: fix either one
    Reason.ENDPOINT_NOT_BOUND: ReasonPolicy(stalled=True),
    # spec.tls.caSecretRef holds more than the installation's cap
    Reason.CA_BUNDLE_TOO_LARGE: ReasonPolicy(stalled=True),
    # the network or the service failed: it may work on the next attempt
    Reason.ENDPOINT_UNREACHABLE: ReasonPolicy(stalled=False),
    Reason.TIMEOUT: ReasonPolicy(stalled=False),
    Reason.SERVICE_ERROR: ReasonPolicy(stalled=False),
    Reason.INTERNAL_ERROR: ReasonPolicy(stalled=False),
    Reason.SUSPENDED: ReasonPolicy(stalled=False),
}


def is_stalled(reason: str) -> bool:
    """Whether a failure with ``reason`` needs a person (unknown reasons: no)."""
    try:
        return POLICY[Reason(reason)].stalled
    except ValueError:
        return False


def is_retried(reason: str) -> bool:
    """Whether the operator retries a failure with ``reason`` on its own."""
    try:
        return POLICY[Reason(reason)].retry
    except ValueError:
        return True
