"""The Argo CD health checks and the "check" action of docs/argocd-health/, run twice:

- by Argo CD's own Lua runner (``util/lua`` of Argo CD, in the tiny Go wrapper
  ``argocd-lua`` that hack/testbed/binaries.py builds): gopher-lua with Argo's library set
  (base, table, package and a safe ``os``; no ``string`` or ``math``), integers as the
  cluster gives them, and Argo's checks of the returned health;
- by lupa's Lua 5.1 with the same globals removed, for a quick second opinion.

The cases are the ``health_test.yaml`` and ``action_test.yaml`` files in Argo CD's
``resource_customizations`` layout, the files Argo CD's own tests would walk;
``health_test.yaml`` and its testdata are generated (hack/argocd_health.py) from the
shared table tests/cases/readiness.py, whose rule is ``callstorage.api.readiness``, plus
the rows of tests/cases/argocd_health.py.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from paths import ROOT
from testbed import binaries

lua51 = pytest.importorskip("lupa.lua51")

DOCS = ROOT / "docs" / "argocd-health"
GROUP_DIR = DOCS / "resource_customizations" / "callstorage.io"
CHECK_ANNOTATION = "callstorage.io/check-requested-at"
PLACEHOLDER = "0001-01-01T00:00:00Z"

sys.path.insert(0, str(ROOT / "hack"))
import argocd_health  # noqa: E402 - hack/ script, not a package

Obj = dict[str, Any]


# --- the two runners ------------------------------------------------------------------

def _to_py(value: Any) -> Any:
    """A Lua table as JSON would encode it: 1..n keys make a list."""
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and \
            sorted(items) == list(range(1, len(items) + 1)):
        return [_to_py(items[i]) for i in range(1, len(items) + 1)]
    return {k: _to_py(v) for k, v in items.items()}


class Lupa:
    """Lua 5.1 with only what Argo CD gives scripts from argocd-cm."""

    name = "lupa"

    def _run(self, script: str, obj: Obj) -> Any:
        lua = lua51.LuaRuntime(unpack_returned_tuples=False)
        lua.execute("""
            local time, date = os.time, os.date
            local safe_os = {time = time, date = date}
            os = safe_os
            package.loaded.os = safe_os
            string, math, io, debug, coroutine = nil, nil, nil, nil, nil
        """)
        lua.globals().obj = lua.table_from(obj, recursive=True)
        return _to_py(lua.execute(script))

    def health(self, script: str, obj: Obj) -> Obj:
        result = self._run(script, obj)
        return {"status": result["status"], "message": result.get("message", "")}

    def discovery(self, script: str, obj: Obj) -> list[Obj]:
        return [{"name": name, **spec} for name, spec in self._run(script, obj).items()]

    def action(self, script: str, obj: Obj) -> Obj:
        result: Obj = self._run(script, obj)
        return result


class ArgoCD:
    """Argo CD's util/lua behind a JSON-lines process (one per test module)."""

    name = "argocd"

    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(binaries.find("argocd-lua"))], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _call(self, **request: Any) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        response = json.loads(self.proc.stdout.readline())
        if "error" in response:
            raise AssertionError(f"Argo CD's Lua runner: {response['error']}")
        return response["result"]

    def health(self, script: str, obj: Obj) -> Obj:
        result = self._call(op="health", script=script, obj=obj)
        return {"status": result["status"], "message": result.get("message", "")}

    def discovery(self, script: str, obj: Obj) -> list[Obj]:
        found: list[Obj] = self._call(op="discovery", scripts=[script], obj=obj)
        return found

    def action(self, script: str, obj: Obj) -> Obj:
        (impacted,) = self._call(op="action", script=script, obj=obj)
        assert impacted["operation"] == "patch"
        resource: Obj = impacted["resource"]
        return resource

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def argocd() -> Iterator[ArgoCD]:
    runner = ArgoCD()
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(params=["argocd", "lupa"])
def runner(request: pytest.FixtureRequest) -> Lupa | ArgoCD:
    if request.param == "lupa":
        return Lupa()
    found: ArgoCD = request.getfixturevalue("argocd")
    return found


# --- health ---------------------------------------------------------------------------

def _health_tests() -> list[tuple[str, Obj]]:
    return [(kind, test) for kind in argocd_health.KINDS
            for test in yaml.safe_load((GROUP_DIR / kind / "health_test.yaml")
                                       .read_text())["tests"]]


HEALTH_TESTS = _health_tests()


def _load(path: Path) -> Obj:
    obj: Obj = yaml.safe_load(path.read_text())
    return obj


@pytest.mark.parametrize(("kind", "test"), HEALTH_TESTS,
                         ids=[Path(t["inputPath"]).stem for _, t in HEALTH_TESTS])
def test_health(runner: Lupa | ArgoCD, kind: str, test: Obj) -> None:
    directory = GROUP_DIR / kind
    got = runner.health((directory / "health.lua").read_text(),
                        _load(directory / test["inputPath"]))
    assert got == test["healthStatus"]


def test_every_health_status_is_covered() -> None:
    """The table is not vacuous: each kind meets each status it can have."""
    seen = {(kind, t["healthStatus"]["status"]) for kind, t in HEALTH_TESTS}
    for status in ("Progressing", "Degraded", "Healthy", "Suspended"):
        assert ("ExternalStorage", status) in seen
    for status in ("Progressing", "Degraded", "Healthy"):
        assert ("CallType", status) in seen


def test_extra_rows_follow_the_one_readiness_rule() -> None:
    """The Argo-only rows are not a second rule: the Python readiness agrees with them."""
    from callstorage.api.readiness import readiness
    from cases.argocd_health import CASES

    for case in CASES:
        assert readiness(case.object).health == case.health, case.id


def test_generated_files_match_the_case_table_and_scripts() -> None:
    # health_test.yaml, testdata/ and argocd-cm.yaml are written by hack/argocd_health.py
    assert argocd_health.differences() == [], "run: python hack/argocd_health.py"


def test_runners_give_scripts_argo_cds_sandbox(runner: Lupa | ArgoCD) -> None:
    """No string library in argocd-cm scripts: a health check must not rely on one."""
    with pytest.raises(Exception, match="string"):
        runner.health('return {status = string.upper("healthy")}', {"kind": "X"})


def test_argocd_runner_applies_argo_cds_own_checks(argocd: ArgoCD) -> None:
    """What lupa cannot tell: Argo CD turns a status it does not know into Unknown."""
    assert argocd.health('return {status = "Fine"}', {"kind": "X"}) == {
        "status": "Unknown", "message": "Lua returned an invalid health status"}


# --- the "check" action ---------------------------------------------------------------

ACTIONS = GROUP_DIR / "ExternalStorage" / "actions"
ACTION_TESTS = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())


@pytest.mark.parametrize("test", ACTION_TESTS["discoveryTests"],
                         ids=lambda t: Path(t["inputPath"]).stem)
def test_check_action_is_discovered(runner: Lupa | ArgoCD, test: Obj) -> None:
    found = runner.discovery((ACTIONS / "discovery.lua").read_text(),
                             _load(ACTIONS / test["inputPath"]))
    want = [{"disabled": False, **r} for r in test["result"]]
    assert sorted(({"disabled": False, **r} for r in found), key=lambda r: r["name"]) \
        == sorted(want, key=lambda r: r["name"])


def _normalised(obj: Obj, now: dt.datetime) -> Obj:
    """The annotation must be the current UTC time (RFC 3339, seconds); then a constant."""
    value = obj["metadata"]["annotations"][CHECK_ANNOTATION]
    stamp = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs((stamp - now).total_seconds()) < 120, value
    obj["metadata"]["annotations"][CHECK_ANNOTATION] = PLACEHOLDER
    return obj


@pytest.mark.parametrize("test", ACTION_TESTS["actionTests"],
                         ids=lambda t: Path(t["inputPath"]).stem)
def test_check_action_sets_the_check_annotation(runner: Lupa | ArgoCD, test: Obj) -> None:
    script = (ACTIONS / test["action"] / "action.lua").read_text()
    before = _load(ACTIONS / test["inputPath"])
    old = (before["metadata"].get("annotations") or {}).get(CHECK_ANNOTATION)
    after = runner.action(script, before)
    # a new value: the operator answers only values it has not answered yet
    assert after["metadata"]["annotations"][CHECK_ANNOTATION] != old
    assert _normalised(after, dt.datetime.now(dt.UTC)) == \
        _load(ACTIONS / test["expectedOutputPath"])


def test_check_action_value_is_one_the_operator_accepts() -> None:
    """The operator compares the annotation with status.lastCheck.requestedAt as an
    instant: the action's value parses as one."""
    from callstorage.client import _same_instant

    value = Lupa().action((ACTIONS / "check" / "action.lua").read_text(),
                          _load(ACTIONS / "testdata" / "storage.yaml"))["metadata"][
        "annotations"][CHECK_ANNOTATION]
    assert _same_instant(value, value.replace("Z", ".000000Z"))


# --- shipping -------------------------------------------------------------------------

def test_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    cm = yaml.safe_load((DOCS / "argocd-cm.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    for kind in argocd_health.KINDS:
        key = f"resource.customizations.health.callstorage.io_{kind}"
        assert cm["data"][key] == (GROUP_DIR / kind / "health.lua").read_text()
    actions = yaml.safe_load(cm["data"]["resource.customizations.actions.callstorage.io_"
                                        "ExternalStorage"])
    assert actions["discovery.lua"] == (ACTIONS / "discovery.lua").read_text()
    assert actions["definitions"] == [
        {"name": "check", "action.lua": (ACTIONS / "check" / "action.lua").read_text()}]
