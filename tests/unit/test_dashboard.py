"""The chart's Grafana dashboard: it loads, it is well formed, and every query names only
series the operator exports (``callstorage.metrics.exported_series``, read from its registry).

promtool parses the same queries in tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

from callstorage import metrics
from paths import ROOT

DASHBOARD = ROOT / "helm" / "callstorage" / "dashboards" / "callstorage.json"
# a selector: a metric name directly followed by its label matchers
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
# Grafana's variable query label_values(<series or selector>, <label>)
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
exported_series = metrics.exported_series


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the panels and the template variables."""
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["query"]["query"])
    return found


def series_of(query: str) -> set[str]:
    return set(SELECTOR.findall(query)) | set(LABEL_VALUES.findall(query))


def test_dashboard_loads_and_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"] == "callstorage"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) > 5
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", json.dumps(queries(dashboard))))
    assert used - {"__rate_interval"} <= variables


def test_dashboard_queries_only_series_the_operator_exports() -> None:
    exported = exported_series()
    assert {"callstorage_storage_ready", "callstorage_validations_total",
            "callstorage_validation_duration_seconds_bucket"} <= exported
    for query in queries(json.loads(DASHBOARD.read_text())):
        names = series_of(query)
        assert names, f"no series in {query!r}"
        assert names <= exported, f"{query!r} names {sorted(names - exported)}"


def test_every_operator_series_is_on_the_dashboard() -> None:
    names = {n for q in queries(json.loads(DASHBOARD.read_text()))
             for n in series_of(q)}
    ours = {n for n in exported_series() if n.startswith("callstorage_")
            and not n.endswith(("_sum", "_count"))}
    assert ours <= names, f"not shown: {sorted(ours - names)}"
