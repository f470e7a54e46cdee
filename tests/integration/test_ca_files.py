"""Bounded local state: 100 storages with distinct CA bundles (some over the cap) keep the
operator's temp space within a stated bound, far below the chart's 64 Mi ``/tmp``.

The operator runs against a control plane of its own (no other operator validates these
storages) with ``TMPDIR`` pointing at a directory the test measures while every storage
is validated. The bound: CA files exist only for live clients, one per distinct bundle;
live clients with a CA are at most the S3 client cache (64) plus the validations in
flight (``CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS``), and each file is at most the public
roots plus the cap (``CALLSTORAGE_MAX_CA_BUNDLE_BYTES``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import certifi
import pytest
from kubernetes import client

import storages
from callstorage.providers import s3 as s3_provider
from conftest import launch_operator
from paths import ROOT
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for
from testbed.s3 import S3Server, readwrite_policy
from testbed.tlscerts import ThrowawayCA

pytestmark = pytest.mark.integration

STORAGES, OVER_CAP = 100, 10
CAP = 64 * 1024  # the default CALLSTORAGE_MAX_CA_BUNDLE_BYTES
WORKERS = 16  # the default CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS
CHART_TMP = 64 * 1024 * 1024  # the chart's emptyDir sizeLimit for /tmp


def bundles() -> list[bytes]:
    """100 distinct bundles: 90 just under the cap (a shared pool of CAs plus one of
    their own), 10 over it."""
    pool = [ThrowawayCA(f"pool-{i}").cert_pem for i in range(200)]
    under, over = b"", b""
    for pem in pool:  # as much of the pool as fits under the cap with one more CA
        if len(under) + 2 * len(pem) < CAP:
            under += pem
        over += pem
    assert len(over) > CAP
    return [(over if i < OVER_CAP else under) + ThrowawayCA(f"own-{i}").cert_pem
            for i in range(STORAGES)]


class TempSpace:
    """Polls a directory tree: the most bytes and CA files it ever held."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.max_bytes = self.max_files = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="temp-space", daemon=True)
        self._thread.start()

    def measure(self) -> tuple[int, int]:
        total = files = 0
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:  # removed while we looked
                    continue
                files += name.endswith(".pem")
        return total, files

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            total, files = self.measure()
            self.max_bytes, self.max_files = max(self.max_bytes, total), \
                max(self.max_files, files)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_hundred_distinct_ca_bundles_keep_temp_space_bounded(
    cluster: ControlPlane, s3_server: S3Server, tmp_path: Path, credential_values: set[str],
) -> None:
    api = cluster.api_client()
    kubeutil.apply_crds(api, ROOT / "crds")
    kubeutil.create_namespace(api, "callstorage-system")
    ns = "ca-files"
    kubeutil.create_namespace(api, ns)
    bucket = "ca-files-bucket"
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user("ca-files-user", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(api, ns, "creds", keys.as_secret_data())
    for i, pem in enumerate(bundles()):
        kubeutil.secret(api, ns, f"ca-{i}", {"ca.crt": pem.decode()})
        spec = storages.s3_storage_spec(bucket, s3_server.endpoint, "creds",
                                        tls={"caSecretRef": {"name": f"ca-{i}",
                                                             "key": "ca.crt"}})
        kubeutil.create_object(api, EXS, ns, storages.external_storage(f"s-{i:03d}", spec))

    tmp = tmp_path / "operator-tmp"
    tmp.mkdir()
    space = TempSpace(tmp)
    operator = launch_operator(cluster.kubeconfig, tmp_path / "log",
                               {"TMPDIR": str(tmp), "CALLSTORAGE_LOG_LEVEL": "INFO"},
                               "ca-operator")
    try:
        def outcomes() -> dict[str, int]:
            items = client.CustomObjectsApi(api).list_namespaced_custom_object(
                "callstorage.io", "v1alpha1", ns, EXS)["items"]
            seen: dict[str, int] = {}
            for obj in items:
                ready = storages.condition(obj)
                if ready.get("status") in ("True", "False"):
                    key = f"{ready['status']}/{ready['reason']}"
                    seen[key] = seen.get(key, 0) + 1
            return seen

        wanted = {"True/Validated": STORAGES - OVER_CAP, "False/CABundleTooLarge": OVER_CAP}
        wait_for(lambda: outcomes() == wanted, 180,
                 f"{wanted} (last: {outcomes()})", alive=operator.server)
        over = kubeutil.get_object(api, EXS, ns, "s-000")
        assert over is not None
        assert storages.condition(over, "Stalled")["reason"] == "CABundleTooLarge"
        assert f"({CAP} bytes, CALLSTORAGE_MAX_CA_BUNDLE_BYTES)" in \
            storages.condition(over)["message"]
        final_bytes, final_files = space.measure()
    finally:
        space.stop()
        operator.stop()
        api.close()

    roots = os.path.getsize(certifi.where())
    per_file = roots + 1 + CAP + 1
    cached = s3_provider._CLIENTS.size  # 64: idle S3 clients kept
    bound = (cached + WORKERS) * per_file
    print(f"\nCA temp space: max {space.max_bytes} bytes in {space.max_files} files "
          f"(final {final_bytes} in {final_files}); bound {bound} = ({cached} cached + "
          f"{WORKERS} in flight) x {per_file}; chart /tmp {CHART_TMP}")
    assert space.max_files <= cached + WORKERS
    assert space.max_bytes <= bound
    assert final_files <= cached
    assert bound < CHART_TMP / 2
