"""Two operator replicas on a real API server; the leader's API server hangs (what the
leader sends still lands, no answer comes back) while the standby's answers. The audit
log, which names each replica by its own client certificate, must show one writer at a
time: after the new leader's first write, none by the old one.

Before the fix the old leader went on handling objects for as long as its hung renewal
took (4 tries of urllib3 x the read timeout), and wrote status after the standby had
taken over. Issue 24 item 4.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from conftest import OPERATOR_NAMESPACE, RunningOperator, launch_operator
from storages import EXS
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for
from testbed.s3 import S3Server
from testbed.tcpproxy import KillableProxy

pytestmark = [pytest.mark.faults, pytest.mark.integration]

OLD, NEW = "replica-a", "replica-b"  # Pod names (identities) and certificate CNs
RENEW_DEADLINE, LEASE_DURATION = 2.0, 3.0
LEASE = {"CALLSTORAGE_LEADER_ELECTION": "true",
         "CALLSTORAGE_LEASE_DURATION": str(LEASE_DURATION),
         "CALLSTORAGE_LEASE_RENEW_DEADLINE": str(RENEW_DEADLINE),
         "CALLSTORAGE_LEASE_RETRY_PERIOD": "0.5",
         # a validation may take SLOW_S3 seconds: not a timeout
         "CALLSTORAGE_READ_TIMEOUT": "20"}
SLOW_S3 = 8.0  # seconds each answer of the slow storage's endpoint is held back
WRITES = ("create", "update", "patch", "delete")


def holder(admin: Any) -> str | None:
    try:
        spec = client.CoordinationV1Api(admin).read_namespaced_lease(
            "callstorage-operator", OPERATOR_NAMESPACE).spec
    except client.ApiException:
        return None
    return str(spec.holder_identity) if spec.holder_identity else None


def writes(cp: ControlPlane, namespace: str) -> list[tuple[float, str, str]]:
    """(received at, user, what) of every write in ``namespace`` by either replica, the
    leader election's Lease aside, from the audit log."""
    assert cp.audit_log is not None
    found = []
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        user = event.get("user", {}).get("username")
        ref = event.get("objectRef") or {}
        if event.get("stage") != "ResponseComplete" or user not in (OLD, NEW) or \
                event.get("verb") not in WRITES or ref.get("namespace") != namespace:
            continue
        received = dt.datetime.fromisoformat(
            event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        what = f"{event['verb']} {ref.get('resource')}/{ref.get('name', '')}" + (
            f"/{ref['subresource']}" if ref.get("subresource") else "")
        found.append((received, user, what))
    return sorted(found)


def lost_at(op: RunningOperator) -> float | None:
    """When the replica logged that it lost the Lease (epoch seconds), if it did."""
    match = re.search(r"^(\S+ \S+) ERROR\s+callstorage\.leader: lost the leader lease",
                      op.log(), re.MULTILINE)
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_leader_whose_api_server_hangs_stops_writing_before_the_standby_starts(
    cp: ControlPlane, admin: Any, ns: str, s3_server: S3Server, tmp_path: Path,
) -> None:
    s3_port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with KillableProxy(cp.port) as api_road, KillableProxy(s3_port) as slow_s3:
        replicas: list[RunningOperator] = []
        try:
            old_kubeconfig = cp.user_kubeconfig(
                OLD, server=f"https://127.0.0.1:{api_road.port}")
            replicas.append(launch_operator(old_kubeconfig, tmp_path / OLD,
                                            {**LEASE, "POD_NAME": OLD}, OLD))
            wait_for(lambda: holder(admin) == OLD, 30, f"{OLD} to lead")
            replicas.append(launch_operator(cp.user_kubeconfig(NEW), tmp_path / NEW,
                                            {**LEASE, "POD_NAME": NEW}, NEW))
            storages.s3_storage(admin, s3_server, ns, "warm", s3_server.endpoint)
            storages.wait_ready(admin, EXS, ns, "warm", "True", "Validated", timeout=30)

            # A validation of the old leader is in flight when its API server hangs: its
            # answer comes after the standby has taken over.
            slow_s3.response_delay = SLOW_S3
            storages.s3_storage(admin, s3_server, ns, "slow", slow_s3.endpoint)
            wait_for(lambda: slow_s3.upstream_bytes > 0, 30,
                     f"{OLD} to start validating the slow storage", interval=0.05)
            api_road.mute()
            muted = time.time()
            storages.s3_storage(admin, s3_server, ns, "after", s3_server.endpoint)

            wait_for(lambda: holder(admin) == NEW, 30, f"{NEW} to take over")
            storages.wait_ready(admin, EXS, ns, "after", "True", "Validated", timeout=30)
            # The old leader exits once it has stopped (1: it lost the Lease); by then
            # nothing of it is in flight any more.
            wait_for(lambda: replicas[0].server.proc.poll() is not None, 60,
                     f"{OLD} to exit")
            assert replicas[0].server.proc.returncode == 1
            stopped = lost_at(replicas[0])
        finally:
            for op in replicas:
                op.stop()

    log = writes(cp, ns)
    print("\n" + "\n".join(f"{t - muted:+7.2f}s {user} {what}" for t, user, what in log))
    assert any(user == OLD and t < muted for t, user, _ in log), log  # it did lead
    first_new = min(t for t, user, _ in log if user == NEW)
    late = [(round(t - muted, 2), what) for t, user, what in log
            if user == OLD and t >= first_new]
    assert not late, f"{OLD} wrote after {NEW} started writing: {late}"
    # and it stopped handling objects when its renew deadline passed (its last renewal
    # came before the hang), before the standby could take over
    assert stopped is not None
    print(f"{OLD} stopped {stopped - muted:.2f}s after the hang (renew deadline "
          f"{RENEW_DEADLINE:g}s, lease duration {LEASE_DURATION:g}s)")
    assert stopped - muted < LEASE_DURATION, stopped - muted
