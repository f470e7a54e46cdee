"""Faults of the control plane, the operator and the endpoints, on a real test bed.

Each test breaks one part on purpose (kills and restarts the API server behind the
operator's back, SIGKILLs the operator mid-check, overwrites status, deletes a namespace,
hangs an endpoint) and asserts the state the operator converges to, how long that takes
against a stated bound, and what the operator asked the API server meanwhile (the audit
log attributes requests to the operator's own client certificate).

These tests own a control plane of their own: killing the shared one would break the
rest of the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.api import CHECK_ANNOTATION, IN_USE_FINALIZER
from conftest import RunningOperator, launch_operator
from storages import CT, EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for
from testbed.s3 import S3Server
from testbed.tcpproxy import KillableProxy

pytestmark = [pytest.mark.faults, pytest.mark.integration]

OPERATOR_USER = "callstorage-operator"


@pytest.fixture
def api_proxy(cp: ControlPlane) -> Iterator[KillableProxy]:
    """The operator's road to the API server, which a test can cut."""
    with KillableProxy(cp.port) as proxy:
        yield proxy


class Operators:
    """Operators started by one test, all stopped at its end."""

    def __init__(self, cp: ControlPlane, kubeconfig: Path, tmp: Path) -> None:
        self.cp, self.kubeconfig, self.tmp = cp, kubeconfig, tmp
        self.running: list[RunningOperator] = []

    def start(self, **env: str) -> RunningOperator:
        """Start an operator and wait until its watches stream: before that it works
        from its own start-up LIST, and a fault would meet kopf still starting."""
        name = f"operator-{len(self.running)}"
        since = time.time()
        op = launch_operator(self.kubeconfig, self.tmp / name, env, name)
        self.running.append(op)
        wait_for(lambda: watching(self.cp, since) >= {EXS, CT, "secrets"}, 30,
                 "the operator's watches to stream", alive=op.server)
        return op

    def stop(self) -> None:
        for op in self.running:
            op.stop()


@pytest.fixture
def operators(cp: ControlPlane, api_proxy: KillableProxy, tmp_path: Path) -> \
        Iterator[Operators]:
    kubeconfig = cp.user_kubeconfig(OPERATOR_USER,
                                    server=f"https://127.0.0.1:{api_proxy.port}")
    ops = Operators(cp, kubeconfig, tmp_path)
    yield ops
    ops.stop()


