"""What the client returns: ExternalStorages and CallTypes as a caller sees them (no
credentials, readiness read with the one rule in ``callstorage.api.readiness``), and the
result of an on-demand check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callstorage.api.readiness import readiness


@dataclass(frozen=True)
class ExternalStorageInfo:
    """An ExternalStorage as a caller sees it: spec and status summary, no credentials
    (only the name of the Secret that holds them)."""

    name: str
    namespace: str
    storage_type: str
    bucket: str
    path: str | None
    access_mode: str
    prefixes: dict[str, str]
    effective_prefixes: dict[str, str]
    region: str | None
    endpoint: str | None
    account_name: str | None
    credentials_secret: str | None
    suspend: bool
    ready: bool
    ready_status: str
    reason: str
    message: str
    last_validated_at: str | None
    last_check: dict[str, Any] | None
    used_by: tuple[str, ...]
    terminating: bool
    created_at: str | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ExternalStorageInfo:
        """Summarise an ExternalStorage object (as the API server returns it)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        storage_type = str(spec.get("storageType", ""))
        block = spec.get(storage_type) or {}
        secret_ref = block.get("credentialsSecretRef") or {}
        state = readiness(obj)
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            storage_type=storage_type,
            bucket=str(spec.get("bucket", "")),
            path=spec.get("path"),
            access_mode=str(spec.get("accessMode") or "ReadWrite"),
            prefixes=dict(spec.get("prefixes") or {}),
            effective_prefixes=dict(status.get("effectivePrefixes") or {}),
            region=block.get("region"),
            endpoint=block.get("endpoint"),
            account_name=block.get("accountName"),
            credentials_secret=secret_ref.get("name"),
            suspend=bool(spec.get("suspend", False)),
            ready=state.ready,
            ready_status=state.status,
            reason=state.reason,
            message=state.message,
            last_validated_at=status.get("lastValidatedAt"),
            last_check=dict(status["lastCheck"]) if status.get("lastCheck") else None,
            used_by=tuple(status.get("usedBy") or ()),
            terminating=bool(meta.get("deletionTimestamp")),
            created_at=meta.get("creationTimestamp"),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys, as in the CRD."""
        return {
            "name": self.name, "namespace": self.namespace, "storageType": self.storage_type,
            "bucket": self.bucket, "path": self.path, "accessMode": self.access_mode,
            "prefixes": self.prefixes, "effectivePrefixes": self.effective_prefixes,
            "region": self.region, "endpoint": self.endpoint,
            "accountName": self.account_name, "credentialsSecret": self.credentials_secret,
            "suspend": self.suspend, "ready": self.ready, "readyStatus": self.ready_status,
            "reason": self.reason, "message": self.message,
            "lastValidatedAt": self.last_validated_at, "lastCheck": self.last_check,
            "usedBy": list(self.used_by), "terminating": self.terminating,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class CallTypeInfo:
    """A CallType: the storage it names (None = the platform storage) and its status."""

    name: str
    namespace: str
    external_storage: str | None
    resolved_storage: dict[str, Any] | None
    ready: bool
    ready_status: str
    reason: str
    message: str

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> CallTypeInfo:
        """Summarise a CallType object."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        state = readiness(obj)
        resolved = status.get("resolvedStorage")
        return cls(
            name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
            external_storage=spec.get("externalStorage") or None,
            resolved_storage=dict(resolved) if resolved else None,
            ready=state.ready, ready_status=state.status, reason=state.reason,
            message=state.message,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys."""
        return {
            "name": self.name, "namespace": self.namespace,
            "externalStorage": self.external_storage,
            "resolvedStorage": self.resolved_storage, "ready": self.ready,
            "readyStatus": self.ready_status, "reason": self.reason, "message": self.message,
        }


@dataclass(frozen=True)
class CheckResult:
    """A successful on-demand check: the object the operator wrote (key or URL)."""

    name: str
    namespace: str
    object: str
    requested_at: str
    completed_at: str | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        return self.object

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys."""
        return {"name": self.name, "namespace": self.namespace, "object": self.object,
                "requestedAt": self.requested_at, "completedAt": self.completed_at,
                "succeeded": True, "message": self.message}
