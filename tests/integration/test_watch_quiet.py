"""Issue 24 item 5: a quiet watch never relists.

The operator serves one namespace where nothing happens while another namespace is
written to steadily: the API server's watch cache (one per resource, the last ~75 s of
events, a window fixed in kube-apiserver) moves past the resourceVersion the operator
listed at start. Its watches stay resumable only through bookmarks, which the API server
sends ~2 s before each watch request's deadline. Before the fix a watch was taken for
frozen after 20 s of silence, before its first bookmark: it kept resuming from the listed
version, got 410 Gone once the cache had moved on, relisted and resynced everything.

Counted at the API server (its audit log, as the operator's own user): after start-up,
no LIST at all (``resyncInterval`` is set beyond the test), and every watch request the
operator makes once the cache has moved on resumes from a version newer than the test's
mark, one only a bookmark can have brought. A control plane of its own: the window cannot
be shortened (~75 s, grown to fit the write rate), so the test takes about two minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.watching import WATCH_INACTIVITY, WATCH_RECONNECT_BACKOFF
from conftest import OPERATOR_NAMESPACE, ROOT, launch_operator
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for

pytestmark = pytest.mark.integration

OPERATOR_USER = "callstorage-operator"
QUIET, BUSY = "quiet", "busy"
GROUP_PATH = "/apis/callstorage.io/v1alpha1"
PATHS = {"externalstorages": GROUP_PATH, "calltypes": GROUP_PATH, "secrets": "/api/v1"}
# Writes per second to each resource in BUSY. The watch cache starts at 100 events and
# doubles while its oldest event is younger than 75 s; at 5.2/s it settles at 400 events,
# ~77 s (a slower rate, down to 4/s, stretches that to 100 s).
WRITE_RATE = 5.2


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("quiet-cp"), audit=True)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


def _stamp(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(
        event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def _operator_requests(cp: ControlPlane, verb: str) -> list[dict[str, Any]]:
    """The operator's ``verb`` requests, one record each: a watch's ResponseStarted (or
    its ResponseComplete if it never started: a 410 answer), a LIST's ResponseComplete."""
    assert cp.audit_log is not None
    found: dict[str, dict[str, Any]] = {}
    for line in cp.audit_log.read_text().splitlines():
        if OPERATOR_USER not in line:  # the writer's thousands of lines: no parse
            continue
        event = json.loads(line)
        if event.get("verb") == verb and \
                event.get("user", {}).get("username") == OPERATOR_USER:
            found.setdefault(event["auditID"], event)
    return list(found.values())


def _watch_starts(cp: ControlPlane, since: float) -> dict[tuple[str, str], list[int]]:
    """(resource, namespace) -> the resourceVersion of each watch request the operator
    made since ``since``."""
    starts: dict[tuple[str, str], list[int]] = {}
    for event in _operator_requests(cp, "watch"):
        if _stamp(event) < since:
            continue
        ref = event.get("objectRef") or {}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(event["requestURI"]).query)
        rv = int(query.get("resourceVersion", ["0"])[0])
        starts.setdefault((ref.get("resource", ""), ref.get("namespace", "")), []).append(rv)
    return starts


def _lists(cp: ControlPlane, since: float = 0.0) -> list[str]:
    return [f"{(e.get('objectRef') or {}).get('resource')} in "
            f"{(e.get('objectRef') or {}).get('namespace')}"
            for e in _operator_requests(cp, "list") if _stamp(e) >= since]