def operator_requests(cp: ControlPlane, since: float, until: float | None = None,
                      namespace: str | None = None) -> Counter[str]:
    """The operator's requests in [since, until], as "verb resource[/sub] code" counts;
    with ``namespace``, only those in it or cluster-wide (an operator watching every
    namespace also sees the teardown of an earlier test's)."""
    assert cp.audit_log is not None
    counts: Counter[str] = Counter()
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or \
                event.get("user", {}).get("username") != OPERATOR_USER:
            continue
        stamp = dt.datetime.fromisoformat(
            event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        if stamp < since or (until is not None and stamp > until):
            continue
        ref = event.get("objectRef") or {}
        if namespace is not None and ref.get("namespace") not in (None, "", namespace):
            continue
        resource = ref.get("resource", "?") + (f"/{ref['subresource']}"
                                               if ref.get("subresource") else "")
        dry = " dry-run" if "dryRun=" in event.get("requestURI", "") else ""
        # the resync's own LIST of one namespace's Secrets, not kopf's cluster-wide relist
        scope = " in-namespace" if event.get("verb") == "list" and ref.get("namespace") else ""
        code = (event.get("responseStatus") or {}).get("code")
        counts[f"{event.get('verb')} {resource}{scope}{dry} {code}"] += 1
    return counts


def slowest_write(cp: ControlPlane, since: float, until: float, namespace: str) -> float:
    """Seconds the API server took for the slowest operator write received in [since,
    until] in ``namespace`` (0 if none)."""
    assert cp.audit_log is not None
    slowest = 0.0
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or \
                event.get("user", {}).get("username") != OPERATOR_USER or \
                event.get("verb") not in ("patch", "update", "create") or \
                (event.get("objectRef") or {}).get("namespace") != namespace:
            continue
        received, done = (dt.datetime.fromisoformat(event[k].replace("Z", "+00:00")).timestamp()
                          for k in ("requestReceivedTimestamp", "stageTimestamp"))
        if since <= received <= until:
            slowest = max(slowest, done - received)
    return slowest


def watching(cp: ControlPlane, since: float) -> set[str]:
    """Resources the operator has opened a watch on since ``since`` (audit stage
    ResponseStarted)."""
    assert cp.audit_log is not None
    found: set[str] = set()
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseStarted" or event.get("verb") != "watch" or \
                event.get("user", {}).get("username") != OPERATOR_USER:
            continue
        stamp = dt.datetime.fromisoformat(
            event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        if stamp >= since:
            found.add((event.get("objectRef") or {}).get("resource", ""))
    return found


def finalizers(obj: dict[str, Any] | None) -> list[str]:
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


def used_by(obj: dict[str, Any] | None) -> list[str] | None:
    return ((obj or {}).get("status") or {}).get("usedBy")


def timed(what: str, predicate: Any, bound: float) -> float:
    """Seconds until ``predicate()`` holds; fails beyond ``bound``."""
    started = time.monotonic()
    wait_for(predicate, bound, what, interval=0.1)
    return time.monotonic() - started


def report(name: str, **figures: Any) -> None:
    """One line per fault for the closing table (pytest -s shows it)."""
    print(f"\nFAULT {name}: " + json.dumps(figures, sort_keys=True, default=str))


# --- 1 and 2: a deletion the watch never reports ----------------------------------------------

def test_a_call_type_and_a_secret_deleted_while_the_api_server_restarts_are_noticed(
    cp: ControlPlane, admin: Any, ns: str, api_proxy: KillableProxy, operators: Operators,
    s3_server: S3Server,
) -> None:
    """Issue 11 items 1-2. The operator is cut off, the API server is killed and started
    again (a new watch cache: the operator's resourceVersion is now too old, 410 Gone and
    a relist), and ct-2 and the Secret of another storage are deleted before the operator
    reconnects. The relist replays live objects only; what each watch's relist lacks must
    be found gone from it (issue 24 item 5: no resync of everything): the storage loses
    its in-use finalizer and usedBy, and can then be deleted; the other one reports
    SecretNotFound instead of going on with the cached credentials."""
    op = operators.start()
    storages.s3_storage(admin, s3_server, ns, "st")
    storages.s3_storage(admin, s3_server, ns, "keyed")
    storages.call_type(admin, ns, "ct-2", "st")
    kubeutil.wait_object(admin, EXS, ns, "st", lambda o: used_by(o) == ["ct-2"] and
                         IN_USE_FINALIZER in finalizers(o), 30, "st in use by ct-2")
    storages.wait_ready(admin, EXS, ns, "keyed", "True", "Validated", timeout=30)
    log_offset = len(op.log())

    api_proxy.kill()
    cp.kill("kube-apiserver")
    cp.restart("kube-apiserver")
    client.CustomObjectsApi(admin).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, CT, "ct-2")
    client.CoreV1Api(admin).delete_namespaced_secret("keyed-creds", ns)
    since = time.time()
    started = time.monotonic()
    api_proxy.revive()

    took = timed("the ghost ct-2 to be pruned", lambda: (
        (o := kubeutil.get_object(admin, EXS, ns, "st")) is not None and used_by(o) == []
        and IN_USE_FINALIZER not in finalizers(o)), 30)
    kubeutil.wait_object(admin, EXS, ns, "keyed", lambda o: storages.condition(o).get(
        "reason") == "SecretNotFound", 30, "keyed to report SecretNotFound")
    secret_took = time.monotonic() - started
    client.CustomObjectsApi(admin).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXS, "st")
    timed("the storage to be deleted",
          lambda: kubeutil.get_object(admin, EXS, ns, "st") is None, 10)
    time.sleep(2)  # what the operator does once converged counts too: no 1/s loop
    requests = operator_requests(cp, since, namespace=ns)
    errors = [line for line in op.log()[log_offset:].splitlines() if " ERROR " in line]
    report("api-server restart + CallType and Secret deletion", ct_pruned_s=round(took, 1),
           secret_not_found_s=round(secret_took, 1), bound_s=30, requests=dict(requests),
           error_lines=len(errors))
    assert len(errors) <= 3, errors  # at most kopf's escalation, once per watched kind
    assert requests["list secrets 200"] >= 1, requests  # the Secret watch's relist
    assert requests["list secrets in-namespace 200"] == 0, requests  # no resync
    writes = sum(n for k, n in requests.items() if k.split()[0] in ("patch", "update"))
    assert writes <= 12, requests
    assert sum(requests.values()) <= 60, requests


