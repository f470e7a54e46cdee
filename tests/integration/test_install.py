"""The Helm chart and the kustomize manifests, rendered, schema-checked and installed for real.

- ``helm lint`` is clean for the default values and the non-default modes.
- Everything ``helm template`` and ``kubectl kustomize`` produce validates with kubeconform
  against strict JSON schemas converted here from the test bed API server's own
  ``/openapi/v2`` plus our CRD files (no network: kubeconform reads a local directory).
- ``helm install`` / ``kubectl apply -k`` against a real API server create exactly the
  expected objects (a before/after diff of the whole cluster), and ``helm uninstall``
  leaves only the CRDs. These run on a fresh control plane per test: a clean slate for
  the diff, CRDs installed by Helm itself, and no shared operator reacting to the objects.
- The chart, the kustomize base and the operator's settings agree (env, RBAC rules).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from callstorage.api import CALL_TYPE_LABEL, call_type_object_name
from callstorage.settings import DEFAULT_DENIED_ENDPOINTS, Settings
from kubetools import KUBE_VERSION, helm, kubectl, kustomize, run
from paths import CHART, ROOT
from testbed import binaries
from testbed.controlplane import ControlPlane

MANIFESTS = ROOT / "manifests"
OVERLAY = MANIFESTS / "overlays" / "single-namespace"
CRD_NAMES = {"externalstorages.callstorage.io", "calltypes.callstorage.io"}
# kubeconform looks a schema up by this path; see write_schemas for the layout
SCHEMA_TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (namespace or "", kind, name)


# --- running the tools ------------------------------------------------------------------

def docs(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def write_values(tmp_path: Path, values: Obj) -> Path:
    path = tmp_path / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render(helm_home: dict[str, str], tmp_path: Path, values: Obj | None = None,
           release: str = "cs", namespace: str = "callstorage-system",
           include_crds: bool = False) -> list[Obj]:
    args = ["template", release, str(CHART), "-n", namespace, f"--kube-version={KUBE_VERSION}",
            "-f", str(write_values(tmp_path, values or {}))]
    if include_crds:
        args.append("--include-crds")
    return docs(helm(helm_home, *args).stdout)


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def serving_roles(objs: list[Obj]) -> list[Obj]:
    """The Roles that grant the operator's work (not the leader election Role)."""
    return [r for r in by_kind(objs, "Role")
            if not r["metadata"]["name"].endswith("-leader-election")]


def one(objs: list[Obj], kind: str) -> Obj:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


# Values that switch every optional part on (namespaced mode, platform storage and its
# Secret, built-in CallTypes, ServiceMonitor).
FULL_VALUES: Obj = {
    "watchNamespaces": ["app-a", "app-b"],
    "platformStorage": {
        "create": True,
        "spec": {"bucket": "platform-recordings",
                 "s3": {"region": "eu-west-1", "endpoint": "https://s3.example.test"}},
        "credentialsSecret": {"create": True,
                              "stringData": {"accessKeyId": "AKIAEXAMPLE",
                                             "secretAccessKey": "not-a-real-secret"}},
    },
    "builtinCallTypes": {"create": True, "namespaces": ["app-a"]},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
}
# The same for a real install: the test bed has no prometheus-operator CRD for the monitor.
INSTALL_VALUES: Obj = {**FULL_VALUES, "metrics": {"serviceMonitor": {"enabled": False}}}


# --- helm lint ----------------------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, FULL_VALUES, {
    "platformStorage": {"create": True, "spec": {"storageType": "gcs", "bucket": "b"}},
    "settings": {"logFormat": "text", "allowAmbientCredentials": True},
    "metrics": {"port": 0},
}], ids=["defaults", "everything-on", "gcs-no-metrics"])
def test_helm_lint_is_clean(helm_home: dict[str, str], tmp_path: Path, values: Obj) -> None:
    result = helm(helm_home, "lint", "--strict", str(CHART), f"--kube-version={KUBE_VERSION}",
                  "-f", str(write_values(tmp_path, values)))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    # only the INFO about a missing icon: no WARNING, no ERROR
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(("values", "message"), [
    ({"platformStorage": {"create": True}}, "platformStorage.spec.bucket is required"),
    ({"settings": {"logFormat": "xml"}}, "/settings/logFormat"),
    ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
    ({"platformStorage": {"name": "stream-s3"}}, "/platformStorage/name"),
    ({"setings": {}}, "setings"),
    ({"builtinCallTypes": {"create": True, "namespaces": ["elsewhere"]},
      "watchNamespaces": ["app-a"]}, "namespace elsewhere is not served"),
    # the operator would refuse these at start-up (settings.py): helm says so first
    ({"leaderElection": {"renewDeadline": 15}},
     "leaderElection.renewDeadline (15) must be less than leaderElection.leaseDuration (15)"),
    ({"leaderElection": {"leaseDuration": 8, "renewDeadline": 9}},
     "leaderElection.renewDeadline (9) must be less than leaderElection.leaseDuration (8)"),
    ({"leaderElection": {"retryPeriod": 10}},
     "leaderElection.retryPeriod (10) must be less than leaderElection.renewDeadline (10)"),
], ids=["bucket-required", "log-format", "namespace-name", "reserved-name", "typo",
        "calltypes-outside-watched", "renew-deadline-equal", "renew-deadline-longer",
        "retry-period"])
