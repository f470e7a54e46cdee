"""What a storage type is made of: the descriptor each provider module exports.

A provider module (``s3``, ``gcs``, ``abs``) holds every fact about its storage type in
one place and exports them as one ``StorageProvider``: the ``spec.<storageType>`` block
model, its bucket naming rules, the Secret keys it reads, the table mapping its error
codes onto reasons, its least-privilege grant, how the Python client's seed-SDK request
becomes a spec block and a Secret, and the module that builds its SDK client.

Nothing here imports a cloud SDK: the API models, the controller and the CLI read these
descriptors, and only building a client (``callstorage.providers.build_client``) imports
the SDK module the descriptor names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    AliasGenerator,
    ConfigDict,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel, to_pascal

from callstorage.api.model import ProviderSpec
from callstorage.api.prefixes import PROBE_OBJECT_NAME
from callstorage.api.reasons import Reason

B = TypeVar("B", bound=ProviderSpec)
T = TypeVar("T")

READ_WRITE: Final = "ReadWrite"
WRITE_ONLY: Final = "WriteOnly"


# --- error tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRule:
    """One row of a provider's error table: an HTTP status and/or a provider error code,
    and the reason it stands for. Whether that reason is retried or needs a person is the
    reason's policy (``callstorage.api.reasons.POLICY``), never the row's."""

    reason: Reason
    status: int | None = None  # None: any status
    codes: frozenset[str] = frozenset()  # empty: any code
    why: str = ""


def lookup_error(table: tuple[ErrorRule, ...], status: int, code: str) -> Reason:
    """The first row of ``table`` matching (status, code); rows go from specific to
    general. Whatever no row names is retried: an answer we do not know is no proof that
    the spec is wrong."""
    for rule in table:
        if rule.status is not None and rule.status != status:
            continue
        if rule.codes and code not in rule.codes:
            continue
        return rule.reason
    return Reason.SERVICE_ERROR


# --- least-privilege grants ---------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A provider's grant: the JSON ``document`` to apply, and ``notes`` on how."""

    storage_type: str
    kind: str
    document: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        """The document as indented JSON, ready for the provider's CLI."""
        return json.dumps(self.document, indent=2)


@dataclass(frozen=True)
class PolicyRequest:
    """What a grant is computed from: the storage's bucket, mode and effective prefixes,
    the principal (``member``; None: a placeholder) and the provider's own settings
    (``options``, e.g. an S3 region or an Azure account name; see ``policy_options``)."""

    bucket: str
    access_mode: str
    prefixes: list[str]
    path: str | None = None
    check_object_prefix: str | None = "stream-"
    member: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def probe_keys(prefixes: Iterable[str]) -> list[str]:
    """The probe object WriteOnly validation overwrites under each distinct prefix."""
    return [f"{p}/{PROBE_OBJECT_NAME}" if p else PROBE_OBJECT_NAME
            for p in sorted({p.strip("/") for p in prefixes})]


def probe_notes(request: PolicyRequest, lifecycle: str) -> tuple[str, ...]:
    """For a WriteOnly grant: which probe objects validation writes (one per prefix,
    overwritten each time) and the provider's ``lifecycle`` advice for versioned
    buckets, where overwrites keep old versions."""
    if request.access_mode != WRITE_ONLY:
        return ()
    keys = ", ".join(probe_keys(request.prefixes))
    return (f"WriteOnly validation overwrites one probe object per prefix ({keys}); "
            "nothing else is written by validation.", lifecycle)


def distinct_prefixes(prefixes: Iterable[str]) -> list[str]:
    """Normalised, sorted prefixes with duplicates and already-covered ones removed.

    ``recordings`` covers ``recordings/audio``; the empty prefix (bucket root) covers all.
    """
    normalised = sorted({p.strip("/") for p in prefixes})
    kept: list[str] = []
    for prefix in normalised:  # sorted, so a covering prefix comes before what it covers
        if not any(covers(k, prefix) for k in kept):
            kept.append(prefix)
    return kept


def covers(outer: str, inner: str) -> bool:
    """Whether keys under ``inner`` are under ``outer`` too ("" is the bucket root)."""
    return outer == "" or inner == outer or inner.startswith(outer + "/")


def check_pattern(path: str | None, check_object_prefix: str | None,
                  prefixes: list[str]) -> str | None:
    """The key pattern of check objects, or None when a media prefix already covers it."""
    if check_object_prefix is None:
        return None
    base = (path or "").strip("/")
    if any(covers(p, base) for p in prefixes):
        return None
    return f"{base}/{check_object_prefix}" if base else check_object_prefix


