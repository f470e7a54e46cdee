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

import ipaddress
import json
import re
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
from callstorage.api.prefixes import probe_key
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
    return [probe_key(p) for p in sorted({p.strip("/") for p in prefixes})]


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


# --- where credentials may go ------------------------------------------------------------

#: Characters no URL the operator sends credentials to may hold: each is a way for two URL
#: parsers to disagree about the host (``http://a\\@b/``), or for a header to be split.
_UNSAFE_URL_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go: scheme, host and port, normalised (lowercase host without
    a trailing dot, IP literals in canonical form, the scheme's default port filled in).
    Two URLs send to the same place exactly when their origins are equal; paths do not
    matter (the same server answers every path)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL; None for anything else, and for a URL that
    parsers may read differently: user info (``user@host``), backslashes, whitespace or
    control characters, a port out of range."""
    if not isinstance(url, str) or _UNSAFE_URL_CHARS.search(url):
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or "@" in parts.netloc:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    try:
        host = str(ipaddress.ip_address(host))  # one spelling per address
    except ValueError:
        if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", host):
            return None  # not a plain DNS name (percent-escapes, unicode, a zone id)
    return Origin(scheme, host, port)


def public_https(*patterns: str) -> Callable[[Origin], bool]:
    """A test for a provider's own public service: https on port 443 to a host matching
    one of ``patterns`` (regular expressions over the whole host name)."""
    compiled = [re.compile(p) for p in patterns]

    def public(origin: Origin) -> bool:
        return origin.scheme == "https" and origin.port == 443 and any(
            p.fullmatch(origin.host) for p in compiled)
    return public


@dataclass(frozen=True)
class Destination:
    """A URL a storage's credentials would be sent to, other than the storage type's
    default: ``field`` names where it came from (for messages), ``bound_by`` the Secret
    keys that may name it, ``public`` whether an origin is the provider's own service
    (where any credentials of that provider may go)."""

    field: str
    url: str
    bound_by: tuple[str, ...]
    public: Callable[[Origin], bool]


#: The Secret keys that bind a storage's custom destinations (see ``unbound_destination``).
ENDPOINT_KEY: Final = "endpoint"
AUTHORITY_HOST_KEY: Final = "authorityHost"
TOKEN_URI_KEY: Final = "tokenUri"  # noqa: S105 - the name of a Secret key


def bound_urls(secret: Mapping[str, bytes] | None, key: str) -> list[str]:
    """The URLs a Secret key binds: one, or several separated by commas or whitespace."""
    raw = (secret or {}).get(key)
    if raw is None:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [part for part in re.split(r"[,\s]+", text) if part]


def unbound_destination(destinations: Iterable[Destination],
                        secret: Mapping[str, bytes] | None, what: str) -> str | None:
    """Why one of ``destinations`` may not receive the credentials, or None if all may.

    A destination may receive them when its origin is the provider's public service, or
    when it equals the origin of a URL the credentials Secret itself holds under one of
    the destination's ``bound_by`` keys (one URL, or several separated by commas): only
    whoever may write the Secret chooses where its credentials go, never whoever may
    write the storage. ``what`` names the Secret
    (None data: no Secret, the operator's own ambient identity, which nothing binds).
    """
    for dest in destinations:
        origin = origin_of(dest.url)
        if origin is None:
            return (f"{dest.field} is not a plain http(s) URL (user info, backslashes and "
                    "whitespace are refused); no credentials are sent to it")
        if dest.public(origin):
            continue
        if secret is None:
            return (f"{dest.field} ({origin}) is not the provider's public service, and "
                    "the operator's own (ambient) credentials are never sent anywhere "
                    "else; reference a credentials Secret that names this endpoint")
        bound = {key: bound_urls(secret, key) for key in dest.bound_by}
        if any(origin_of(url) == origin for urls in bound.values() for url in urls):
            continue
        keys = " or ".join(repr(k) for k in dest.bound_by)
        named = [f"{k!r} names " + ", ".join(str(origin_of(u) or "no valid URL") for u in urls)
                 for k, urls in bound.items() if urls]
        return (f"{dest.field} ({origin}) is not bound to {what}: its credentials go only "
                f"to the provider's public service or to the endpoint the Secret names "
                f"under key {keys} (" + ("; ".join(named) if named else "it names none")
                + ")")
    return None


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
    #: where a parsed block (and its Secret's data, None without a Secret) would send
    #: the credentials besides the default host: each must be public or bound by the
    #: Secret (``unbound_destination``)
    destinations: Callable[[Any, Mapping[str, bytes] | None], list[Destination]] = \
        lambda block, secret: []
    #: the account a parsed block's objects live in besides the bucket (Azure's storage
    #: account); None where the bucket alone names the place
    account: Callable[[Any], str | None] = lambda block: None
    #: the provider's public service URL for an account, where it depends on one (Azure:
    #: ``https://<account>.blob.core.windows.net``); None: the SDK's own default
    public_url: Callable[[str | None], str | None] = lambda account: None
    #: the scheme of the provider's object URLs (``s3://bucket/key``); None: an https URL
    #: under the endpoint (``<endpoint>/<container>/<key>``)
    url_scheme: str | None = None
    #: the seed SDK's keyword that sets the block's ``endpoint`` alone (``gcs_endpoint``)
    endpoint_arg: str | None = None
    #: what the seed calls the provider's place in its messages ("S3 bucket")
    place: str = "bucket"

    def reason_for(self, status: int, code: str = "") -> Reason:
        """The reason a provider error (HTTP status, provider error code) stands for, by
        the descriptor's ``error_table``: the one table every reader of its errors uses."""
        return lookup_error(self.error_table, status, code)

    def endpoint_host(self, block: Mapping[str, Any]) -> str:
        """The host (``host[:port]``) this block's provider calls go to."""
        endpoint = block.get("endpoint")
        if isinstance(endpoint, str) and endpoint:
            parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
            host = (parts.hostname or endpoint).lower()
            return f"{host}:{parts.port}" if parts.port else host
        return self.default_host(block) or self.name

    def endpoint_url(self, block: B) -> str | None:
        """Where a parsed block's requests (and credentials) go: its ``endpoint``, the
        provider's public URL for its account, or None (the provider's public service)."""
        endpoint = getattr(block, "endpoint", None)
        if endpoint:
            return str(endpoint).rstrip("/")
        return self.public_url(self.account(block))

    def object_url(self, bucket: str, key: str, *, endpoint: str | None = None,
                   account: str | None = None) -> str:
        """A URL naming an object: ``s3://bucket/key``, ``gs://bucket/key``, or the blob's
        https URL under ``endpoint`` (else the account's public URL)."""
        if self.url_scheme is not None:
            return f"{self.url_scheme}://{bucket}/{key}"
        base = endpoint or self.public_url(account) or ""
        return f"{base.rstrip('/')}/{bucket}/{key}"

    def unbound(self, block: B, secret: Mapping[str, bytes] | None, what: str) -> str | None:
        """Why the parsed ``block`` may not send ``secret``'s credentials where it says
        (None: it may); ``what`` names the Secret in the message."""
        return unbound_destination(self.destinations(block, secret), secret, what)

    def secret_names(self, block: Mapping[str, Any]) -> set[str]:
        """Secrets a block (wire form) refers to, read leniently: a spec that fails to
        parse still gets its Secrets watched, so fixing the Secret re-validates it."""
        found: set[str] = set()
        for ref_field in self.secret_ref_fields:
            ref = block.get(ref_field)
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and ref["name"]:
                found.add(ref["name"])
        return found