def test_chart_rejects_bad_values(helm_home: dict[str, str], tmp_path: Path, values: Obj,
                                  message: str) -> None:
    result = helm(helm_home, "template", "x", str(CHART), f"--kube-version={KUBE_VERSION}",
                  "-f", str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert message in result.stderr


# --- what the chart renders -------------------------------------------------------------

def test_default_render_is_cluster_wide_and_hardened(helm_home: dict[str, str],
                                                     tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, release="rel")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ClusterRole", "rel-callstorage"),
        ("ClusterRoleBinding", "rel-callstorage"),
        ("Deployment", "rel-callstorage"),
        ("PodDisruptionBudget", "rel-callstorage"),
        ("Role", "rel-callstorage-leader-election"),
        ("RoleBinding", "rel-callstorage-leader-election"),
        ("Service", "rel-callstorage-metrics"),
        ("ServiceAccount", "rel-callstorage"),
    ]
    deployment = one(objs, "Deployment")
    spec = deployment["spec"]
    # two replicas, one leader; a rollout adds a standby before it removes anybody
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert env_of(deployment)["CALLSTORAGE_LEADER_ELECTION"] == "true"
    assert env_of(deployment)["CALLSTORAGE_LEASE_NAME"] == "rel-callstorage"
    assert env_of(deployment)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert one(objs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": pod_labels(deployment)}}
    lease_rules = one(objs, "Role")["rules"]
    assert lease_rules == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["rel-callstorage"], "verbs": ["get", "update"]}]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-callstorage"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8081, "metrics": 8080}
    assert "command" not in container
    assert "args" not in container
    service = one(objs, "Service")
    assert service["spec"]["selector"] == pod_labels(deployment)
    binding = one(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-callstorage",
                                    "namespace": "callstorage-system"}]


def pod_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def env_of(deployment: Obj) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # no value and no valueFrom: the empty string
    return {e["name"]: e.get("value", e.get("valueFrom", "")) for e in container["env"]}


def test_chart_sets_every_operator_setting(helm_home: dict[str, str], tmp_path: Path) -> None:
    env = env_of(one(render(helm_home, tmp_path), "Deployment"))
    wanted = {f"CALLSTORAGE_{name.upper()}" for name in Settings.model_fields}
    assert wanted <= set(env), f"no value for {sorted(wanted - set(env))}"
    own_namespace = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["CALLSTORAGE_NAMESPACE"] == env["POD_NAMESPACE"] == own_namespace


def test_chart_defaults_match_the_operator_defaults(helm_home: dict[str, str],
                                                    tmp_path: Path) -> None:
    """The chart passes every setting explicitly, so its defaults must be the operator's:
    an empty CALLSTORAGE_ENDPOINT_DENYLIST would silently drop the SSRF protection."""
    env = env_of(one(render(helm_home, tmp_path), "Deployment"))
    parsed = Settings.model_validate({
        name: env[f"CALLSTORAGE_{name.upper()}"] for name in Settings.model_fields
        if name != "namespace"
    } | {"namespace": "x"})
    # the operator's own default, not the tests' loopback-allowing list (conftest)
    defaults = Settings(namespace="x", endpoint_denylist=list(DEFAULT_DENIED_ENDPOINTS))
    # The chart's deliberate choices: JSON logs (log collectors), and two replicas that
    # elect a leader through a Lease named after the release; all else is the same
    assert parsed.log_format == "json"
    assert parsed.leader_election is True
    assert parsed.model_copy(update={
        "log_format": defaults.log_format, "leader_election": defaults.leader_election,
        "lease_name": defaults.lease_name}) == defaults
    assert parsed.endpoint_denylist == list(DEFAULT_DENIED_ENDPOINTS)


def test_namespaced_render_has_no_cluster_scoped_rbac(helm_home: dict[str, str],
                                                      tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, FULL_VALUES, release="rel", namespace="cs")
    assert not by_kind(objs, "ClusterRole")
    assert not by_kind(objs, "ClusterRoleBinding")
    served = ["app-a", "app-b", "cs"]
    assert sorted(r["metadata"]["namespace"] for r in serving_roles(objs)) == served
    for binding in by_kind(objs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-callstorage",
                                        "namespace": "cs"}]
    env = env_of(one(objs, "Deployment"))
    assert env["CALLSTORAGE_WATCH_NAMESPACES"] == "app-a,app-b,cs"


