"""The chart's RBAC is enough, and no more: the operator runs as the chart's ServiceAccount.

Each test installs the chart with ``helm install`` into a control plane of its own (a few
seconds to start), so no other operator of the test run (the shared one watches every
namespace of the shared control plane) can do the work in its place. The operator is then
started with a kubeconfig holding a TokenRequest token of the release's ServiceAccount and
the settings the chart's Deployment would give it, and must:

- take an ExternalStorage to Ready=True against the S3 emulator (read the Secret, patch
  status), protect it with its finalizer while a CallType uses it (patch metadata), answer
  an on-demand check, notice a rotated Secret (watch Secrets), post Events, and let it go
  when deleted; take the CallType to Ready=True;
- do all of it without a single 403 in its log;
- leave GitOps alone: the objects are server-side applied as a GitOps tool would; applied
  again after all the operator's writes, nothing changes and no spec field has another
  owner;
- in namespaced mode, be refused Secrets of a namespace it was not granted.
The metrics endpoint is scraped after the run and shows the expected series.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

import storages
from callstorage.api import CHECK_ANNOTATION, IN_USE_FINALIZER
from kubetools import helm, helm_env, kubectl
from paths import CHART
from storages import CT, EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane, write_kubeconfig
from testbed.endpoints import TEST_DENYLIST
from testbed.s3 import S3Keys, S3Server, readwrite_policy

pytestmark = pytest.mark.integration

# settings the test's operator_factory chooses itself: free ports, short timeouts, DEBUG
FACTORY_SETTINGS = {
    "CALLSTORAGE_METRICS_PORT", "CALLSTORAGE_HEALTH_PORT", "CALLSTORAGE_CONNECT_TIMEOUT",
    "CALLSTORAGE_READ_TIMEOUT", "CALLSTORAGE_MAX_ATTEMPTS", "CALLSTORAGE_RETRY_BASE",
    "CALLSTORAGE_RETRY_MAX", "CALLSTORAGE_LOG_LEVEL", "HOME",
}


class Release:
    """One ``helm install`` of the chart, and the ServiceAccount it runs as."""

    def __init__(self, cp: ControlPlane, helm_home: Path, name: str, namespace: str) -> None:
        self.cp, self.name, self.namespace = cp, name, namespace
        self.helm_env = helm_env(helm_home)
        self.service_account = f"{name}-callstorage"

    def helm(self, *args: str) -> str:
        return helm(self.helm_env, *args, kubeconfig=self.cp.kubeconfig).stdout

    def install(self, values: dict[str, Any], values_file: Path) -> None:
        values_file.write_text(yaml.safe_dump(values))
        self.helm("install", self.name, str(CHART), "-n", self.namespace,
                  "--create-namespace", "-f", str(values_file))

    def operator_env(self) -> dict[str, str]:
        """The Deployment's environment as the chart renders it, with the downward API
        resolved (the pod's namespace is the release namespace; leader election on, so
        the chart's Lease Role is exercised too)."""
        manifest = self.helm("get", "manifest", self.name, "-n", self.namespace)
        (deployment,) = [d for d in yaml.safe_load_all(manifest)
                         if d and d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env: dict[str, str] = {}
        for var in container["env"]:
            if var["name"] in FACTORY_SETTINGS:
                continue
            if "valueFrom" in var:
                field = var["valueFrom"]["fieldRef"]["fieldPath"]
                if field == "metadata.uid":
                    continue  # no Pod here: the Lease gets no owner
                assert field in ("metadata.namespace", "metadata.name"), var
                env[var["name"]] = (self.namespace if field == "metadata.namespace"
                                    else f"{self.name}-local")
            else:
                env[var["name"]] = var.get("value", "")
        return env

    def token_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig with a TokenRequest token of the release's ServiceAccount."""
        token = kubectl(self.cp.kubeconfig, "create", "token", self.service_account,
                        "-n", self.namespace, "--duration=2h").stdout.strip()
        return write_kubeconfig(path, self.cp.server, self.cp.ca_path, token=token,
                                user=f"system:serviceaccount:{self.namespace}:"
                                     f"{self.service_account}")

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


GITOPS = "gitops"  # the field manager of a GitOps tool (Argo CD, Flux) applying our YAML


def gitops_apply(kubeconfig: Path, namespace: str, manifest: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "--server-side", f"--field-manager={GITOPS}", "-n",
            namespace, "-f", "-", input=yaml.safe_dump(manifest))


def assert_no_drift(kubeconfig: Path, admin: Any, namespace: str, plural: str,
                    manifest: dict[str, Any]) -> None:
    """Re-applying the same YAML changes nothing, and the operator owns no spec field."""
    name = manifest["metadata"]["name"]
    before = kubeutil.get_object(admin, plural, namespace, name)
    assert before is not None
    gitops_apply(kubeconfig, namespace, manifest)
    after = kubeutil.get_object(admin, plural, namespace, name)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kubectl(kubeconfig, "diff", "--server-side", f"--field-manager={GITOPS}", "-n",
                   namespace, "-f", "-", input=yaml.safe_dump(manifest)).stdout == ""
    for entry in after["metadata"]["managedFields"]:
        if entry["manager"] != GITOPS:
            assert "f:spec" not in json.dumps(entry.get("fieldsV1", {})), entry


def can_i(release: Release, verb: str, resource: str, namespace: str | None = None) -> bool:
    """``kubectl auth can-i`` as the ServiceAccount; ``resource/status`` = the subresource."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    sub = [f"--subresource={subresource}"] if subresource else []
    answer = kubectl(release.cp.kubeconfig, "auth", "can-i", verb, resource, *sub, *where,
                     f"--as={release.user}", check=False)
    return answer.stdout.strip() == "yes"


@pytest.fixture
def admin(cluster: ControlPlane) -> Iterator[Any]:
    api = cluster.api_client()
    yield api
    api.close()


def create_namespace(admin: Any, name: str) -> str:
    kubeutil.create_namespace(admin, name)
    return name


def s3_user(s3: S3Server, credential_values: set[str], bucket: str) -> S3Keys:
    s3.create_bucket(bucket)
    keys = s3.create_user(f"user-{bucket}", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    return keys


def has_finalizer(obj: dict[str, Any] | None) -> bool:
    return IN_USE_FINALIZER in ((obj or {}).get("metadata", {}).get("finalizers") or [])


def storage_and_call_type_scenario(admin: Any, kubeconfig: Path, s3: S3Server,
                                   namespace: str, credential_values: set[str]) -> None:
    """Everything the operator does to one storage and one call type, start to end, with
    the objects applied the way a GitOps tool would (server-side apply)."""
    bucket = f"rec-{namespace}"
    keys = s3_user(s3, credential_values, bucket)
    kubeutil.secret(admin, namespace, "recordings-creds", keys.as_secret_data())
    storage = storages.external_storage("recordings", storages.s3_storage_spec(
        bucket, s3.endpoint, "recordings-creds", path="calls/"))
    gitops_apply(kubeconfig, namespace, storage)
    storages.wait_ready(admin, EXS, namespace, "recordings", "True", "Validated", timeout=60)

    call_type = {"apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
                 "metadata": {"name": "allhands"}, "spec": {"externalStorage": "recordings"}}
    gitops_apply(kubeconfig, namespace, call_type)
    storages.wait_ready(admin, CT, namespace, "allhands", "True", "StorageReady", timeout=60)
    kubeutil.wait_object(admin, EXS, namespace, "recordings", has_finalizer, 30,
                         "the in-use finalizer (a metadata patch)")

    # on-demand check: an upload under the storage's path, reported in status.lastCheck
    client.CustomObjectsApi(admin).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "recordings",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "rbac"}}})
    obj = kubeutil.wait_object(
        admin, EXS, namespace, "recordings",
        lambda o: ((o or {}).get("status", {}).get("lastCheck") or {})
        .get("requestedAt") == "rbac", 60, "the on-demand check")
    assert obj is not None
    assert obj["status"]["lastCheck"]["succeeded"] is True, obj["status"]["lastCheck"]

    # a rotated Secret is noticed (watch on Secrets) and revalidated
    wrong = {**keys.as_secret_data(), "secretAccessKey": "rotated-wrong-value"}
    kubeutil.secret(admin, namespace, "recordings-creds", wrong, replace=True)
    storages.wait_ready(admin, EXS, namespace, "recordings", "False", "InvalidCredentials",
                        timeout=60)
    kubeutil.secret(admin, namespace, "recordings-creds", keys.as_secret_data(), replace=True)
    storages.wait_ready(admin, EXS, namespace, "recordings", "True", "Validated", timeout=60)

    # Events were created on the storage
    events = client.CoreV1Api(admin).list_namespaced_event(namespace).items
    assert any(e.involved_object.name == "recordings" for e in events), \
        "the operator posted no Event"

    # after all these operator writes, a GitOps tool sees no drift
    assert_no_drift(kubeconfig, admin, namespace, EXS, storage)
    assert_no_drift(kubeconfig, admin, namespace, CT, call_type)


def delete_scenario(admin: Any, namespace: str) -> None:
    """Deleting the CallType releases the storage: the operator removes its finalizer."""
    custom = client.CustomObjectsApi(admin)
    custom.delete_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, EXS,
                                           "recordings")
    obj = kubeutil.wait_object(admin, EXS, namespace, "recordings",
                               lambda o: bool((o or {}).get("metadata", {})
                                              .get("deletionTimestamp")),
                               30, "deletion to start")
    assert has_finalizer(obj), "in use: the finalizer must hold the storage"
    custom.delete_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, CT,
                                           "allhands")
    kubeutil.wait_object(admin, EXS, namespace, "recordings", lambda o: o is None, 60,
                         "the storage to be gone once no CallType uses it")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def series(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /,
           **labels: str) -> list[float]:
    return [v for (n, ls), v in scraped.items()
            if n == metric and set(labels.items()) <= set(ls)]


def assert_no_forbidden(log: str) -> None:
    """kopf and our client both log refused requests; none may appear."""
    lines = [line for line in log.splitlines()
             if "forbidden" in line.lower() or " 403" in line or "(403)" in line]
    assert not lines, "requests were refused:\n" + "\n".join(lines[:20])


def assert_no_credentials(log: str, credential_values: set[str]) -> None:
    # count only: printing a leaked value would leak it into the test output
    assert sum(value in log for value in credential_values) == 0


OperatorFactory = Callable[..., Any]


def test_cluster_wide_operator_needs_nothing_beyond_the_chart_rbac(
    cluster: ControlPlane, admin: Any, operator_factory: OperatorFactory,
    s3_server: S3Server, credential_values: set[str], tmp_path: Path,
) -> None:
    release = Release(cluster, tmp_path / "helm", "wide", "callstorage-wide")
    release.install({}, tmp_path / "values.yaml")
    app = create_namespace(admin, f"app-{secrets.token_hex(3)}")

    env = release.operator_env()
    # the chart's deny list refuses loopback, where the S3 emulator listens (dev only)
    env["CALLSTORAGE_ENDPOINT_DENYLIST"] = ",".join(TEST_DENYLIST)
    assert env["CALLSTORAGE_NAMESPACE"] == "callstorage-wide"
    assert env["CALLSTORAGE_WATCH_NAMESPACES"] == ""  # cluster-wide
    operator = operator_factory(env=env, kubeconfig=release.token_kubeconfig(
        tmp_path / "sa.kubeconfig"), name="rbac-wide")
    try:
        storage_and_call_type_scenario(admin, cluster.kubeconfig, s3_server, app,
                                       credential_values)

        scraped = scrape(operator.metrics_url)
        assert series(scraped, "callstorage_storage_ready", namespace=app,
                      name="recordings") == [1.0]
        assert sum(series(scraped, "callstorage_validations_total", storage_type="s3",
                          reason="Validated")) >= 2
        assert sum(series(scraped, "callstorage_validations_total", storage_type="s3",
                          reason="InvalidCredentials")) >= 1
        assert series(scraped, "callstorage_validation_duration_seconds_count",
                      storage_type="s3")[0] >= 3
        assert len(series(scraped, "callstorage_queue_depth")) == 1

        delete_scenario(admin, app)
        scraped = scrape(operator.metrics_url)
        assert series(scraped, "callstorage_storage_ready", namespace=app,
                      name="recordings") == []  # forgotten with the object
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    assert_no_forbidden(log)
    assert_no_credentials(log, credential_values)
    # JSON logs, as the chart configures them
    first = next(line for line in log.splitlines() if line.startswith("{"))
    assert {"time", "level", "logger", "message"} <= set(json.loads(first))


def test_cluster_wide_rbac_denies_everything_else(cluster: ControlPlane,
                                                  tmp_path: Path) -> None:
    release = Release(cluster, tmp_path / "helm", "wide", "callstorage-wide")
    release.install({}, tmp_path / "values.yaml")
    allowed = [("list", "externalstorages.callstorage.io"), ("watch", "calltypes.callstorage.io"),
               ("get", "secrets"), ("patch", "externalstorages.callstorage.io"),
               ("patch", "externalstorages.callstorage.io/status"),
               ("patch", "calltypes.callstorage.io/status"), ("create", "events")]
    denied = [
        ("create", "externalstorages.callstorage.io"),
        ("update", "externalstorages.callstorage.io"),
        ("delete", "externalstorages.callstorage.io"),
        ("patch", "calltypes.callstorage.io"),
        ("delete", "calltypes.callstorage.io"),
        ("update", "externalstorages.callstorage.io/status"),
        ("patch", "externalstorages.callstorage.io/scale"),
        ("create", "secrets"), ("update", "secrets"), ("patch", "secrets"),
        ("delete", "secrets"),
        ("list", "configmaps"), ("list", "pods"), ("list", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io"), ("patch", "events"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ]
    assert [v_r for v_r in allowed if not can_i(release, *v_r, namespace="any")] == []
    assert [v_r for v_r in denied if can_i(release, *v_r, namespace="any")] == []


def test_namespaced_operator_works_and_cannot_read_other_secrets(
    cluster: ControlPlane, admin: Any, operator_factory: OperatorFactory,
    s3_server: S3Server, credential_values: set[str], tmp_path: Path,
) -> None:
    served = create_namespace(admin, f"app-{secrets.token_hex(3)}")
    other = create_namespace(admin, f"other-{secrets.token_hex(3)}")
    release = Release(cluster, tmp_path / "helm", "narrow", "callstorage-narrow")
    release.install({"watchNamespaces": [served]}, tmp_path / "values.yaml")
    # nothing cluster-scoped came with it
    assert kubectl(cluster.kubeconfig, "get", "clusterroles,clusterrolebindings",
                   "-l", "app.kubernetes.io/instance=narrow", "-o", "name").stdout == ""

    # a storage and a Secret where the operator has no grant, made before it starts
    bucket = f"rec-{other}"
    keys = s3_user(s3_server, credential_values, bucket)
    kubeutil.secret(admin, other, "recordings-creds", keys.as_secret_data())
    kubeutil.create_object(admin, EXS, other, storages.external_storage(
        "recordings", storages.s3_storage_spec(bucket, s3_server.endpoint, "recordings-creds",
                                               path="calls/")))

    env = release.operator_env()
    # the chart's deny list refuses loopback, where the S3 emulator listens (dev only)
    env["CALLSTORAGE_ENDPOINT_DENYLIST"] = ",".join(TEST_DENYLIST)
    assert env["CALLSTORAGE_WATCH_NAMESPACES"] == f"{served},callstorage-narrow"
    sa_kubeconfig = release.token_kubeconfig(tmp_path / "sa.kubeconfig")
    operator = operator_factory(env=env, kubeconfig=sa_kubeconfig, name="rbac-narrow")
    try:
        storage_and_call_type_scenario(admin, cluster.kubeconfig, s3_server, served,
                                       credential_values)
        delete_scenario(admin, served)
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    assert_no_forbidden(log)  # it never even tried outside its namespaces
    assert_no_credentials(log, credential_values)
    untouched = kubeutil.get_object(admin, EXS, other, "recordings")
    assert untouched is not None
    assert "status" not in untouched
    assert not untouched["metadata"].get("finalizers")

    # the ServiceAccount's own token: Secrets of its namespaces yes, any other no (403)
    sa_api = cluster.api_client(sa_kubeconfig)
    try:
        core = client.CoreV1Api(sa_api)
        assert core.read_namespaced_secret("recordings-creds", served) is not None
        for call in (lambda: core.read_namespaced_secret("recordings-creds", other),
                     lambda: core.list_namespaced_secret(other),
                     core.list_secret_for_all_namespaces):
            with pytest.raises(client.ApiException) as refused:
                call()
            assert refused.value.status == 403
    finally:
        sa_api.close()
    assert can_i(release, "get", "secrets", served)
    assert can_i(release, "get", "secrets", "callstorage-narrow")
    assert not can_i(release, "get", "secrets", other)
    assert not can_i(release, "list", "externalstorages.callstorage.io", other)
    assert not can_i(release, "list", "secrets")  # --all-namespaces