def check_mode(access_mode: str) -> None:
    """ValueError unless ``access_mode`` is ReadWrite or WriteOnly."""
    if access_mode not in (READ_WRITE, WRITE_ONLY):
        raise ValueError(f"unknown access mode {access_mode!r}; "
                         f"expected {READ_WRITE} or {WRITE_ONLY}")


# --- the Python client's requests (the seed SDK's shapes) ---------------------------------


def _spellings(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name), to_pascal(name))


#: The Python client's request dataclasses take their fields as the seed's Python,
#: JavaScript and Go examples spell them (``s3_region``, ``s3Region``, ``S3Region``);
#: credentials are ``SecretStr``, so no repr, str or traceback ever shows them.
REQUEST_CONFIG = ConfigDict(
    extra="forbid", populate_by_name=True,
    alias_generator=AliasGenerator(validation_alias=_spellings))


def request_from_mapping(cls: type[T], value: T | Mapping[str, Any], what: str) -> T:
    """A request dataclass from itself or a dict in any of the seed's spellings;
    ValueError naming the problem (never echoing a value)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a {cls.__name__} or a dict")
    try:
        return TypeAdapter(cls).validate_python(dict(value))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
    known = ", ".join(sorted(f.name for f in fields(cls)))  # type: ignore[arg-type]
    for error in errors:
        if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            raise ValueError(f"{what}: unknown field {error['loc'][-1]!r}; known: {known}")
    if any(error["type"] in ("missing", "missing_argument") for error in errors):
        raise ValueError(f"{what}: missing required fields")
    raise ValueError(f"{what}: " + "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in errors))


def secret_text(value: SecretStr | None) -> str | None:
    """A request's credential as text (None or "" when not given)."""
    return value.get_secret_value() if value is not None else None


#: A provider block (wire form, without ``credentialsSecretRef``) and the data of the
#: credentials Secret (None: no Secret, e.g. ambient credentials).
BlockAndSecret = tuple[dict[str, Any], dict[str, str] | None]


# --- the descriptor -----------------------------------------------------------------------


@dataclass(frozen=True)
class StorageProvider(Generic[B]):
    """Everything the operator, the API models, the client and the CLI know about one
    storage type. Registered once, in ``callstorage.storagetypes.PROVIDERS``."""

    #: ``spec.storageType`` and the name of the provider block in the spec
    name: str
    #: for messages: "Amazon S3 (or S3-compatible)"
    title: str
    #: the ``spec.<name>`` block
    spec_model: type[B]
    #: broken bucket (container) naming rules, worded as the CRD's CEL rules
    bucket_problems: Callable[[str], list[str]]
    #: keys of the credentials Secret the provider reads
    secret_keys: tuple[str, ...]
    #: status/code -> reason, most specific first
    error_table: tuple[ErrorRule, ...]
    #: module whose ``build(spec, inputs, settings)`` makes the SDK client; imported on
    #: first use, so nothing loads a cloud SDK until a client is built
    client_module: str
    #: the least-privilege grant (``least_privilege_policy`` over a PolicyRequest)
    policy: Callable[[PolicyRequest], Policy]
    #: the provider's settings a grant needs, from its spec block
    policy_options: Callable[[B], dict[str, Any]]
    #: the Python client's keyword for this provider's request (the seed's name)
    request_arg: str
    #: the request as a provider block and Secret data; ValueError on a bad request
    from_request: Callable[[Any], BlockAndSecret]
    #: a minimal valid block (wire form), for docs and tests
    example_block: Mapping[str, Any] = field(default_factory=dict)
    #: fields of the block that name a Secret of the object's namespace
    secret_ref_fields: tuple[str, ...] = ("credentialsSecretRef",)
    #: the host provider calls go to when the block names no ``endpoint`` (wire form,
    #: read leniently); validations share the workers fairly per host (fairness.py)
    default_host: Callable[[Mapping[str, Any]], str] = lambda block: ""

    def endpoint_host(self, block: Mapping[str, Any]) -> str:
        """The host (``host[:port]``) this block's provider calls go to."""
        endpoint = block.get("endpoint")
        if isinstance(endpoint, str) and endpoint:
            parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
            host = (parts.hostname or endpoint).lower()
            return f"{host}:{parts.port}" if parts.port else host
        return self.default_host(block) or self.name

    def secret_names(self, block: Mapping[str, Any]) -> set[str]:
        """Secrets a block (wire form) refers to, read leniently: a spec that fails to
        parse still gets its Secrets watched, so fixing the Secret re-validates it."""
        found: set[str] = set()
        for ref_field in self.secret_ref_fields:
            ref = block.get(ref_field)
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and ref["name"]:
                found.add(ref["name"])
        return found