def test_optional_parts_render_as_documented(helm_home: dict[str, str],
                                             tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, FULL_VALUES, release="rel", namespace="cs")
    storage = one(objs, "ExternalStorage")
    assert storage["metadata"] == {**storage["metadata"], "name": "platform-default",
                                   "namespace": "cs"}
    assert storage["spec"] == {
        "storageType": "s3", "bucket": "platform-recordings", "accessMode": "ReadWrite",
        "s3": {"region": "eu-west-1", "endpoint": "https://s3.example.test",
               "credentialsSecretRef": {"name": "platform-default-credentials"}},
    }
    secret = one(objs, "Secret")
    assert secret["metadata"]["name"] == "platform-default-credentials"
    # bound to the platform storage's custom endpoint (the operator sends its keys nowhere
    # else)
    assert secret["stringData"] == {"accessKeyId": "AKIAEXAMPLE",
                                    "secretAccessKey": "not-a-real-secret",
                                    "endpoint": "https://s3.example.test"}
    call_types = {(c["metadata"]["namespace"], c["metadata"]["name"]): c
                  for c in by_kind(objs, "CallType")}
    assert set(call_types) == {("app-a", n) for n in
                               ("default", "livestream", "audio-room", "development")}
    assert call_types[("app-a", "audio-room")]["metadata"]["labels"][
        CALL_TYPE_LABEL] == "audio_room"
    assert call_type_object_name("audio_room") == "audio-room"  # the operator's own mapping
    assert all(c["spec"] == {} for c in call_types.values())  # = the platform storage
    monitor = one(objs, "ServiceMonitor")
    service = one(objs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_platform_storage_of_another_provider_keeps_only_its_block(
        helm_home: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, {"platformStorage": {
        "create": True, "spec": {"storageType": "gcs", "bucket": "b"}}})
    # values.yaml's s3 block is merged in by Helm; the CRD forbids it next to gcs
    assert one(objs, "ExternalStorage")["spec"] == {
        "storageType": "gcs", "bucket": "b", "accessMode": "ReadWrite",
        "gcs": {"credentialsSecretRef": {"name": "platform-default-credentials"}}}


def test_metrics_port_zero_drops_port_and_service(helm_home: dict[str, str],
                                                  tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path, {"metrics": {"port": 0,
                                                    "serviceMonitor": {"enabled": True}}})
    assert not by_kind(objs, "Service")
    assert not by_kind(objs, "ServiceMonitor")
    deployment = one(objs, "Deployment")
    assert env_of(deployment)["CALLSTORAGE_METRICS_PORT"] == "0"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["health"]


def test_chart_and_kustomize_base_install_the_same_operator(helm_home: dict[str, str],
                                                            tmp_path: Path) -> None:
    chart = render(helm_home, tmp_path)
    base = kustomize(MANIFESTS)

    def container(objs: list[Obj]) -> Obj:
        (c,) = copy.deepcopy(one(objs, "Deployment")["spec"]["template"]["spec"]["containers"])
        c.pop("image")
        # the Lease is named after the release (the chart) or the Deployment (the base);
        # each matches the one name its leader election Role grants
        lease = next(e for e in c["env"] if e["name"] == "CALLSTORAGE_LEASE_NAME")
        assert [lease["value"]] == one(objs, "Role")["rules"][1]["resourceNames"]
        c["env"] = sorted((e for e in c["env"] if e is not lease), key=lambda e: e["name"])
        return dict(c)

    assert container(chart) == container(base)
    chart_pod = one(chart, "Deployment")["spec"]["template"]["spec"]
    base_pod = one(base, "Deployment")["spec"]["template"]["spec"]
    for field in ("securityContext", "volumes", "automountServiceAccountToken"):
        assert chart_pod[field] == base_pod[field], field
    for field in ("replicas", "strategy"):
        assert one(base, "Deployment")["spec"][field] == one(chart, "Deployment")["spec"][field]
    assert one(base, "PodDisruptionBudget")["spec"]["maxUnavailable"] == \
        one(chart, "PodDisruptionBudget")["spec"]["maxUnavailable"]
    assert one(base, "Role")["rules"][0] == one(chart, "Role")["rules"][0]
    # the RBAC rules are the same (the chart's ClusterRole, the base's and the overlay's Role)
    assert one(chart, "ClusterRole")["rules"] == one(base, "ClusterRole")["rules"]
    namespaced = render(helm_home, tmp_path, {"watchNamespaces": ["a"]})
    chart_role = serving_roles(namespaced)[0]
    (overlay_role,) = serving_roles(kustomize(OVERLAY))
    assert chart_role["rules"] == overlay_role["rules"]
    assert chart_role["rules"] == one(base, "ClusterRole")["rules"]


def test_rbac_grants_no_writes_beyond_status_finalizers_and_events(
        helm_home: dict[str, str], tmp_path: Path) -> None:
    rules = one(render(helm_home, tmp_path), "ClusterRole")["rules"]
    grants = {(g, r, v) for rule in rules for g in rule["apiGroups"]
              for r in rule["resources"] for v in rule["verbs"]}
    writes = {(g, r, v) for g, r, v in grants if v not in {"get", "list", "watch"}}
    assert writes == {
        ("callstorage.io", "externalstorages", "patch"),  # the in-use finalizer
        ("callstorage.io", "externalstorages/status", "patch"),
        ("callstorage.io", "calltypes/status", "patch"),
        ("", "events", "create"),
    }
    assert not any(r.get("resourceNames") for r in rules)
    assert all("*" not in rule[f] for rule in rules for f in ("apiGroups", "resources", "verbs"))
    assert {(g, r) for g, r, _ in grants} == {
        ("callstorage.io", r) for r in ("externalstorages", "calltypes",
                                        "externalstorages/status", "calltypes/status")
    } | {("", "secrets"), ("", "events")}


def test_single_namespace_overlay_serves_its_own_namespace(tmp_path: Path) -> None:
    objs = kustomize(OVERLAY)
    assert not by_kind(objs, "ClusterRole")
    assert not by_kind(objs, "ClusterRoleBinding")
    env = env_of(one(objs, "Deployment"))
    assert env["CALLSTORAGE_WATCH_NAMESPACES"] == {"fieldRef": {
        "fieldPath": "metadata.namespace"}}
    # moved to another namespace by an overlay of its own, everything follows
    (tmp_path / "crds").symlink_to(ROOT / "crds")
    (tmp_path / "manifests").symlink_to(MANIFESTS)
    mine = tmp_path / "team-a"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        "namespace: team-a\nresources:\n  - ../manifests/overlays/single-namespace\n")
    moved = kustomize(mine)
    namespaces = {o["metadata"].get("namespace") for o in moved
                  if o["kind"] not in ("CustomResourceDefinition", "Namespace")}
    assert namespaces == {"team-a"}
    for binding in by_kind(moved, "RoleBinding"):  # serving, and leader election
        assert binding["subjects"][0]["namespace"] == "team-a"
    assert one(moved, "Namespace")["metadata"]["name"] == "team-a"


