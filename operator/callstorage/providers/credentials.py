"""Reading a provider's keys out of its credentials Secret, and keeping them out of messages.

Every value read through ``SecretKeys`` is remembered, so the provider can pass any text it
is about to publish (an SDK's error message, a URL) through ``redact`` first: SDKs quote
access key ids, account names with keys, or request details in some of their errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.storagetypes.base import AUTHORITY_HOST_KEY, ENDPOINT_KEY, TOKEN_URI_KEY

REDACTED = "***"
# Shorter values (a one-letter test secret) would redact ordinary words out of messages.
_MIN_REDACT_LENGTH = 4
# Keys that say where the credentials may go, not what they are: messages name endpoints.
NOT_SENSITIVE_KEYS = frozenset({ENDPOINT_KEY, AUTHORITY_HOST_KEY, TOKEN_URI_KEY})
# What a key id, secret, token or client id is made of: visible ASCII. Whitespace, control
# and non-ASCII characters inside one come from a bad paste; sent in a header they fail as
# a "network" error (or split the header), so they are refused before any request.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class SecretKeys:
    """The decoded keys of one credentials Secret; ``what`` names it in messages."""

    def __init__(self, inputs: ProviderInputs, what: str) -> None:
        self._data = dict(inputs.secret or {})
        self.what = what
        self.sensitive: list[str] = []
        for key, raw in self._data.items():  # the whole Secret is sensitive, read or not
            if key in NOT_SENSITIVE_KEYS:
                continue
            text = raw.decode("utf-8", errors="replace")
            self.sensitive += [text, text.strip()]

    def __repr__(self) -> str:
        return f"SecretKeys({self.what}, keys={sorted(self._data)})"

    def present(self, key: str) -> bool:
        """Whether ``key`` holds a non-blank value."""
        return bool(self._data.get(key, b"").strip())

    def optional(self, key: str) -> str | None:
        """The value of ``key`` without surrounding whitespace, or None when absent/blank.

        Whitespace is stripped because a trailing newline (``echo key | base64``) is the
        most common way a pasted credential goes wrong, and no credential contains one.
        """
        raw = self._data.get(key)
        if raw is None:
            return None
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self.malformed(key, "is not UTF-8 text") from None
        return value or None

    def require(self, key: str) -> str:
        """The value of ``key``; SecretKeyMissing naming the key when it is absent or blank."""
        value = self.optional(key)
        if value is None:
            state = "is empty" if key in self._data else "is missing"
            raise ProviderError(Reason.SECRET_KEY_MISSING, f"key {key!r} of {self.what} {state}")
        return value

    def token(self, key: str) -> str:
        """Like ``require``, for a value that is one token of visible ASCII (a key id,
        secret, session token, client id); InvalidCredentials naming the key otherwise."""
        return self._token(key, self.require(key))

    def optional_token(self, key: str) -> str | None:
        """Like ``optional``, with the check of ``token``."""
        value = self.optional(key)
        return None if value is None else self._token(key, value)

    def _token(self, key: str, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise self.malformed(key, "holds whitespace, control or non-ASCII characters, "
                                 "which this credential cannot contain")
        return value

    def malformed(self, key: str, problem: str) -> ProviderError:
        """InvalidCredentials for a value of ``key`` that cannot be a credential at all:
        Stalled, and not retried until the Secret changes. ``problem`` never quotes it."""
        return ProviderError(Reason.INVALID_CREDENTIALS, f"key {key!r} of {self.what} "
                             f"{problem}", retry=False)


def redact(text: str, sensitive: Iterable[str]) -> str:
    """``text`` with every sensitive value (and every line of a multi-line one) replaced."""
    values: set[str] = set()
    for value in sensitive:
        values.add(value)
        values.update(line.strip() for line in value.splitlines())
    for value in sorted(values, key=len, reverse=True):  # longest first: no partial leftovers
        if len(value) >= _MIN_REDACT_LENGTH:
            text = text.replace(value, REDACTED)
    return text