# --- 8: exactly one check object, even across a crash ----------------------------------------

def test_an_operator_killed_between_upload_and_status_write_leaves_one_check_object(
    admin: Any, ns: str, operators: Operators, s3_server: S3Server,
) -> None:
    with KillableProxy(int(s3_server.endpoint.rsplit(":", 1)[1])) as slow_s3:
        first = operators.start(CALLSTORAGE_READ_TIMEOUT="10")
        bucket = storages.s3_storage(admin, s3_server, ns, "st", endpoint=slow_s3.endpoint)
        storages.wait_ready(admin, EXS, ns, "st", "True", "Validated", timeout=30)

        slow_s3.response_delay = 2.0  # the object lands; the answer comes 2 s later
        client.CustomObjectsApi(admin).patch_namespaced_custom_object(
            "callstorage.io", "v1alpha1", ns, EXS, "st",
            {"metadata": {"annotations": {CHECK_ANNOTATION: "crash-1"}}})

        def checks() -> list[str]:
            return [k for k in s3_server.list_keys(bucket, "calls/")
                    if k.startswith("calls/stream-")]

        wait_for(lambda: bool(checks()), 20, "the check object to land", interval=0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.server.pid, signal.SIGKILL)
        first.server.proc.wait(10)
        assert "lastCheck" not in (kubeutil.get_object(admin, EXS, ns, "st") or {}).get(
            "status", {}), "the kill came too late to test anything"

        slow_s3.response_delay = 0.0
        started = time.monotonic()
        operators.start(CALLSTORAGE_READ_TIMEOUT="10")
        obj = kubeutil.wait_object(
            admin, EXS, ns, "st", lambda o: ((o or {}).get("status") or {}).get(
                "lastCheck", {}).get("requestedAt") == "crash-1", 30, "the check answered")
        took = time.monotonic() - started
        assert obj is not None
        last = obj["status"]["lastCheck"]
        assert last["succeeded"] is True, last
        objects = checks()
        report("operator SIGKILL between check upload and status write",
               converged_s=round(took, 1), bound_s=30, check_objects=len(objects))
        assert len(objects) == 1, objects
        assert last["object"].endswith(objects[0])


# --- 4: status and finalizers restored ---------------------------------------------------------