# --- kubeconform against the API server's own schemas --------------------------------------

def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI v2 / CRD structural schema -> JSON schema kubeconform can check strictly.

    int-or-string and Quantity accept numbers and strings, like the API server; objects
    with declared properties reject unknown fields (kubeconform's "-strict" schemas),
    unless marked x-kubernetes-preserve-unknown-fields.
    """
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            # a map of names to schemas, not a schema (JSONSchemaProps has properties
            # named "x-kubernetes-...")
            out[key] = {name: _openapi_to_jsonschema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_openapi_to_jsonschema(s) for s in value]
        else:
            out[key] = value
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def _closure(definitions: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The definitions reachable from ``roots`` through $ref."""
    seen: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = definitions[name]
        text = json.dumps(definitions[name])
        todo += [part.split('"', 1)[0] for part in text.split('"#/definitions/')[1:]]
    return seen


def _schema_path(out: Path, group: str, version: str, kind: str) -> Path:
    # kubeconform: Group = apiVersion before "/" ("v1" for the core group)
    api_version = f"{group}/{version}" if group else version
    return out / api_version.split("/")[0] / f"{kind.lower()}_{version}.json"


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def write_schemas(openapi: Obj, crd_docs: list[Obj], out: Path) -> int:
    """Write one standalone schema per kind; returns how many."""
    definitions = {name: _openapi_to_jsonschema(d) for name, d in
                   openapi["definitions"].items()}
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "oneOf": [{"type": "string"}, {"type": "number"}]}
    count = 0
    for name, raw in openapi["definitions"].items():
        for gvk in raw.get("x-kubernetes-group-version-kind", []):
            path = _schema_path(out, gvk["group"], gvk["version"], gvk["kind"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"$ref": f"#/definitions/{name}",
                                        "definitions": _closure(definitions, [name])}))
            count += 1
    # our CRD files, not what some API server happens to serve: they are what we ship
    for crd in crd_docs:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = _openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"$ref": f"#/definitions/{OBJECT_META}"}
            schema["definitions"] = _closure(definitions, [OBJECT_META])
            path = _schema_path(out, spec["group"], version["name"], spec["names"]["kind"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema))
            count += 1
    return count


@pytest.fixture(scope="module")
def schema_dir(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Schemas from the real API server's /openapi/v2 plus our CRDs."""
    openapi = json.loads(control_plane.get("/openapi/v2", timeout=60))
    crd_docs = [d for p in [*sorted((ROOT / "crds").glob("*.yaml")),
                            *binaries.monitoring_crds()]
                for d in docs(p.read_text()) if d["kind"] == "CustomResourceDefinition"]
    out = tmp_path_factory.mktemp("schemas")
    assert write_schemas(openapi, crd_docs, out) > 100
    return out


def kubeconform(schema_dir: Path, manifests: list[Obj], tmp_path: Path,
                *extra: str) -> tuple[int, Obj]:
    path = tmp_path / f"manifests-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    result = run([str(binaries.find("kubeconform")), "-strict", "-summary", "-output", "json",
                  "-schema-location", f"{schema_dir}/{SCHEMA_TEMPLATE}", *extra, str(path)],
                 check=False)
    report: Obj = json.loads(result.stdout)
    return result.returncode, report


def assert_valid(schema_dir: Path, manifests: list[Obj], tmp_path: Path, *extra: str) -> None:
    code, report = kubeconform(schema_dir, manifests, tmp_path, *extra)
    problems = [r for r in report.get("resources", []) if r.get("status") != "statusValid"]
    assert not problems, json.dumps(problems, indent=1)
    assert code == 0, json.dumps(report)
    summary = report["summary"]
    assert summary["invalid"] == summary["errors"] == 0
    assert summary["valid"] == len(manifests)  # nothing skipped for want of a schema


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_helm_template_validates_against_the_api_servers_schemas(
        helm_home: dict[str, str], schema_dir: Path, tmp_path: Path, values: Obj) -> None:
    manifests = render(helm_home, tmp_path, values, include_crds=True)
    assert {m["metadata"]["name"] for m in by_kind(manifests, "CustomResourceDefinition")} \
        == CRD_NAMES
    # the ServiceMonitor against prometheus-operator's own CRD (binaries.monitoring_crds)
    assert_valid(schema_dir, manifests, tmp_path)


