"""Runs last (pytest takes files in name order): no credential that a test handed to the
operator shows up in any status, event or operator log of the whole run."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def test_no_credential_in_status_events_or_logs(
    kube_api: Any, operator: Any, credential_values: set[str],
) -> None:
    assert credential_values, "no test registered credentials: this check would prove nothing"
    custom = client.CustomObjectsApi(kube_api)
    places = {
        "operator log": operator.log(),
        "ExternalStorage objects": str(custom.list_cluster_custom_object(
            "callstorage.io", "v1alpha1", "externalstorages")),
        "CallType objects": str(custom.list_cluster_custom_object(
            "callstorage.io", "v1alpha1", "calltypes")),
        "events": "\n".join(f"{e.reason} {e.message}" for e in
                            client.CoreV1Api(kube_api).list_event_for_all_namespaces().items),
    }
    # count only: printing a leaked value would leak it into the test output
    leaks = {where: sum(value in text for value in credential_values)
             for where, text in places.items()}
    assert all(n == 0 for n in leaks.values()), f"credential values found: {leaks}"
    assert len(places["operator log"]) > 0
