"""Ambient credentials (``allowAmbientCredentials``): only for storages in the namespaces
the installation names (default: the operator's own), and never sent to a custom
endpoint. Against a control plane of its own, so only this operator validates; a
listener on a loopback address stands in for a tenant's endpoint and must see nothing.
(The allowed case would reach AWS, which no test may; unit tests cover it.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import storages
from conftest import OPERATOR_NAMESPACE, launch_operator
from paths import ROOT
from storage_fixtures import CountingListener
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane

pytestmark = pytest.mark.integration



def test_ambient_credentials_stay_home_and_go_to_aws_only(
    cluster: ControlPlane, tmp_path: Path, counting_listener: CountingListener,
) -> None:
    api = cluster.api_client()
    kubeutil.apply_crds(api, ROOT / "crds")
    kubeutil.create_namespace(api, OPERATOR_NAMESPACE)
    kubeutil.create_namespace(api, "tenant")
    endpoint = counting_listener.url()
    for ns, name, spec_endpoint in (("tenant", "no-endpoint", None),
                                    ("tenant", "own-endpoint", endpoint),
                                    (OPERATOR_NAMESPACE, "platform-elsewhere", endpoint)):
        spec = storages.s3_storage_spec("bucket", endpoint, None)
        if spec_endpoint is None:
            del spec["s3"]["endpoint"]
        kubeutil.create_object(api, EXS, ns, storages.external_storage(name, spec))

    operator = launch_operator(cluster.kubeconfig, tmp_path / "log",
                               {"CALLSTORAGE_ALLOW_AMBIENT_CREDENTIALS": "true"},
                               "ambient-operator")
    try:
        for name in ("no-endpoint", "own-endpoint"):
            obj = storages.wait_ready(api, EXS, "tenant", name, "False",
                                      "AmbientCredentialsDisabled", timeout=30)
            message = storages.condition(obj)["message"]
            assert "not for namespace tenant" in message
            assert f"allows them in: {OPERATOR_NAMESPACE}" in message
        obj = storages.wait_ready(api, EXS, OPERATOR_NAMESPACE, "platform-elsewhere", "False",
                                  "EndpointNotBound", timeout=30)
        message = storages.condition(obj)["message"]
        assert f"spec.s3.endpoint ({endpoint})" in message
        assert "ambient" in message
    finally:
        operator.stop()
        api.close()
    assert counting_listener.connections == 0