def test_tampered_status_and_a_stripped_finalizer_are_restored(
    cp: ControlPlane, admin: Any, ns: str, operators: Operators, s3_server: S3Server,
) -> None:
    operators.start()
    storages.s3_storage(admin, s3_server, ns, "st")
    storages.call_type(admin, ns, "ct-1", "st")
    good = kubeutil.wait_object(admin, EXS, ns, "st", lambda o: used_by(o) == ["ct-1"] and
                                IN_USE_FINALIZER in finalizers(o), 30, "st in use")
    storages.wait_ready(admin, CT, ns, "ct-1", "True", timeout=30)
    assert good is not None
    validated_at = storages.wait_ready(admin, EXS, ns, "st", "True")["status"][
        "lastValidatedAt"]
    api = client.CustomObjectsApi(admin)
    since = time.time()

    fake = [dict(c, status="True", reason="Faked", message="trust me")
            if c["type"] == "Ready" else c for c in good["status"]["conditions"]]
    api.patch_namespaced_custom_object_status(
        "callstorage.io", "v1alpha1", ns, EXS, "st",
        {"status": {"usedBy": ["ghost"], "conditions": fake}})
    status_took = timed("the storage's status to be restored", lambda: (
        (o := kubeutil.get_object(admin, EXS, ns, "st")) is not None
        and used_by(o) == ["ct-1"] and storages.condition(o)["reason"] == "Validated"), 10)

    api.patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXS, "st", {"metadata": {"finalizers": []}})
    fin_took = timed("the in-use finalizer to come back", lambda: IN_USE_FINALIZER in
                     finalizers(kubeutil.get_object(admin, EXS, ns, "st")), 10)

    api.patch_namespaced_custom_object_status(
        "callstorage.io", "v1alpha1", ns, CT, "ct-1",
        {"status": {"resolvedStorage": {"name": "evil", "namespace": ns}}})
    ct_took = timed("the CallType's resolvedStorage to be restored", lambda: (
        (kubeutil.get_object(admin, CT, ns, "ct-1") or {}).get("status", {}).get(
            "resolvedStorage", {}).get("name") == "st"), 10)

    after = kubeutil.get_object(admin, EXS, ns, "st")
    assert after is not None
    assert after["status"]["lastValidatedAt"] == validated_at, "restoring re-validated"
    time.sleep(2)
    requests = operator_requests(cp, since, namespace=ns)
    report("status and finalizer tampering", status_s=round(status_took, 1),
           finalizer_s=round(fin_took, 1), calltype_s=round(ct_took, 1), bound_s=10,
           requests=dict(requests))
    assert sum(n for k, n in requests.items() if k.startswith("patch")) <= 8, requests


# --- 9: namespace teardown ---------------------------------------------------------------------

def test_deleting_a_namespace_validates_nothing_and_posts_no_warnings(
    cp: ControlPlane, admin: Any, operators: Operators, s3_server: S3Server,
) -> None:
    op = operators.start()
    ns = f"f-{secrets.token_hex(3)}"
    kubeutil.create_namespace(admin, ns)
    storages.s3_storage(admin, s3_server, ns, "st")
    storages.call_type(admin, ns, "ct-1", "st")
    storages.wait_ready(admin, CT, ns, "ct-1", "True", timeout=30)
    time.sleep(1)  # let the first round's events land before counting
    log_offset = len(op.log())
    since = time.time()
    kubeutil.delete_namespace(admin, ns)

    def gone() -> bool:
        try:
            client.CoreV1Api(admin).read_namespace(ns)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    took = timed(f"namespace {ns} to be deleted", gone, 60)
    time.sleep(2)
    log = op.log()[log_offset:]
    requests = operator_requests(cp, since, namespace=ns)
    report("namespace deletion", converged_s=round(took, 1), bound_s=60,
           requests=dict(requests))
    assert f"validated ExternalStorage {ns}/" not in log
    refused = {k: n for k, n in requests.items()
               if k.startswith("create events") and "dry-run" not in k and
               not k.endswith(" 201")}
    assert refused == {}, requests


# --- 6: fairness -------------------------------------------------------------------------------

def test_twenty_storages_on_a_hanging_endpoint_do_not_delay_another_tenant(
    admin: Any, operators: Operators, s3_server: S3Server, hanging_port: int,
) -> None:
    operators.start(CALLSTORAGE_READ_TIMEOUT="30", CALLSTORAGE_CONNECT_TIMEOUT="30",
                    CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS="16")
    stuck, other = f"f-{secrets.token_hex(3)}", f"f-{secrets.token_hex(3)}"
    kubeutil.create_namespace(admin, stuck)
    kubeutil.create_namespace(admin, other)
    try:
        kubeutil.secret(admin, stuck, "creds", {
            "accessKeyId": "AKIAHANG", "secretAccessKey": "hang",
            "endpoint": f"http://127.0.0.1:{hanging_port}"})
        for i in range(20):
            kubeutil.create_object(admin, EXS, stuck, storages.external_storage(
                f"hang-{i}", storages.s3_storage_spec(
                    "bucket", f"http://127.0.0.1:{hanging_port}", "creds")))

        def validating() -> int:
            items = client.CustomObjectsApi(admin).list_namespaced_custom_object(
                "callstorage.io", "v1alpha1", stuck, EXS)["items"]
            return sum(storages.condition(o).get("reason") == "Validating" for o in items)

        wait_for(lambda: validating() >= 4, 20, "the hanging validations to start")
        started = time.monotonic()
        storages.s3_storage(admin, s3_server, other, "fresh")
        storages.wait_ready(admin, EXS, other, "fresh", "True", "Validated", timeout=30)
        took = time.monotonic() - started
        report("20 storages on a hanging endpoint; another tenant's new storage",
               ready_s=round(took, 1), bound_s=5)
        assert took < 5, f"the other tenant's storage waited {took:.1f}s"
    finally:
        kubeutil.delete_namespace(admin, stuck)
        kubeutil.delete_namespace(admin, other)


