"""The chart's PrometheusRule and Grafana dashboard, checked by Prometheus's own promtool
(built from its Go module by hack/testbed/binaries.py).

- ``promtool check rules`` accepts the rendered rule group (PromQL, templates, durations);
- ``promtool test rules`` shows each alert firing on series shaped like the operator's
  (and not firing on healthy ones);
- every dashboard query parses as PromQL;
- rules name only series the operator exports (``callstorage.metrics.exported_series``).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callstorage import metrics
from kubetools import KUBE_VERSION, helm, helm_env, run
from paths import CHART
from testbed import binaries

DASHBOARD = CHART / "dashboards" / "callstorage.json"
RELEASE, NAMESPACE = "cs", "callstorage-system"
JOB = "cs-callstorage-metrics"  # prometheus-operator names the job after the Service
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rule(tmp_path_factory: pytest.TempPathFactory) -> Obj:
    """The PrometheusRule the chart renders with prometheusRule.enabled."""
    out = helm(helm_env(tmp_path_factory.mktemp("helm-home")), "template", RELEASE, str(CHART),
               "-n", NAMESPACE, f"--kube-version={KUBE_VERSION}",
               "--set", "metrics.prometheusRule.enabled=true").stdout
    (found,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule"]
    return found


def promtool(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(binaries.find("promtool")), *args], cwd=cwd, check=check)


def write_rules(path: Path, groups: list[Obj]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_prometheus_rule_passes_promtool_check(rule: Obj, tmp_path: Path) -> None:
    write_rules(tmp_path / "rules.yaml", rule["spec"]["groups"])
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 4 rules found" in result.stdout + result.stderr


def test_promtool_check_does_reject_a_broken_rule(rule: Obj, tmp_path: Path) -> None:
    groups = copy.deepcopy(rule["spec"]["groups"])
    groups[0]["rules"][0]["expr"] = "max by (namespace (callstorage_storage_ready"
    write_rules(tmp_path / "rules.yaml", groups)
    assert promtool("check", "rules", "rules.yaml", cwd=tmp_path, check=False).returncode != 0


def test_rules_name_only_series_the_operator_exports(rule: Obj) -> None:
    exported = metrics.exported_series() | {"up"}  # up: Prometheus's own, per target
    for r in rule["spec"]["groups"][0]["rules"]:
        names = set(SELECTOR.findall(r["expr"]))
        assert names, r["alert"]
        assert names <= exported, (r["alert"], sorted(names - exported))
        assert f'job="{JOB}"' in r["expr"], r["alert"]  # this release's operator only


def _series(metric: str, values: str, /, **labels: str) -> Obj:
    matchers = ", ".join(f'{k}="{v}"' for k, v in {"job": JOB, **labels}.items())
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def _alert(at: str, name: str, *labels: dict[str, str]) -> Obj:
    return {"eval_time": at, "alertname": name,
            "exp_alerts": [{"exp_labels": dict(lbl)} for lbl in labels]}


def test_alerts_fire_on_the_operators_series(rule: Obj, tmp_path: Path) -> None:
    # annotations are free text (checked by `check rules` above); the test is about when
    # each alert fires and with which labels
    groups = copy.deepcopy(rule["spec"]["groups"])
    for r in groups[0]["rules"]:
        r.pop("annotations")
    write_rules(tmp_path / "rules.yaml", groups)
    up = _series("up", "1x60", namespace=NAMESPACE)
    tests = [
        {"interval": "1m", "input_series": [
            _series("callstorage_storage_ready", "0x40", namespace="app-1", name="broken"),
            _series("callstorage_storage_ready", "1x40", namespace="app-1", name="fine"),
            up],
         "alert_rule_test": [
             _alert("10m", "CallStorageNotReady"),  # not yet: storageNotReadyFor is 15m
             _alert("16m", "CallStorageNotReady",
                    {"severity": "warning", "namespace": "app-1", "name": "broken"}),
             _alert("16m", "CallStorageOperatorDown")]},
        {"interval": "1m", "input_series": [
            _series("callstorage_validations_total", "0+10x60", storage_type="s3",
                    result="failure", reason="AccessDenied"),
            _series("callstorage_validations_total", "0+2x60", storage_type="s3",
                    result="success", reason="Validated"),
            _series("callstorage_validations_total", "0+10x60", storage_type="gcs",
                    result="success", reason="Validated"),
            up],
         "alert_rule_test": [
             _alert("10m", "CallStorageValidationsFailing"),
             _alert("45m", "CallStorageValidationsFailing",
                    {"severity": "warning", "storage_type": "s3"})]},
        {"interval": "1m", "input_series": [
            _series("callstorage_reconcile_errors_total", "0+1x40", kind="ExternalStorage"),
            _series("callstorage_reconcile_errors_total", "0x40", kind="CallType"),
            up],
         "alert_rule_test": [
             _alert("35m", "CallStorageReconcileErrors",
                    {"severity": "warning", "kind": "ExternalStorage"})]},
        {"interval": "1m", "input_series": [_series("up", "1x5 0x20", namespace=NAMESPACE)],
         "alert_rule_test": [
             _alert("5m", "CallStorageOperatorDown"),
             _alert("12m", "CallStorageOperatorDown", {"severity": "critical"})]},
        {"interval": "1m", "input_series": [],  # never scraped at all
         "alert_rule_test": [
             _alert("6m", "CallStorageOperatorDown", {"severity": "critical"})]},
    ]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check is not vacuous: a wrong expectation fails
    tests[0]["alert_rule_test"][0] = _alert("10m", "CallStorageNotReady", {"name": "fine"})
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}))
    assert promtool("test", "rules", "tests.yaml", cwd=tmp_path, check=False).returncode == 1


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    # Grafana's variables, replaced as Grafana would before the query reaches Prometheus
    variables = {"$__rate_interval": "5m", "$job": ".+", "$namespace": ".+"}
    rules = []
    for i, target in enumerate(t for p in dashboard["panels"] for t in p["targets"]):
        expr = target["expr"]
        for var, value in variables.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": rules}])
    result = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr
