"""The per-namespace storage limit an installation can switch on, on the real API server.

The chart's ``storageQuota`` values and the kustomize components
(``manifests/components/storage-quota``, ``.../storage-quota-required``) are rendered by
the real tools (``helm template``, ``kubectl kustomize``) and applied to the test bed's API
server, whose controller-manager runs the resource quota controller as a cluster's does.
In a limited namespace ten ExternalStorages are created and the eleventh is refused at
admission, with a message naming the quota and the limit; CallTypes, Secrets, ConfigMaps
and edits of existing storages are not limited, a deletion frees a place, and another
namespace is not affected. With the "required" policy, a namespace without a storage
quota can hold no storage at all until it gets one.

The policies are cluster-scoped: each test narrows its policy to namespaces carrying a
label only that test's namespaces have, so nothing else in the session is affected.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import storages
from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL
from conftest import Kubectl, make_kubectl
from kubetools import KUBE_VERSION, helm, kustomize
from paths import CHART, ROOT
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for

COMPONENTS = ROOT / "manifests" / "components"
COUNT = "count/externalstorages.callstorage.io"
LIMIT = 10
# Only namespaces with this label (value: the test's token) fall under a test's policy.
SCOPE_LABEL = "callstorage-test/quota-scope"

Obj = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------

def helm_template(helm_home: dict[str, str], tmp_path: Path, values: Obj,
                  kube_version: str = KUBE_VERSION) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return helm(helm_home, "template", "rel", str(CHART), "-n", "cs",
                f"--kube-version={kube_version}", "-f", str(path), check=False)


def render(helm_home: dict[str, str], tmp_path: Path, values: Obj) -> list[Obj]:
    """What the chart renders for the storage quota (the rest of the chart left out)."""
    result = helm_template(helm_home, tmp_path, values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d
            and d["kind"] in ("ResourceQuota", "ValidatingAdmissionPolicy",
                              "ValidatingAdmissionPolicyBinding")]


def kustomization(tmp_path: Path, body: str) -> Path:
    """A kustomization of an installation's own, next to a link to this checkout's
    manifests/ (kustomize loads components relative to the kustomization)."""
    root = tmp_path / f"k-{secrets.token_hex(3)}"
    (root / "mine").mkdir(parents=True)
    (root / "manifests").symlink_to(ROOT / "manifests")
    (root / "mine" / "kustomization.yaml").write_text(body)
    return root / "mine"


# --- the cluster side --------------------------------------------------------------------------

@pytest.fixture
def new_namespace(kube_api: Any, crds: list[str]) -> Iterator[Callable[..., str]]:
    """Make namespaces (with labels); all deleted afterwards."""
    made: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = f"q-{secrets.token_hex(4)}"
        client.CoreV1Api(kube_api).create_namespace(client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels=labels)))
        made.append(name)
        return name

    yield make
    for name in made:
        kubeutil.delete_namespace(kube_api, name)


@pytest.fixture
def applied(kubectl: Kubectl) -> Iterator[Callable[[list[Obj]], None]]:
    """``kubectl apply`` objects; the cluster-scoped ones (the policies) are deleted
    afterwards (namespaced ones go with their namespace)."""
    cluster_scoped: list[Obj] = []

    def apply(objs: list[Obj]) -> None:
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
        cluster_scoped.extend(o for o in objs if o["kind"].startswith("ValidatingAdmission"))

    yield apply
    if cluster_scoped:
        kubectl("delete", "--ignore-not-found", "--wait", "-f", "-",
                input=yaml.safe_dump_all(cluster_scoped))


def storage(name: str) -> Obj:
    return storages.external_storage(name, storages.s3_storage_spec(
        "recordings", "https://s3.example.test", "creds"))


def create_storage(kube_api: Any, ns: str, name: str) -> None:
    kubeutil.create_object(kube_api, EXTERNALSTORAGE_PLURAL, ns, storage(name))


def created_unless(kube_api: Any, ns: str, name: str, refusal: str) -> bool:
    """Create storage ``name``: False when the API server refuses it with ``refusal`` in
    its message; any other error is raised."""
    try:
        create_storage(kube_api, ns, name)
    except ApiException as exc:
        if refusal not in str(exc.body):
            raise
        return False
    return True


def refusal(kube_api: Any, ns: str, name: str) -> str:
    """The API server's message refusing storage ``name`` (the test fails if it is
    created)."""
    try:
        create_storage(kube_api, ns, name)
    except ApiException as exc:
        return str(exc.body)
    raise AssertionError(f"storage {ns}/{name} was created")


def kubectl_create(kubectl: Kubectl, ns: str, obj: Obj) -> subprocess.CompletedProcess[str]:
    """What a user sees: ``kubectl create`` of one object."""
    return kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj), check=False)


def wait_counted(kube_api: Any, ns: str, quota: str, used: int | None = None) -> None:
    """The quota controller has counted the namespace's storages (until then the API
    server refuses every storage: "status unknown for quota"); ``used``: and counts that
    many (admission and controller agree)."""
    def counted() -> bool:
        status = client.CoreV1Api(kube_api).read_namespaced_resource_quota(quota, ns).status
        seen = (status.used or {}).get(COUNT) if status is not None else None
        return seen is not None and (used is None or seen == str(used))
    # the controller finds a new CRD within 30 s and then counts at its next sync (10 s
    # in the test bed; 5 min by default in a cluster)
    wait_for(counted, 120, f"ResourceQuota {ns}/{quota} to count {COUNT}", interval=0.5)


def assert_the_eleventh_is_refused(kube_api: Any, kubectl: Kubectl, ns: str,
                                   quota: str, created: int = 0) -> None:
    """``created``: how many of s-1, s-2, ... the caller created already."""
    for i in range(created + 1, LIMIT + 1):
        create_storage(kube_api, ns, f"s-{i}")
    # Kubernetes' quota is eventually consistent: the quota controller's recount (every
    # 10 s here) from an informer that has not yet seen the newest storages can lower
    # `used` for a moment, and a create in that moment passes. The user's limit holds once
    # the count is settled, which is what `kubectl describe quota` shows.
    wait_counted(kube_api, ns, quota, LIMIT)
    refused = kubectl_create(kubectl, ns, storage(f"s-{LIMIT + 1}"))
    assert refused.returncode != 0
    assert (f'externalstorages.callstorage.io "s-{LIMIT + 1}" is forbidden: exceeded quota: '
            f"{quota}, requested: {COUNT}=1, used: {COUNT}={LIMIT}, limited: {COUNT}={LIMIT}"
            ) in refused.stderr, refused.stderr
    names = [o["metadata"]["name"] for o in client.CustomObjectsApi(kube_api)
             .list_namespaced_custom_object("callstorage.io", "v1alpha1", ns,
                                            EXTERNALSTORAGE_PLURAL)["items"]]
    assert len(names) == LIMIT
    assert f"s-{LIMIT + 1}" not in names

    # nothing else is limited: other kinds, and edits of the storages already there
    kubeutil.create_object(kube_api, CALLTYPE_PLURAL, ns, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "livestream"}, "spec": {"externalStorage": "s-2"}})
    kubeutil.secret(kube_api, ns, "creds", {"accessKeyId": "AKIAEXAMPLE"})
    client.CoreV1Api(kube_api).create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings")))
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXTERNALSTORAGE_PLURAL, "s-2",
        {"spec": {"suspend": True}})

    # a deletion frees a place (once the controller has counted it); s-1 is used by no
    # CallType, so an operator watching this namespace puts no in-use finalizer on it
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXTERNALSTORAGE_PLURAL, "s-1")

    wait_for(lambda: created_unless(kube_api, ns, f"s-{LIMIT + 1}", "exceeded quota"), 60,
             "a place freed by a deletion", interval=0.5)


def assert_unlimited(kube_api: Any, ns: str) -> None:
    for i in range(1, LIMIT + 3):
        create_storage(kube_api, ns, f"s-{i}")


# --- the chart ----------------------------------------------------------------------------

def test_chart_quota_refuses_the_eleventh_storage_and_nothing_else(
        helm_home: dict[str, str], tmp_path: Path, kube_api: Any, kubectl: Kubectl,
        new_namespace: Callable[..., str], applied: Callable[[list[Obj]], None]) -> None:
    limited, other = new_namespace(), new_namespace()
    objs = render(helm_home, tmp_path, {"storageQuota": {"enabled": True,
                                                         "namespaces": [limited]}})
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objs] == [
        ("ResourceQuota", limited)]
    assert objs[0]["spec"] == {"hard": {COUNT: str(LIMIT)}}
    applied(objs)
    wait_counted(kube_api, limited, "rel-callstorage-storage-quota")
    assert_the_eleventh_is_refused(kube_api, kubectl, limited, "rel-callstorage-storage-quota")
    assert_unlimited(kube_api, other)


def test_chart_quota_goes_to_the_served_namespaces_by_default(
        helm_home: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, {"watchNamespaces": ["app-a", "app-b"],
                                        "storageQuota": {"enabled": True,
                                                         "maxPerNamespace": 3}})
    assert sorted(o["metadata"]["namespace"] for o in objs) == ["app-a", "app-b"]
    assert all(o["spec"]["hard"] == {COUNT: "3"} for o in objs)
    assert render(helm_home, tmp_path, {"watchNamespaces": ["app-a"]}) == []  # off by default


def test_chart_with_the_quota_lints_clean(helm_home: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"storageQuota": {
        "enabled": True, "namespaces": ["app-a"], "required": {
            "enabled": True, "namespaceSelector": {"matchExpressions": [
                {"key": "tenant", "operator": "Exists"}]}}}}))
    result = helm(helm_home, "lint", "--strict", str(CHART), f"--kube-version={KUBE_VERSION}",
                  "-f", str(path), check=False)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize(("values", "kube_version", "message"), [
    ({"storageQuota": {"enabled": True}}, KUBE_VERSION,
     "list the namespaces to limit in storageQuota.namespaces"),
    ({"storageQuota": {"enabled": True, "namespaces": ["a"], "maxPerNamespace": -1}},
     KUBE_VERSION, "/storageQuota/maxPerNamespace"),
    ({"storageQuota": {"enabled": True, "namespaces": ["Not_A_Namespace"]}}, KUBE_VERSION,
     "/storageQuota/namespaces/0"),
    ({"storageQuota": {"enabled": True, "required": {"enabled": True}}}, "1.29.0",
     "storageQuota.required needs Kubernetes 1.30"),
], ids=["no-namespace", "negative", "namespace-name", "old-kubernetes"])
def test_chart_refuses_a_quota_it_cannot_render(helm_home: dict[str, str], tmp_path: Path,
                                               values: Obj, kube_version: str,
                                               message: str) -> None:
    result = helm_template(helm_home, tmp_path, values, kube_version)
    assert result.returncode != 0
    assert message in result.stderr


def test_chart_required_policy_refuses_storages_where_no_quota_is(
        helm_home: dict[str, str], tmp_path: Path, kube_api: Any, kubectl: Kubectl,
        new_namespace: Callable[..., str], applied: Callable[[list[Obj]], None]) -> None:
    scope = secrets.token_hex(4)
    objs = render(helm_home, tmp_path, {"storageQuota": {"enabled": True, "required": {
        "enabled": True, "namespaceSelector": {"matchLabels": {SCOPE_LABEL: scope}}}}})
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding"]
    applied(objs)
    assert_required(kube_api, kubectl, new_namespace, applied, tmp_path, scope,
                    "rel-callstorage-storage-quota-required")


def assert_required(kube_api: Any, kubectl: Kubectl, new_namespace: Callable[..., str],
                    applied: Callable[[list[Obj]], None], tmp_path: Path, scope: str,
                    policy: str) -> None:
    """In scope without a quota: no storage, with a message naming the policy; anything
    else is created. Out of scope: unaffected. With the component's quota: ten."""
    bare, outside = new_namespace({SCOPE_LABEL: scope}), new_namespace()
    expected = (f"ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied "
                "request: failed to configure binding: no params found")

    def refused() -> bool:  # the API server's policy informer takes a moment
        result = kubectl_create(kubectl, bare, storage("first"))
        assert result.returncode != 0 or "created" in result.stdout, result.stderr
        if result.returncode == 0:
            kubectl("delete", "-n", bare, "externalstorage", "first")
            return False
        assert expected in result.stderr, result.stderr
        return True
    wait_for(refused, 30, f"policy {policy} to refuse a storage", interval=0.5)
    kubeutil.secret(kube_api, bare, "other-creds", {"accessKeyId": "AKIAEXAMPLE"})
    kubeutil.create_object(kube_api, CALLTYPE_PLURAL, bare, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "default"}, "spec": {}})
    assert_unlimited(kube_api, outside)

    # a labelled quota that does not limit storages does not count
    wrong = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="wrong", labels={"callstorage.io/storage-quota":
                                                           "true"}),
        spec=client.V1ResourceQuotaSpec(hard={"count/configmaps": "100"}))
    client.CoreV1Api(kube_api).create_namespaced_resource_quota(bare, wrong)
    not_limiting = ("ResourceQuota wrong is labelled callstorage.io/storage-quota but does "
                    f"not limit {COUNT}")
    wait_for(lambda: not_limiting in refusal(kube_api, bare, "first"), 30,
             "the policy to refuse a quota that does not limit storages", interval=0.5)
    client.CoreV1Api(kube_api).delete_namespaced_resource_quota("wrong", bare)

    # the namespace gets its quota (the kustomize component): now it holds ten
    applied(kustomize(kustomization(tmp_path, (
        f"namespace: {bare}\ncomponents:\n  - ../manifests/components/storage-quota\n"))))
    wait_counted(kube_api, bare, "callstorage-storage-quota")

    # once the policy's informer has the quota too
    wait_for(lambda: created_unless(kube_api, bare, "s-1", "no params found"), 30,
             "the policy to find the new quota", interval=0.5)
    assert_the_eleventh_is_refused(kube_api, kubectl, bare, "callstorage-storage-quota",
                                   created=1)


