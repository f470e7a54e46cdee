"""Azure Blob Storage (``spec.bucket`` is the container): every fact of the ``abs``
storage type. The SDK client (azure-storage-blob) is ``callstorage.providers.azure``.

Secret keys: ``accountKey`` (SharedKey), or ``clientId`` + ``clientSecret`` + ``tenantId``
(a service principal, authenticated against ``spec.abs.authorityHost`` or Entra ID); and
``endpoint`` / ``authorityHost``: the custom endpoint and authority they may be sent to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic.dataclasses import dataclass

from callstorage.api import names
from callstorage.api.model import ProviderSpec, SecretRef, problem, too_long, url
from callstorage.api.reasons import Reason
from callstorage.storagetypes.base import (
    AUTHORITY_HOST_KEY,
    ENDPOINT_KEY,
    READ_WRITE,
    REQUEST_CONFIG,
    WRITE_ONLY,
    BlockAndSecret,
    Destination,
    ErrorRule,
    Policy,
    PolicyRequest,
    StorageProvider,
    check_mode,
    check_pattern,
    distinct_prefixes,
    probe_notes,
    public_https,
    request_from_mapping,
    secret_text,
)

ACCOUNT_KEY = "accountKey"
CLIENT_ID = "clientId"
CLIENT_SECRET = "clientSecret"  # noqa: S105 - the name of a Secret key
TENANT_ID = "tenantId"
AZURE_ASSIGNEE_PLACEHOLDER = "SERVICE_PRINCIPAL_OBJECT_ID"
_AZURE_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"

_ABS_CHARS = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


#: An account's public Blob service is ``https://<account>.blob.core.windows.net``.
PUBLIC_HOST_SUFFIX = "blob.core.windows.net"


def account_url(account: str | None) -> str | None:
    """The public Blob service URL of ``account`` (None without one)."""
    return f"https://{account}.{PUBLIC_HOST_SUFFIX}" if account else None


class ABSSpec(ProviderSpec):
    """``spec.abs``: Azure Blob Storage (``spec.bucket`` is the container)."""

    account_name: str
    endpoint: str | None = None
    authority_host: str | None = None
    credentials_secret_ref: SecretRef

    @field_validator("account_name")
    @classmethod
    def _check_account(cls, value: str) -> str:
        if len(value) > 24:
            raise problem([too_long(24)])
        if not names.is_account_name(value):
            raise problem([names.ACCOUNT_MESSAGE])
        return value

    _check_urls = field_validator("endpoint", "authority_host")(url)


def abs_container_problems(container: str) -> list[str]:
    """Broken Azure Blob Storage container naming rules."""
    problems: list[str] = []
    if not 3 <= len(container) <= 63:
        problems.append("Azure container names must be 3-63 characters long")
    if not _ABS_CHARS.fullmatch(container):
        problems.append(
            "Azure container names may contain only lowercase letters, digits and hyphens, "
            "and must start and end with a letter or digit")
    if "--" in container:
        problems.append("Azure container names must not contain consecutive hyphens")
    return problems


# SharedKey signature failures; Azure says AuthenticationFailed, Azurite AuthorizationFailure
# with Azure's "Server failed to authenticate the request" text.
CREDENTIAL_ERROR_CODES = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo",
                                    "NoAuthenticationInformation"})
NOT_FOUND_CODES = frozenset({"ContainerNotFound", "ResourceNotFound", "AccountNotFound"})


ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(Reason.INVALID_CREDENTIALS, codes=CREDENTIAL_ERROR_CODES,
              why="the account key or the service principal is wrong"),
    ErrorRule(Reason.INVALID_CREDENTIALS, status=401),
    ErrorRule(Reason.BUCKET_NOT_FOUND, codes=NOT_FOUND_CODES),
    ErrorRule(Reason.BUCKET_NOT_FOUND, status=404),
    # AuthorizationPermissionMismatch, AuthorizationFailure (a firewall rule), ...
    ErrorRule(Reason.ACCESS_DENIED, status=403),
    ErrorRule(Reason.INVALID_SPEC, codes=frozenset({"InvalidResourceName",
                                                    "OutOfRangeInput"})),
    ErrorRule(Reason.SERVICE_ERROR, codes=frozenset({
        "ServerBusy", "OperationTimedOut", "InternalError", "ContainerBeingDeleted"})),
)


def _azure_condition(actions: list[str], patterns: list[str]) -> str | None:
    """An ABAC condition (version 2.0) allowing ``actions`` only on blobs under ``patterns``."""
    if "" in patterns:
        return None
    not_actions = " AND ".join(
        f"!(ActionMatches{{'{_AZURE_BLOBS}/read'}} AND NOT SubOperationMatches{{'Blob.List'}})"
        if action == "read" else f"!(ActionMatches{{'{_AZURE_BLOBS}/{action}'}})"
        for action in actions
    )
    paths = " OR ".join(f"@Resource[{_AZURE_BLOBS}:path] StringStartsWith '{p}'"
                        for p in patterns)
    return f"(({not_actions}) OR ({paths}))"


def azure_role(
    account_name: str,
    container: str,
    prefixes: Iterable[str],
    access_mode: str = READ_WRITE,
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    assignee: str = AZURE_ASSIGNEE_PLACEHOLDER,
) -> dict[str, Any]:
    """A role assignment scoped to the container, with a condition limiting blobs to the
    prefixes.

    ``ReadWrite`` uses the built-in "Storage Blob Data Contributor" (it includes the
    container read that validation's container-properties call needs). ``WriteOnly``
    defines a custom role with only the blob write data actions, since every built-in
    blob role also reads.
    """
    check_mode(access_mode)
    kept = distinct_prefixes(prefixes)
    media = [f"{p}/" if p else "" for p in kept]
    check = check_pattern(path, check_object_prefix, kept)
    write = [*media, check] if check is not None else media
    scope = ("/subscriptions/SUBSCRIPTION_ID/resourceGroups/RESOURCE_GROUP/providers/"
             f"Microsoft.Storage/storageAccounts/{account_name}/blobServices/default/"
             f"containers/{container}")
    document: dict[str, Any] = {}
    if access_mode == WRITE_ONLY:
        role = "callstorage blob writer"
        document["roleDefinition"] = {
            "Name": role,
            "IsCustom": True,
            "Description": "Create blobs; no read, list or delete (callstorage WriteOnly).",
            "Actions": [],
            "NotActions": [],
            "DataActions": [f"{_AZURE_BLOBS}/write", f"{_AZURE_BLOBS}/add/action"],
            "NotDataActions": [],
            "AssignableScopes": [scope],
        }
        condition = _azure_condition(["write", "add/action"], write)
    else:
        role = "Storage Blob Data Contributor"
        # Reads stay on media prefixes; the check prefix only ever needs writing.
        read_condition = _azure_condition(["read", "delete", "move/action"], media)
        write_condition = _azure_condition(["write", "add/action"], write)
        parts = [c for c in (write_condition, read_condition) if c is not None]
        condition = " AND ".join(parts) if parts else None
    assignment: dict[str, Any] = {"role": role, "scope": scope, "assignee": assignee}
    if condition is not None:
        assignment["condition"] = condition
        assignment["conditionVersion"] = "2.0"
    document["roleAssignment"] = assignment
    return document


def _policy(request: PolicyRequest) -> Policy:
    account_name = request.options.get("account_name")
    if not account_name:
        raise ValueError("an Azure storage needs its account name")
    return Policy("abs", "Azure role assignment", azure_role(
        account_name, request.bucket, request.prefixes, request.access_mode,
        path=request.path, check_object_prefix=request.check_object_prefix,
        assignee=request.member or AZURE_ASSIGNEE_PLACEHOLDER), notes=(
        *probe_notes(request, "With blob versioning on, a lifecycle management rule "
                     "deleting previous versions of the probe blobs (prefixMatch) keeps "
                     "them from piling up."),
        "Fill in SUBSCRIPTION_ID and RESOURCE_GROUP; create roleDefinition (if any) with "
        "az role definition create, then the assignment with az role assignment create.",
        "An account key bypasses Azure RBAC entirely: use a service principal "
        "(clientId, clientSecret, tenantId) for least privilege.",
    ))


def _policy_options(block: ABSSpec) -> dict[str, Any]:
    return {"account_name": block.account_name}


@dataclass(frozen=True, config=REQUEST_CONFIG)
class AzureRequest:
    """Azure Blob Storage settings, as the seed's ``AzureRequest``: an account key, or a
    service principal (client id, client secret, tenant id)."""

    abs_account_name: str
    abs_account_key: SecretStr | None = None
    abs_client_id: str | None = None
    abs_client_secret: SecretStr | None = None
    abs_tenant_id: str | None = None
    abs_endpoint: str | None = None


def _from_request(value: Any) -> BlockAndSecret:
    request = request_from_mapping(AzureRequest, value, "azure_blob")
    block: dict[str, Any] = {"accountName": request.abs_account_name}
    if request.abs_endpoint:
        block["endpoint"] = request.abs_endpoint
    account_key = secret_text(request.abs_account_key)
    client_id, tenant_id = request.abs_client_id, request.abs_tenant_id
    client_secret = secret_text(request.abs_client_secret)
    principal = (client_id, client_secret, tenant_id)
    if account_key and any(principal):
        raise ValueError("give abs_account_key or a service principal "
                         "(abs_client_id, abs_client_secret, abs_tenant_id), not both")
    bound = {ENDPOINT_KEY: request.abs_endpoint} if request.abs_endpoint else {}
    if account_key:
        return block, {ACCOUNT_KEY: account_key, **bound}
    if client_id and client_secret and tenant_id:
        return block, {CLIENT_ID: client_id, CLIENT_SECRET: client_secret,
                       TENANT_ID: tenant_id, **bound}
    raise ValueError("azure_blob needs abs_account_key, or abs_client_id, "
                     "abs_client_secret and abs_tenant_id together")


#: Entra ID's public authorities (global, US Government, China) and the default one.
KNOWN_AUTHORITY_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoftonline.us",
                                   "login.chinacloudapi.cn"})
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
ABS_PUBLIC = public_https(
    r"[a-z0-9]{3,24}\.blob\.core\.(windows\.net|usgovcloudapi\.net|chinacloudapi\.cn)")
AUTHORITY_PUBLIC = public_https(*(re.escape(h) for h in sorted(KNOWN_AUTHORITY_HOSTS)))


def uses_account_key(secret: Mapping[str, bytes] | None) -> bool:
    """Whether the Secret authenticates with the account key (SharedKey): it has one, or
    has no service-principal key at all."""
    data = secret or {}

    def present(key: str) -> bool:
        return bool(data.get(key, b"").strip())
    return present(ACCOUNT_KEY) or not any(present(k) for k in (CLIENT_ID, CLIENT_SECRET,
                                                                 TENANT_ID))


def _destinations(block: ABSSpec, secret: Mapping[str, bytes] | None) -> list[Destination]:
    found = []
    if block.endpoint:
        found.append(Destination("spec.abs.endpoint", block.endpoint, (ENDPOINT_KEY,),
                                 ABS_PUBLIC))
    if block.authority_host and not uses_account_key(secret):  # the client secret goes there
        found.append(Destination("spec.abs.authorityHost", block.authority_host,
                                 (AUTHORITY_HOST_KEY,), AUTHORITY_PUBLIC))
    return found


PROVIDER = StorageProvider(
    name="abs",
    title="Azure Blob Storage",
    spec_model=ABSSpec,
    bucket_problems=abs_container_problems,
    secret_keys=(ACCOUNT_KEY, CLIENT_ID, CLIENT_SECRET, TENANT_ID, ENDPOINT_KEY,
                 AUTHORITY_HOST_KEY),
    error_table=ERROR_TABLE,
    place="Azure Blob Storage container",
    client_module="callstorage.providers.azure",
    policy=_policy,
    policy_options=_policy_options,
    request_arg="azure_blob",
    from_request=_from_request,
    example_block={"accountName": "recordings",
                   "credentialsSecretRef": {"name": "abs-credentials"}},
    default_host=lambda block: f"{block.get('accountName') or ''}.{PUBLIC_HOST_SUFFIX}",
    destinations=_destinations,
    account=lambda block: block.account_name,
    public_url=account_url,
)