@pytest.mark.parametrize("path", [MANIFESTS, OVERLAY, MANIFESTS / "samples"],
                         ids=["base", "single-namespace", "samples"])
def test_kustomize_output_validates_against_the_api_servers_schemas(
        schema_dir: Path, tmp_path: Path, path: Path) -> None:
    assert_valid(schema_dir, kustomize(path), tmp_path)


def test_kubeconform_schemas_do_reject_mistakes(schema_dir: Path, tmp_path: Path) -> None:
    """The check above is not vacuous: a typo'd field and a wrong type are caught."""
    base = kustomize(MANIFESTS)
    deployment = copy.deepcopy(one(base, "Deployment"))
    deployment["spec"]["replica"] = 1  # typo
    code, report = kubeconform(schema_dir, [deployment], tmp_path)
    assert code != 0
    assert "replica" in json.dumps(report)
    storage: Obj = {"apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
               "metadata": {"name": "x", "namespace": "app-1"},
               "spec": {"storageType": "s3", "bucket": "b", "s3": {"region": "r"},
                        "suspend": "yes"}}  # wrong type
    code, report = kubeconform(schema_dir, [storage], tmp_path)
    assert code != 0
    assert "/spec/suspend" in json.dumps(report)
    storage["spec"]["suspend"] = True
    code, report = kubeconform(schema_dir, [storage], tmp_path)
    assert code == 0, json.dumps(report)


# --- installing for real ---------------------------------------------------------------

def _list_types(kubeconfig: Path, namespaced: bool) -> str:
    names = kubectl(kubeconfig, "api-resources", "--verbs=list", "-o", "name",
                    f"--namespaced={'true' if namespaced else 'false'}").stdout.split()
    # Events come and go with whatever happens; they are nobody's installed object
    return ",".join(n for n in names if n not in ("events", "events.events.k8s.io"))


def snapshot(kubeconfig: Path, namespaces: list[str]) -> set[Key]:
    """Every object of the cluster-scoped kinds, and of every kind in ``namespaces``."""
    keys: set[Key] = set()
    items = json.loads(kubectl(kubeconfig, "get", _list_types(kubeconfig, False),
                               "-o", "json").stdout)["items"]
    # Namespaces are the test's own. The API server makes the others itself: an IPAddress
    # for each Service's cluster IP, an APIService for each group a CRD serves.
    keys |= {("", i["kind"], i["metadata"]["name"]) for i in items
             if i["kind"] not in ("Namespace", "IPAddress", "APIService")}
    ns_types = _list_types(kubeconfig, True)
    for ns in namespaces:
        items = json.loads(kubectl(kubeconfig, "get", ns_types, "-n", ns, "-o", "json",
                                   "--ignore-not-found").stdout or '{"items": []}')["items"]
        # the serviceaccount controller gives every namespace a "default" ServiceAccount
        keys |= {(ns, i["kind"], i["metadata"]["name"]) for i in items
                 if (i["kind"], i["metadata"]["name"]) != ("ServiceAccount", "default")}
    return keys


def test_helm_install_creates_exactly_the_expected_objects_and_uninstall_leaves_crds(
        cluster: ControlPlane, helm_home: dict[str, str], tmp_path: Path) -> None:
    kc = cluster.kubeconfig
    for ns in ("cs", "app-a", "app-b"):
        kubectl(kc, "create", "namespace", ns)
    watched = ["cs", "app-a", "app-b"]
    before = snapshot(kc, watched)
    assert not {k for k in before if k[1] == "CustomResourceDefinition"}

    # two releases in one cluster: cluster-wide with defaults, and namespaced with all on
    notes = helm(helm_home, "install", "wide", str(CHART), "-n", "cs", kubeconfig=kc).stdout
    # NOTES.txt says what to do next, with this release's names
    assert "kubectl -n cs rollout status deployment/wide-callstorage" in notes
    assert "It serves ExternalStorages and CallTypes in every namespace." in notes
    assert "kubectl apply --server-side --force-conflicts -f crds/" in notes
    assert "service wide-callstorage-metrics" in notes
    narrow_values = write_values(tmp_path, INSTALL_VALUES)
    notes = helm(helm_home, "install", "narrow", str(CHART), "-n", "cs", "-f",
                 str(narrow_values), kubeconfig=kc).stdout
    assert "It serves only these namespaces: app-a,app-b,cs" in notes
    assert "record to the platform storage\n   cs/platform-default." in notes
    created = snapshot(kc, watched) - before
    expected = {
        ("", "CustomResourceDefinition", "externalstorages.callstorage.io"),
        ("", "CustomResourceDefinition", "calltypes.callstorage.io"),
        ("", "ClusterRole", "wide-callstorage"),
        ("", "ClusterRoleBinding", "wide-callstorage"),
        ("cs", "ServiceAccount", "wide-callstorage"),
        ("cs", "Deployment", "wide-callstorage"),
        ("cs", "PodDisruptionBudget", "wide-callstorage"),
        ("cs", "Role", "wide-callstorage-leader-election"),
        ("cs", "RoleBinding", "wide-callstorage-leader-election"),
        ("cs", "Service", "wide-callstorage-metrics"),
        ("cs", "Secret", "sh.helm.release.v1.wide.v1"),  # Helm's own release record
        ("cs", "ServiceAccount", "narrow-callstorage"),
        ("cs", "Deployment", "narrow-callstorage"),
        ("cs", "PodDisruptionBudget", "narrow-callstorage"),
        ("cs", "Role", "narrow-callstorage-leader-election"),
        ("cs", "RoleBinding", "narrow-callstorage-leader-election"),
        ("cs", "Service", "narrow-callstorage-metrics"),
        ("cs", "Secret", "sh.helm.release.v1.narrow.v1"),
        ("cs", "Secret", "platform-default-credentials"),
        ("cs", "ExternalStorage", "platform-default"),
        ("cs", "Role", "narrow-callstorage"),
        ("cs", "RoleBinding", "narrow-callstorage"),
        ("app-a", "Role", "narrow-callstorage"),
        ("app-a", "RoleBinding", "narrow-callstorage"),
        ("app-b", "Role", "narrow-callstorage"),
        ("app-b", "RoleBinding", "narrow-callstorage"),
        ("app-a", "CallType", "default"),
        ("app-a", "CallType", "livestream"),
        ("app-a", "CallType", "audio-room"),
        ("app-a", "CallType", "development"),
    }
    assert created == expected, (
        f"unexpected: {sorted(created - expected)}; missing: {sorted(expected - created)}")

    # Helm does not own the CRDs it installed from crds/: nothing will delete them
    crd = json.loads(kubectl(kc, "get", "crd", "externalstorages.callstorage.io",
                             "-o", "json").stdout)
    assert "app.kubernetes.io/managed-by" not in crd["metadata"].get("labels", {})

    helm(helm_home, "uninstall", "wide", "-n", "cs", "--wait", kubeconfig=kc)
    helm(helm_home, "uninstall", "narrow", "-n", "cs", "--wait", kubeconfig=kc)
    left = snapshot(kc, watched) - before
    assert left == {k for k in expected if k[1] == "CustomResourceDefinition"}