# --- kustomize ----------------------------------------------------------------------------

def test_kustomize_component_refuses_the_eleventh_storage_and_nothing_else(
        tmp_path: Path, kube_api: Any, kubectl: Kubectl,
        new_namespace: Callable[..., str], applied: Callable[[list[Obj]], None]) -> None:
    limited, other = new_namespace(), new_namespace()
    objs = kustomize(kustomization(tmp_path, (
        f"namespace: {limited}\ncomponents:\n  - ../manifests/components/storage-quota\n")))
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objs] == [
        ("ResourceQuota", limited)]
    applied(objs)
    wait_counted(kube_api, limited, "callstorage-storage-quota")
    assert_the_eleventh_is_refused(kube_api, kubectl, limited, "callstorage-storage-quota")
    assert_unlimited(kube_api, other)


def test_kustomize_required_component_refuses_storages_where_no_quota_is(
        tmp_path: Path, kube_api: Any, kubectl: Kubectl,
        new_namespace: Callable[..., str], applied: Callable[[list[Obj]], None]) -> None:
    """Added to an installation's kustomization (which sets its namespace, as the base
    does) and narrowed by a patch of the binding, as docs/install.md shows."""
    scope = secrets.token_hex(4)
    objs = kustomize(kustomization(tmp_path, f"""\
namespace: callstorage-system
components:
  - ../manifests/components/storage-quota-required
patches:
  - target: {{kind: ValidatingAdmissionPolicyBinding,
             name: callstorage-storage-quota-required}}
    patch: |-
      - op: add
        path: /spec/matchResources/namespaceSelector/matchLabels
        value: {{{SCOPE_LABEL}: "{scope}"}}
"""))
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding"]
    applied(objs)
    assert_required(kube_api, kubectl, new_namespace, applied, tmp_path, scope,
                    "callstorage-storage-quota-required")


