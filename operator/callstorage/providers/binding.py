"""Where a storage's credentials may be sent: checked before any client is built.

Whoever may edit an ExternalStorage chooses its endpoints; whoever may write a Secret
chooses its credentials. The two are often different people, and the operator (which may
read every Secret) must not let the first send the second's credentials to a host of
their choosing (a confused deputy). So a storage's credentials go only to its provider's
public service, or to the custom endpoint / authority the credentials Secret itself names
(``endpoint``, ``authorityHost``, ``tokenUri``; see ``storagetypes.base.unbound_destination``
for the comparison). The operator's own (ambient) identity goes to public endpoints only,
and only for storages in the namespaces the installation names.

Pure and SDK-free: it runs before a provider module builds anything, so a refused storage
never opens a connection.
"""

from __future__ import annotations

from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes import PROVIDERS


def check_destinations(spec: ExternalStorageSpec, inputs: ProviderInputs,
                       settings: Settings) -> None:
    """Raise ProviderError (EndpointNotBound, AmbientCredentialsDisabled) unless every URL
    the spec would send credentials to is allowed to receive them."""
    provider = PROVIDERS.get(spec.storage_type)
    if provider is None or spec.provider is None:
        return  # the builder reports the unknown type or the missing block
    ref = spec.credentials_secret_ref
    if inputs.secret is None:
        if not settings.allow_ambient_credentials:
            return  # the provider says AmbientCredentialsDisabled
        allowed = settings.ambient_namespaces()
        if inputs.namespace not in allowed:
            where = f"namespace {inputs.namespace}" if inputs.namespace else \
                "a storage outside a known namespace"
            raise ProviderError(
                Reason.AMBIENT_CREDENTIALS_DISABLED,
                f"spec.{spec.storage_type}.credentialsSecretRef is not set, and the "
                f"operator's own (ambient) credentials are not for {where} (this "
                f"installation allows them in: {', '.join(allowed)}); reference a "
                "credentials Secret")
    what = f"Secret {ref.name}" if ref is not None else "the credentials Secret"
    problem = provider.unbound(spec.provider, inputs.secret, what)
    if problem is not None:
        raise ProviderError(Reason.ENDPOINT_NOT_BOUND, problem)