def test_kubectl_apply_k_creates_exactly_the_expected_objects(
        cluster: ControlPlane) -> None:
    kc = cluster.kubeconfig
    before = snapshot(kc, ["callstorage-system"])
    kubectl(kc, "apply", "-k", str(MANIFESTS))
    created = snapshot(kc, ["callstorage-system"]) - before
    assert created == {
        ("", "CustomResourceDefinition", "externalstorages.callstorage.io"),
        ("", "CustomResourceDefinition", "calltypes.callstorage.io"),
        ("", "ClusterRole", "callstorage-operator"),
        ("", "ClusterRoleBinding", "callstorage-operator"),
        ("callstorage-system", "ServiceAccount", "callstorage-operator"),
        ("callstorage-system", "Deployment", "callstorage-operator"),
        ("callstorage-system", "PodDisruptionBudget", "callstorage-operator"),
        ("callstorage-system", "Role", "callstorage-operator-leader-election"),
        ("callstorage-system", "RoleBinding", "callstorage-operator-leader-election"),
        ("callstorage-system", "Service", "callstorage-operator-metrics"),
    }
    ns = json.loads(kubectl(kc, "get", "namespace", "callstorage-system", "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # applying again changes nothing. kubectl always sends a PodDisruptionBudget's selector
    # (its patch strategy is "replace") and so reports it "configured": its generation
    # shows that nothing changed.
    again = kubectl(kc, "apply", "-k", str(MANIFESTS)).stdout
    assert all(line.endswith("unchanged") or line.startswith("poddisruptionbudget")
               for line in again.splitlines()), again
    pdb = json.loads(kubectl(kc, "get", "pdb", "callstorage-operator", "-n",
                             "callstorage-system", "-o", "json").stdout)
    assert pdb["metadata"]["generation"] == 1


def test_single_namespace_overlay_installs_nothing_cluster_scoped_but_crds(
        cluster: ControlPlane) -> None:
    kc = cluster.kubeconfig
    before = snapshot(kc, ["callstorage-system"])
    kubectl(kc, "apply", "-k", str(OVERLAY))
    created = snapshot(kc, ["callstorage-system"]) - before
    assert created == {
        ("", "CustomResourceDefinition", "externalstorages.callstorage.io"),
        ("", "CustomResourceDefinition", "calltypes.callstorage.io"),
        ("callstorage-system", "ServiceAccount", "callstorage-operator"),
        ("callstorage-system", "Role", "callstorage-operator"),
        ("callstorage-system", "RoleBinding", "callstorage-operator"),
        ("callstorage-system", "Role", "callstorage-operator-leader-election"),
        ("callstorage-system", "RoleBinding", "callstorage-operator-leader-election"),
        ("callstorage-system", "Deployment", "callstorage-operator"),
        ("callstorage-system", "PodDisruptionBudget", "callstorage-operator"),
        ("callstorage-system", "Service", "callstorage-operator-metrics"),
    }


# --- the values platform engineers expect (issue 17) -------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4
SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
          "whenUnsatisfiable": "ScheduleAnyway",
          "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "callstorage"}}}
NEW_VALUES: dict[str, Obj] = {
    "image-digest": {"image": {"repository": "registry.example.test/callstorage",
                               "digest": DIGEST}},
    "extra-volumes": {"extraVolumes": [{"name": "corp-ca",
                                        "configMap": {"name": "corp-ca", "optional": True}}],
                      "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca",
                                             "readOnly": True}]},
    "env-from": {"envFrom": [{"configMapRef": {"name": "proxy", "optional": True}},
                             {"secretRef": {"name": "proxy-auth", "optional": True}}]},
    "topology-spread": {"topologySpreadConstraints": [SPREAD]},
    "deployment-annotations": {"deploymentAnnotations": {"reloader.example.test/auto": "true"}},
    "prometheus-rule": {"metrics": {"prometheusRule": {
        "enabled": True, "labels": {"release": "prom"}, "storageNotReadyFor": "30m"}}},
    "grafana-dashboard": {"metrics": {"grafanaDashboard": {
        "enabled": True, "annotations": {"grafana_folder": "callstorage"}}}},
}