# --- 7: a frozen watch -------------------------------------------------------------------------

# docs/install.md "Watches" (watching.py): a watch silent for WATCH_INACTIVITY seconds is
# reconnected at once; WATCH_RECONNECT_BACKOFF is the slack.
def _watch_recovery_bound() -> float:
    from callstorage.watching import WATCH_INACTIVITY, WATCH_RECONNECT_BACKOFF

    return WATCH_INACTIVITY + WATCH_RECONNECT_BACKOFF


def test_a_frozen_api_connection_is_noticed_within_the_watch_inactivity_timeout(
    cp: ControlPlane, admin: Any, ns: str, api_proxy: KillableProxy, operators: Operators,
    s3_server: S3Server,
) -> None:
    """Issue 11 item 7. Every open connection between the operator and the API server
    goes silent but stays open (a stuck middlebox): no event, no end of stream, no reset;
    new connections pass. A check requested meanwhile is seen once the watch's inactivity
    timeout ends the frozen stream and a new one resumes, and answered in status once the
    write gets through too."""
    from callstorage.kube import POINT_TIMEOUT

    bound = _watch_recovery_bound()  # imports kopf: not inside the measured time
    op = operators.start()
    storages.s3_storage(admin, s3_server, ns, "st")
    storages.wait_ready(admin, EXS, ns, "st", "True", "Validated", timeout=30)
    time.sleep(1)  # the round's writes have landed
    api = client.CustomObjectsApi(admin)
    # One last event on the storage watch (a label: no round) starts its inactivity
    # timer now, so the freeze is measured from a known point.
    api.patch_namespaced_custom_object("callstorage.io", "v1alpha1", ns, EXS, "st",
                                       {"metadata": {"labels": {"fault": "freeze"}}})
    time.sleep(0.2)
    api_proxy.freeze()
    since = time.time()
    api.patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXS, "st",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "frozen-1"}}})
    seen_line = f"ExternalStorage {ns}/st: round for check"
    seen = timed("the operator to see the check request", lambda: seen_line in op.log(),
                 bound + 5)
    # its status write may go out on a pooled connection that froze too: that one fails
    # after POINT_TIMEOUT and the write is retried (RETRY_BASE 1 s) on a fresh one
    write_bound = 2 * POINT_TIMEOUT[1] + 5
    answered = seen + timed("the check to be answered in status", lambda: (
        (kubeutil.get_object(admin, EXS, ns, "st") or {}).get("status", {}).get(
            "lastCheck", {}).get("requestedAt") == "frozen-1"), write_bound)
    time.sleep(1)
    requests = operator_requests(cp, since, namespace=ns)
    report("API connection frozen (watches silent, kept open)", seen_s=round(seen, 1),
           seen_bound_s=bound, answered_s=round(answered, 1),
           answered_bound_s=bound + write_bound, requests=dict(requests))
    assert seen <= bound + 2, seen  # + 2: the round itself, on a busy machine
    # Far sooner means something else delivered the change: legitimately, a resync LIST on
    # a fresh connection; otherwise the freeze did not hold.
    found_by_resync = requests.get("list externalstorages 200", 0) > 0
    assert found_by_resync or seen >= bound - 3, (seen, requests)
    assert sum(requests.values()) <= 12, requests


