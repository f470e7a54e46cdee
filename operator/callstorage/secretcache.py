"""The Secrets a validation reads: the watch's cache of referenced ones, short-lived copies
of those no storage refers to yet, and one shared GET for the rest.

Secrets are read from the storage's own namespace only. Whatever is kept here is bounded:
referenced Secrets go with their last reference (``Inventory.set_secret_refs``), recent
copies expire and are capped, a GET's entry ends with the GET.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from callstorage.api.reasons import Reason
from callstorage.inventory import CachedSecret, Expiring, Inventory, ObjectKey
from callstorage.kube import decode_secret
from callstorage.providers.base import ProviderError, ProviderInputs
from callstorage.providers.inputs import SecretRead, provider_inputs, secret_reads
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec

SECRET = "secret"  # noqa: S105 - the kind of its tombstones, not a credential
# Secrets no storage refers to yet, as the watch delivered them: a storage applied just
# after its Secret (one `kubectl apply` of both, an Argo CD sync, 1,000 tenants onboarded)
# then needs no GET of it. Only small ones (credentials, not TLS bundles or Helm release
# Secrets), at most RECENT_SECRETS of them, each for RECENT_SECRET_TTL seconds; a change
# or deletion on the watch replaces or drops the copy.
RECENT_SECRET_TTL = 120.0
RECENT_SECRETS = 10_000
RECENT_SECRET_BYTES = 8192  # of base64 data


class SecretApi(Protocol):
    async def read_secret(self, namespace: str, name: str, label_selector: str = ""
                          ) -> CachedSecret | None: ...


def credentials_secret(spec: ExternalStorageSpec) -> str | None:
    """Name of the credentials Secret the spec refers to (None: ambient credentials)."""
    ref = spec.credentials_secret_ref
    return ref.name if ref is not None else None


class SecretCache:
    """Secrets for the rounds (see the module docstring)."""

    def __init__(self, kube: SecretApi, inv: Inventory, settings: Settings) -> None:
        self.kube, self.inv, self.settings = kube, inv, settings
        self.recent: Expiring[ObjectKey, CachedSecret] = Expiring(
            RECENT_SECRET_TTL, RECENT_SECRETS)
        # a referenced Secret's GET in flight, shared by every round that needs it
        self.reads: dict[ObjectKey, asyncio.Future[CachedSecret | None]] = {}

    def may_come_back(self, key: ObjectKey) -> bool:
        """Whether a deleted Secret could be brought back by a stale copy (one held, or a
        GET in flight): only then is its deletion worth a tombstone."""
        return self.inv.secret_is_referenced(key) or key in self.reads

    def remember_recent(self, key: ObjectKey, obj: Mapping[str, Any] | None) -> None:
        """Keep (or drop, for None or a large Secret) the recent copy of an unreferenced
        Secret."""
        self.recent.pop(key)
        data = (obj or {}).get("data") or {}
        if obj is None or not isinstance(data, Mapping) or \
                sum(len(str(v)) for v in data.values()) > RECENT_SECRET_BYTES:
            return
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        self.recent.set(key, decode_secret(rv, data))

    def _take_recent(self, key: ObjectKey) -> CachedSecret | None:
        """The recent copy of a Secret a storage now refers to, taken out of the recent
        ones (into the referenced cache, which the watch keeps current from now on)."""
        secret = self.recent.pop(key)
        if secret is None:
            return None
        if self.inv.versions.is_stale(SECRET, key, secret.resource_version, None):
            return None
        if self.inv.secret_is_referenced(key):
            self.inv.secrets[key] = secret
        return secret

    async def inputs(self, namespace: str, spec: ExternalStorageSpec) -> \
            tuple[ProviderInputs, str | None]:
        """Read the referenced Secrets (own namespace only) into provider inputs, and
        their resourceVersions."""
        versions: list[str] = []
        data: dict[SecretRead, Mapping[str, bytes]] = {}
        for read in secret_reads(spec):
            secret = await self.get(namespace, read.name)
            if secret is None:
                raise ProviderError(Reason.SECRET_NOT_FOUND,
                                    read.not_found(namespace) + self._unselected())
            data[read] = secret.data
            versions.append(secret.resource_version)
        inputs = provider_inputs(spec, namespace, data)
        return inputs, ",".join(versions) or None

    def _unselected(self) -> str:
        """What a missing Secret may also mean when the Secret watch is narrowed."""
        selector = self.settings.secret_label_selector
        if not selector:
            return ""
        return (f", or not selected: this installation only reads Secrets labelled "
                f"{selector} (CALLSTORAGE_SECRET_LABEL_SELECTOR)")

    async def get(self, namespace: str, name: str) -> CachedSecret | None:
        """A referenced Secret: from the watch's cache, else one GET.

        The watch may deliver a newer version (or the deletion) while the GET is in
        flight; the GET's answer then loses, whatever order the two arrive in.
        """
        key = (namespace, name)
        cached = self.inv.secrets.get(key) or self._take_recent(key)
        if cached is not None:
            return cached
        pending = self.reads.get(key)
        if pending is not None:  # the rounds of N storages sharing a Secret: one GET
            return await asyncio.shield(pending)
        read = asyncio.get_running_loop().create_future()
        self.reads[key] = read
        try:
            secret = await self._read(key)
        except asyncio.CancelledError:
            read.cancel()
            raise
        except Exception as exc:
            read.set_exception(exc)
            read.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            read.set_result(secret)
            return secret
        finally:
            del self.reads[key]

    async def _read(self, key: ObjectKey) -> CachedSecret | None:
        namespace, name = key
        selector = self.settings.secret_label_selector
        secret = await (self.kube.read_secret(namespace, name, selector) if selector
                        else self.kube.read_secret(namespace, name))
        newest = self.inv.secrets.get(key)
        if secret is None:
            return newest
        held = newest.resource_version if newest is not None else None
        if self.inv.versions.is_stale(SECRET, key, secret.resource_version, held):
            return newest
        if self.inv.secret_is_referenced(key):
            self.inv.secrets[key] = secret
        return secret