def _pod(objs: list[Obj]) -> Obj:
    pod: Obj = one(objs, "Deployment")["spec"]["template"]["spec"]
    return pod


def _check_new_value(value_id: str, objs: list[Obj], release: str) -> None:
    """What each new value must change in what is rendered, or read back from the cluster."""
    deployment = one(objs, "Deployment")
    pod = _pod(objs)
    (container,) = pod["containers"]
    if value_id == "image-digest":
        assert container["image"] == f"registry.example.test/callstorage@{DIGEST}"
    elif value_id == "extra-volumes":
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(volumes) == {"tmp", "corp-ca"}
        # the API server adds defaultMode
        assert volumes["corp-ca"]["configMap"].items() >= {"name": "corp-ca",
                                                           "optional": True}.items()
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True} \
            in container["volumeMounts"]
    elif value_id == "env-from":
        assert container["envFrom"] == NEW_VALUES["env-from"]["envFrom"]
    elif value_id == "topology-spread":
        assert pod["topologySpreadConstraints"] == [SPREAD]
    elif value_id == "deployment-annotations":
        assert deployment["metadata"]["annotations"]["reloader.example.test/auto"] == "true"
        assert "reloader.example.test/auto" not in \
            (deployment["spec"]["template"]["metadata"].get("annotations") or {})
    elif value_id == "prometheus-rule":
        rule = one(objs, "PrometheusRule")
        assert rule["metadata"]["labels"]["release"] == "prom"
        alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
        assert set(alerts) == {"CallStorageNotReady", "CallStorageValidationsFailing",
                               "CallStorageReconcileErrors", "CallStorageOperatorDown"}
        assert alerts["CallStorageNotReady"]["for"] == "30m"
        assert f'job="{release}-callstorage-metrics"' in alerts["CallStorageOperatorDown"][
            "expr"]
    elif value_id == "grafana-dashboard":
        cm = one(objs, "ConfigMap")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "callstorage"
        assert json.loads(cm["data"]["callstorage.json"]) == json.loads(
            (CHART / "dashboards" / "callstorage.json").read_text())
    else:
        raise AssertionError(f"no check for {value_id}")


def test_new_values_are_off_by_default(helm_home: dict[str, str], tmp_path: Path) -> None:
    objs = render(helm_home, tmp_path)
    assert not by_kind(objs, "PrometheusRule")
    assert not by_kind(objs, "ConfigMap")
    deployment = one(objs, "Deployment")
    assert "annotations" not in deployment["metadata"]
    pod = _pod(objs)
    assert "topologySpreadConstraints" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "envFrom" not in pod["containers"][0]
    assert pod["containers"][0]["image"] == "callstorage/callstorage:0.1.0"


@pytest.mark.parametrize("value_id", list(NEW_VALUES))
def test_new_values_render_lint_and_validate(helm_home: dict[str, str], schema_dir: Path,
                                             tmp_path: Path, value_id: str) -> None:
    values = NEW_VALUES[value_id]
    result = helm(helm_home, "lint", "--strict", str(CHART), f"--kube-version={KUBE_VERSION}",
                  "-f", str(write_values(tmp_path, values)))
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout
    objs = render(helm_home, tmp_path, values, release="rel")
    _check_new_value(value_id, objs, "rel")
    assert_valid(schema_dir, objs, tmp_path)