# --- 5: etcd stopped ------------------------------------------------------------------------------

def _api_ready(cp: ControlPlane) -> bool:
    try:
        return cp.get("/readyz", timeout=2) == b"ok"
    except OSError:
        return False


ETCD_OUTAGE = 4.0


def test_etcd_stopped_and_restarted_makes_no_storm_and_changes_then_converge(
    cp: ControlPlane, admin: Any, ns: str, operators: Operators, s3_server: S3Server,
) -> None:
    """etcd dies under the API server for ETCD_OUTAGE seconds, just after a check was
    requested on a storage its CallType uses: the check's status write meets the outage
    (S3's answer is held back 1 s so that it does). Once etcd is back the spec changes
    too. The operator neither crashes nor storms (its requests during and after the
    outage are counted), and both changes converge."""
    with KillableProxy(int(s3_server.endpoint.rsplit(":", 1)[1])) as slow_s3:
        op = operators.start()
        storages.s3_storage(admin, s3_server, ns, "st", endpoint=slow_s3.endpoint)
        storages.call_type(admin, ns, "ct-1", "st")
        storages.wait_ready(admin, CT, ns, "ct-1", "True", timeout=30)
        time.sleep(1)
        log_offset = len(op.log())
        api = client.CustomObjectsApi(admin)
        slow_s3.response_delay = 1.0
        down = time.time()
        api.patch_namespaced_custom_object("callstorage.io", "v1alpha1", ns, EXS, "st", {
            "metadata": {"annotations": {CHECK_ANNOTATION: "etcd-1"}}})
        time.sleep(0.3)  # the event is out; the check's status write is not
        cp.kill("etcd")
        time.sleep(ETCD_OUTAGE)
        cp.restart("etcd")
        wait_for(lambda: _api_ready(cp), 60, "the API server to be ready again",
                 interval=0.1)
        back = time.time()
        started = time.monotonic()
        generation = api.patch_namespaced_custom_object(
            "callstorage.io", "v1alpha1", ns, EXS, "st",
            {"spec": {"validationInterval": "2h"}})["metadata"]["generation"]
        kubeutil.wait_object(admin, EXS, ns, "st", lambda o: (
            (o or {}).get("status", {}).get("observedGeneration") == generation
            and (o or {}).get("status", {}).get("lastCheck", {}).get(
                "requestedAt") == "etcd-1"
            and storages.condition(o).get("reason") == "Validated"
            and used_by(o) == ["ct-1"]), 30, "the storage to converge")
        took = time.monotonic() - started
    time.sleep(2)
    during = operator_requests(cp, down, back, namespace=ns)
    after = operator_requests(cp, back, namespace=ns)
    held = slowest_write(cp, down, back, ns)
    errors = [line for line in op.log()[log_offset:].splitlines() if " ERROR " in line]
    report(f"etcd stopped {ETCD_OUTAGE:.0f} s after a check request; spec changed once back",
           converged_after_etcd_s=round(took, 1), bound_s=30, requests_during=dict(during),
           requests_after=dict(after), write_held_s=round(held, 1), error_lines=len(errors))
    assert held >= 1, "no write met the outage: the test tested nothing"
    assert op.server.proc.poll() is None, "the operator exited"
    assert sum(during.values()) <= ETCD_OUTAGE, during  # backing off: not one per second
    assert sum(after.values()) <= 20, after
    assert len(errors) <= 4, errors


# --- 5: S3 stopped or hanging ---------------------------------------------------------------------

S3_WINDOW = 8.0
RETRY_MAX = 10.0  # the suite's CALLSTORAGE_RETRY_MAX (conftest.launch_operator)