def _gone(cp: ControlPlane, resource: str, rv: int) -> bool:
    """Whether a watch of ``resource`` in QUIET from ``rv`` gets 410 Gone now."""
    path = f"{PATHS[resource]}/namespaces/{QUIET}/{resource}?watch=true&" \
           f"resourceVersion={rv}&timeoutSeconds=1"
    try:
        body = cp.get(path, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code == 410
    return any(json.loads(line).get("object", {}).get("code") == 410
               for line in body.splitlines() if line.strip())


class Writer(threading.Thread):
    """Patches one ExternalStorage, CallType and Secret in BUSY, WRITE_RATE times a
    second each, until stopped."""

    def __init__(self, api: Any) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.halt = threading.Event()
        self.writes = 0

    def run(self) -> None:
        custom, core = client.CustomObjectsApi(self.api), client.CoreV1Api(self.api)
        start = time.monotonic()
        while not self.halt.is_set():
            self.writes += 1
            mark = {"metadata": {"annotations": {"test/n": str(self.writes)}}}
            for plural, name in (("externalstorages", "st"), ("calltypes", "ct")):
                custom.patch_namespaced_custom_object("callstorage.io", "v1alpha1", BUSY,
                                                      plural, name, mark)
            core.patch_namespaced_secret("creds", BUSY, mark)
            self.halt.wait(max(0.0, start + self.writes / WRITE_RATE - time.monotonic()))


def test_a_quiet_namespaced_watch_never_relists_while_others_write(
    cluster: ControlPlane, tmp_path: Path,
) -> None:
    api = cluster.api_client()
    kubeutil.apply_crds(api, ROOT / "crds")
    for ns in (OPERATOR_NAMESPACE, QUIET, BUSY):
        kubeutil.create_namespace(api, ns)
    kubeutil.secret(api, BUSY, "creds", {"accessKeyId": "a", "secretAccessKey": "b"})
    kubeutil.create_object(api, "externalstorages", BUSY, storages.external_storage(
        "st", storages.s3_storage_spec("busy-bucket", "https://s3.example.com", "creds")))
    kubeutil.create_object(api, "calltypes", BUSY, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "ct"}, "spec": {"externalStorage": "st"}})
    streams = {(resource, ns) for resource in PATHS for ns in (QUIET, OPERATOR_NAMESPACE)}

    since = time.time()
    operator = launch_operator(cluster.user_kubeconfig(OPERATOR_USER), tmp_path / "log", {
        "CALLSTORAGE_WATCH_NAMESPACES": QUIET,
        "CALLSTORAGE_RESYNC_INTERVAL": "3600",  # none due during the test
    }, "quiet-operator")
    writer = Writer(api)
    try:
        wait_for(lambda: set(_watch_starts(cluster, since)) >= streams, 30,
                 "the operator's six watches to stream", interval=0.5,
                 alive=operator.server)
        started = time.time()
        startup_lists = _lists(cluster)
        # newer than every version the operator listed at start
        mark = int(json.loads(cluster.get(f"/api/v1/namespaces/{QUIET}/secrets"))[
            "metadata"]["resourceVersion"])
        writer.start()
        wait_for(lambda: all(_gone(cluster, r, mark) for r in PATHS), 180,
                 "the watch caches to move past the mark", interval=3,
                 alive=operator.server)
        rolled = time.time()
        # each stream's next request, now that a version from before the mark is gone
        wait_for(lambda: set(_watch_starts(cluster, rolled)) >= streams,
                 WATCH_INACTIVITY + 10, "every watch to reconnect", interval=1,
                 alive=operator.server)
        # a 410 answer is followed by a LIST after WATCH_RECONNECT_BACKOFF: give it time
        time.sleep(WATCH_RECONNECT_BACKOFF + 3)
        after = _watch_starts(cluster, rolled)
        every = _watch_starts(cluster, since)
        relists = _lists(cluster, started)
    finally:
        writer.halt.set()
        writer.join(10)
        operator.stop()
        api.close()

    print(f"rolled {rolled - started:.0f}s after start; {writer.writes} writes per "
          f"resource; start-up LISTs {startup_lists}; watches after: {after}")
    assert writer.writes > 100, "the writer fell behind"
    assert relists == [], f"LISTs after start-up: {relists}"
    # on the wire: each request resumes from a newer version (the last one's bookmark),
    # once the cache has moved on from one past the mark
    stuck = {stream: rvs for stream, rvs in every.items() if rvs != sorted(set(rvs))}
    assert not stuck, f"watches resumed twice from one version: {stuck}"
    stale = {stream: rvs for stream, rvs in after.items() if min(rvs) <= mark}
    assert not stale, f"watches resumed from a version older than {mark}: {stale}"
    assert "resourceVersion gone" not in operator.log()