@pytest.mark.parametrize(("values", "message"), [
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"metrics": {"prometheusRule": {"enabled": True, "storageNotReadyFor": "soon"}}},
     "storageNotReadyFor"),
    ({"extraVolumeMounts": [{"name": "x"}]}, "mountPath"),
    ({"metrics": {"grafanaDashboard": {"namespace": "Not_A_Namespace"}}}, "namespace"),
], ids=["digest", "duration", "mount-path", "dashboard-namespace"])
def test_new_values_reject_mistakes(helm_home: dict[str, str], tmp_path: Path, values: Obj,
                                    message: str) -> None:
    result = helm(helm_home, "template", "x", str(CHART), "-f",
                  str(write_values(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_helm_install_with_each_new_value(cluster: ControlPlane,
                                          helm_home: dict[str, str], tmp_path: Path) -> None:
    """Each set installs on a real API server (prometheus-operator's CRDs for the rule),
    and what the API server stored has the value applied."""
    kc = cluster.kubeconfig
    for crd in binaries.monitoring_crds():
        kubectl(kc, "apply", "--server-side", "-f", str(crd))
    kubectl(kc, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/prometheusrules.monitoring.coreos.com")
    for i, (value_id, values) in enumerate(NEW_VALUES.items()):
        ns, release = f"nv-{i}", f"nv{i}"
        kubectl(kc, "create", "namespace", ns)
        helm(helm_home, "install", release, str(CHART), "-n", ns,
             "-f", str(write_values(tmp_path, values)), kubeconfig=kc)
        stored = [json.loads(kubectl(kc, "get", "-n", ns, kind, "-o", "json").stdout)["items"]
                  for kind in ("deployments", "prometheusrules", "configmaps")]
        objs = [{**o, "kind": kind} for kind, items in
                zip(("Deployment", "PrometheusRule", "ConfigMap"), stored, strict=True)
                for o in items if o["metadata"]["name"] != "kube-root-ca.crt"]
        _check_new_value(value_id, objs, release)


# --- CRDs: kept, and upgraded the way NOTES.txt says --------------------------------------

def _crds_of(objs: list[Obj]) -> list[Obj]:
    return by_kind(objs, "CustomResourceDefinition")


def assert_kept(crd: Obj) -> None:
    annotations = crd["metadata"].get("annotations") or {}
    name = crd["metadata"]["name"]
    assert annotations.get("helm.sh/resource-policy") == "keep", name
    options = set(annotations.get("argocd.argoproj.io/sync-options", "").split(","))
    assert {"Prune=false", "Delete=false"} <= options, name


def test_crds_are_kept_when_a_release_or_an_application_goes(
        helm_home: dict[str, str], tmp_path: Path) -> None:
    """What Argo CD applies (helm template with crds/, or the kustomize base) tells Argo CD
    never to prune or delete the CRDs, and Helm to keep them."""
    rendered = _crds_of(render(helm_home, tmp_path, include_crds=True))
    kustomized = _crds_of(kustomize(MANIFESTS)) + _crds_of(kustomize(ROOT / "crds"))
    assert len(rendered) == 2
    assert len(kustomized) == 4
    for crd in rendered + kustomized:
        assert_kept(crd)


def _notes_command(notes: str) -> list[str]:
    """The CRD upgrade command NOTES.txt prints, as argv (its trailing comment dropped)."""
    (line,) = [line for line in notes.splitlines() if "kubectl apply" in line]
    return line.split("#", 1)[0].split()


def _docs_command() -> list[str]:
    """docs/install.md's CRD upgrade command, run from a checkout."""
    text = (ROOT / "docs" / "install.md").read_text()
    (line,) = [m for m in re.findall(r"^kubectl apply --server-side.*$", text, re.M)]
    return line.split("#", 1)[0].split()


def _change_crd(crds: Path, column: str) -> None:
    """The ExternalStorage CRD of a new version: it gains a printer column."""
    crd_path = crds / "externalstorages.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].insert(
        3, {"name": column, "type": "boolean", "jsonPath": ".spec.suspend",
            "description": "Whether validation is suspended."})
    crd_path.write_text(yaml.safe_dump(crd, sort_keys=False))


def _columns(kc: Path) -> list[str]:
    crd = json.loads(kubectl(kc, "get", "crd", "externalstorages.callstorage.io",
                             "-o", "json").stdout)
    assert_kept(crd)  # what the API server stored
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_crd_upgrade_as_notes_and_docs_say_works_after_a_crd_change(
        cluster: ControlPlane, helm_home: dict[str, str], tmp_path: Path) -> None:
    """helm install, then a chart version with a changed CRD: NOTES.txt's command (in the
    unpacked chart) and then docs/install.md's apply it over the fields Helm's install
    owns, and helm upgrade follows."""
    kc = cluster.kubeconfig
    kubectl(kc, "create", "namespace", "cs")
    notes = helm(helm_home, "install", "cs", str(CHART), "-n", "cs", kubeconfig=kc).stdout
    assert "Suspended" not in _columns(kc)

    unpacked = tmp_path / "v2" / "callstorage"  # as helm pull --untar leaves it
    shutil.copytree(CHART, unpacked)
    meta = unpacked / "Chart.yaml"
    meta.write_text(re.sub(r"(?m)^version: .*$", "version: 0.2.0", meta.read_text()))
    _change_crd(unpacked / "crds", "Suspended")
    argv = _notes_command(notes)
    assert argv[:3] == ["kubectl", "apply", "--server-side"]
    result = run([*argv, f"--kubeconfig={kc}"], check=False, cwd=unpacked)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}"
    assert "Suspended" in _columns(kc)
    helm(helm_home, "upgrade", "cs", str(unpacked), "-n", "cs", "--reuse-values",
         kubeconfig=kc)

    # the next version, upgraded from a checkout as docs/install.md says
    checkout = tmp_path / "v3"
    shutil.copytree(ROOT / "crds", checkout / "crds")
    _change_crd(checkout / "crds", "Paused")
    argv = _docs_command()
    result = run([*argv, f"--kubeconfig={kc}"], check=False, cwd=checkout)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}"
    columns = _columns(kc)
    assert "Paused" in columns
    assert "Suspended" not in columns  # the list is the new version's, whole