def test_s3_stopped_and_blackholed_are_reported_retried_with_backoff_and_recovered_from(
    cp: ControlPlane, admin: Any, ns: str, operators: Operators, s3_server: S3Server,
) -> None:
    """Two storages, each behind its own fault proxy in front of S3: one proxy refuses
    connections ("stopped"), the other accepts and never answers ("blackholed"), while a
    new generation of each is validated. Ready says why, Reconciling says a retry is
    scheduled, retries back off with jitter (attempts counted at the proxy and in the
    operator's log over S3_WINDOW seconds), nothing is logged at ERROR, and once S3 is
    back each storage is Ready within one retry step."""
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    reasons = {"stopped": "EndpointUnreachable", "blackholed": "Timeout"}
    with KillableProxy(port) as stopped, KillableProxy(port) as blackholed:
        proxies = {"stopped": stopped, "blackholed": blackholed}
        op = operators.start()
        for name, proxy in proxies.items():
            storages.s3_storage(admin, s3_server, ns, name, endpoint=proxy.endpoint)
        for name in proxies:
            storages.wait_ready(admin, EXS, ns, name, "True", "Validated", timeout=30)
        log_offset = len(op.log())
        stopped.kill()
        blackholed.blackhole = True
        blackholed.freeze()
        accepted = blackholed.accepted
        since = time.time()
        for name in proxies:
            client.CustomObjectsApi(admin).patch_namespaced_custom_object(
                "callstorage.io", "v1alpha1", ns, EXS, name, {"spec": {"path": "calls-b/"}})
        for name, reason in reasons.items():
            obj = storages.wait_ready(admin, EXS, ns, name, "False", reason, timeout=15)
            reconciling = storages.condition(obj, "Reconciling")
            assert (reconciling.get("status"), reconciling.get("reason")) == \
                ("True", "RetryScheduled"), reconciling
        time.sleep(S3_WINDOW)
        log = op.log()[log_offset:].splitlines()
        at_s3 = blackholed.accepted - accepted
        stopped.revive()
        blackholed.blackhole = False
        started = time.monotonic()
        took: dict[str, float] = {}
        for name in proxies:
            timed(f"{name} to be Ready again", lambda name=name: storages.condition(
                kubeutil.get_object(admin, EXS, ns, name)).get("reason") == "Validated",
                RETRY_MAX + 5)
            took[name] = round(time.monotonic() - started, 1)
        requests = operator_requests(cp, since, namespace=ns)
        errors = [line for line in op.log()[log_offset:].splitlines() if " ERROR " in line]
        attempts: dict[str, list[float]] = {}
        logged: dict[str, int] = {}
        for name, reason in reasons.items():
            stamps = [
                dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                for line in log if f"validated ExternalStorage {ns}/{name}: {reason}" in line]
            # the window opens at the first failed attempt (the sleep above covers it)
            attempts[name] = [t for t in stamps if t <= stamps[0] + S3_WINDOW]
            logged[name] = len(stamps)
        gaps = {name: [round(b - a, 2) for a, b in itertools.pairwise(stamps)]
                for name, stamps in attempts.items()}
        report("S3 stopped and blackholed", window_s=S3_WINDOW,
               attempts={k: len(v) for k, v in attempts.items()},
               attempts_at_blackholed_s3=at_s3, gaps_s=gaps, recovered_s=took,
               bound_s=RETRY_MAX + 5, error_lines=len(errors), requests=dict(requests))
        # retries 1, 2, 4, 8 s (x 0.5-1 jitter) after each failure: at most 5 attempts
        # in 8 s (0, 0.5, 1.5, 3.5, 7.5 at the earliest); a fixed 1 s loop would make 9
        for name, stamps in attempts.items():
            assert 2 <= len(stamps) <= 5, (name, gaps[name])
            assert all(b > a for a, b in itertools.pairwise(gaps[name])), gaps
        # every connection S3 saw is an attempt the operator reports (or the one in flight)
        assert at_s3 <= logged["blackholed"] + 1, (at_s3, logged)
        assert errors == [], errors
        assert not any(" dry-run 4" in k and "403" not in k for k in requests), \
            "a namespace probe in a live namespace failed (only teardown may refuse it)"
        patches = sum(n for k, n in requests.items() if k.startswith("patch"))
        assert patches <= 2 * sum(len(v) for v in attempts.values()) + 6, requests