def test_chart_and_kustomize_ship_the_same_policy(
        helm_home: dict[str, str], tmp_path: Path) -> None:
    chart = render(helm_home, tmp_path, {"storageQuota": {
        "enabled": True, "required": {"enabled": True}}})
    component = kustomize(kustomization(tmp_path, (
        "components:\n  - ../manifests/components/storage-quota-required\n")))

    def policy(objs: list[Obj], namespace: str) -> list[Obj]:
        specs = []
        for o in objs:
            spec = json.loads(json.dumps(o["spec"]).replace(
                o["metadata"]["name"], "NAME").replace(f'"{namespace}"', '"NS"'))
            specs.append({"kind": o["kind"], "spec": spec})
        return specs

    assert policy(chart, "cs") == policy(component, "callstorage-system")
    quota = kustomize(kustomization(tmp_path, (
        "namespace: a\ncomponents:\n  - ../manifests/components/storage-quota\n")))
    chart_quota = render(helm_home, tmp_path, {"storageQuota": {"enabled": True,
                                                                "namespaces": ["a"]}})
    assert quota[0]["spec"] == chart_quota[0]["spec"]
    assert quota[0]["metadata"]["labels"]["callstorage.io/storage-quota"] == \
        chart_quota[0]["metadata"]["labels"]["callstorage.io/storage-quota"] == "true"


def test_a_quota_refuses_every_storage_until_it_is_counted(
        tmp_path: Path, cluster: ControlPlane) -> None:
    """docs/install.md's caveat, on a control plane of its own: a quota the controller
    could not count yet (here made before the CRDs exist, as a quota made right after
    them is until the controller's next discovery) refuses every storage as "status
    unknown" until it is counted; then storages are created."""
    api = cluster.api_client()
    own_kubectl = make_kubectl(cluster.kubeconfig)
    kubeutil.create_namespace(api, "app-1")
    own_kubectl("apply", "-f", "-", input=yaml.safe_dump_all(kustomize(kustomization(tmp_path, (
        "namespace: app-1\ncomponents:\n  - ../manifests/components/storage-quota\n")))))
    kubeutil.apply_crds(api, ROOT / "crds")
    refused = kubectl_create(own_kubectl, "app-1", storage("s-1"))
    assert ("status unknown for quota: callstorage-storage-quota, resources: "
            f"{COUNT}") in refused.stderr, refused.stderr
    wait_counted(api, "app-1", "callstorage-storage-quota")
    create_storage(api, "app-1", "s-1")
    api.close()
