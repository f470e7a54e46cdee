"""Which cluster and namespace the client talks to: kubectl's rules (the loader itself is
``callstorage.kube.load_api_client``)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from kubernetes import client, config

from callstorage.client.errors import ApiUnreachable
from callstorage.kube import (
    KubeconfigError,
    kubeconfig_present,
    load_api_client,
)


def api_client_from_config(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> client.ApiClient:
    """An ApiClient from ``callstorage.kube.load_api_client`` (kubectl's order); its
    failure as ``ApiUnreachable``."""
    try:
        return load_api_client(kubeconfig=kubeconfig, context=context)
    except KubeconfigError as exc:
        raise ApiUnreachable(exc.reason, exc.message) from None


def default_namespace(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> str:
    """The namespace of the current kubeconfig context, the pod's own namespace in a
    cluster, else ``default`` (what kubectl would use)."""
    if kubeconfig is not None or kubeconfig_present():
        with suppress(config.ConfigException, OSError, KeyError, TypeError):
            contexts, active = config.list_kube_config_contexts(
                config_file=os.fspath(kubeconfig) if kubeconfig is not None else None)
            chosen = next((c for c in contexts if c.get("name") == context), active) \
                if context else active
            namespace = (chosen or {}).get("context", {}).get("namespace")
            if namespace:
                return str(namespace)
        return "default"
    sa_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    with suppress(OSError):
        return sa_namespace.read_text().strip() or "default"
    return "default"
