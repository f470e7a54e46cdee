"""``python -m testbed``: prepare the test bed, or run the local demo.

    prepare   find or build kube-apiserver, etcd, kube-controller-manager, helm,
              kubeconform, kstatus, promtool, Argo CD's Lua runner, kubelet,
              kube-proxy, kube-scheduler, pause (cached in ~/.cache/callstorage),
              fetch prometheus-operator's CRDs, install Azurite and the node's
              Debian packages, build the operator image
    up        start a control plane + S3 emulator and wait (for exploring by hand);
              --node adds a real node (kubelet, containerd, kube-proxy) with the image
    demo      `up`, plus the CRDs, the operator and manifests/samples/, until Ctrl-C;
              --node installs the operator with `helm install` onto the node instead
    image     build the operator image from the Dockerfile, no registry; print its id
              (--lock: refresh the pinned Python and Debian package lists first)
    leftovers fail if any process of this run (CALLSTORAGE_TESTBED_RUN) still runs
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries, kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import RUN_MARKER, Server, free_port, http_ok, leftovers, wait_for

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "callstorage-system"


def _print(text: str = "") -> None:
    """Print to stdout, and stop printing once nobody reads it.

    ``make demo | tee log`` then Ctrl-C: tee dies first, and a print would raise
    BrokenPipeError in the middle of the cleanup. Output is a courtesy; cleanup is not.
    """
    try:
        print(text, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        # later prints, and the interpreter's final flush, go nowhere instead of failing
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _say(msg: str) -> None:
    _print(f"==> {msg}")


def _interrupt(signum: int, _frame: object) -> None:
    """SIGINT, SIGTERM and SIGHUP all stop the demo through its cleanup."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def prepare() -> None:
    from testbed import apt, image

    # the real node's runtime and the image build come from Debian packages
    apt.ensure(apt.NODE_PACKAGES + apt.IMAGE_PACKAGES)
    for name, path in binaries.ensure_all().items():
        _say(f"{name}: {path}")
    for path in binaries.monitoring_crds():
        _say(f"CRD: {path}")
    built = image.build()
    _say(f"operator image: {built.name} {built.digest}")
    from testbed.azurite import install_azurite

    _say(f"azurite: {install_azurite()}")


def _on_stop_signals(handler: Any) -> None:
    """SIGINT, SIGTERM and SIGHUP all go to ``handler``."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def _wait_for_ctrl_c() -> None:
    """Block until SIGINT, SIGTERM or SIGHUP (all raise KeyboardInterrupt, see up())."""
    _say("press Ctrl-C to stop and clean up")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _s3_samples_for_emulator(docs: list[dict[str, Any]], s3: Any) -> list[dict[str, Any]]:
    """Point the S3 samples at the local emulator, with real keys scoped per sample.

    Everything else is applied as written: the GCS and Azure samples then show in status
    how a storage that cannot be reached or authenticated looks.
    """
    from testbed.s3 import put_only_policy, readwrite_policy

    out = [copy.deepcopy(d) for d in docs]
    secrets = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d
               for d in out if d.get("kind") == "Secret"}
    for doc in out:
        spec = doc.get("spec") or {}
        if doc.get("kind") != "ExternalStorage" or spec.get("storageType") != "s3":
            continue
        bucket = spec["bucket"]
        s3.create_bucket(bucket)
        spec["s3"]["endpoint"] = s3.endpoint
        spec["s3"]["forcePathStyle"] = True
        ref = (spec["s3"].get("credentialsSecretRef") or {}).get("name")
        if not ref:
            continue
        ns = doc["metadata"].get("namespace")
        if spec.get("accessMode") == "WriteOnly":
            from callstorage.api import effective_prefixes
            from callstorage.storagespec import ExternalStorageSpec

            parsed = ExternalStorageSpec.model_validate(spec)
            policy = put_only_policy(bucket, sorted(set(effective_prefixes(parsed).values())))
        else:
            policy = readwrite_policy(bucket)
        keys = s3.create_user(f"demo-{doc['metadata']['name']}", policy)
        secret = secrets.get((ns, ref))
        if secret is not None:
            secret.pop("data", None)
            secret["stringData"] = {**(secret.get("stringData") or {}),
                                    **keys.as_secret_data()}
    return out


def _apply_samples(kubectl: list[str], s3: Any) -> list[dict[str, Any]]:
    """Apply manifests/samples/, the S3 ones pointed at the emulator, Secrets before the
    storages that name them; the objects applied."""
    docs = [d for p in sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
            if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if d]
    docs = _s3_samples_for_emulator(docs, s3)
    _say(f"applying {len(docs)} objects from manifests/samples/")
    order = {"Namespace": 0, "Secret": 1, "ExternalStorage": 2, "CallType": 3}
    docs.sort(key=lambda d: order.get(d.get("kind", ""), 9))
    subprocess.run([*kubectl, "apply", "-f", "-"], check=True, text=True,
                   input=yaml.safe_dump_all(docs))
    return docs


def _wait_s3_samples(api: Any, docs: list[dict[str, Any]], timeout: float = 60) -> None:
    """Wait until the S3 samples are Ready, by the API's own rule (Ready=True for the
    current generation); say which are not by the deadline (the demo goes on)."""
    from callstorage.api.readiness import is_ready

    _say("waiting for the S3 storages to be validated")
    deadline = time.monotonic() + timeout
    for d in docs:
        if d.get("kind") != "ExternalStorage" or d["spec"].get("storageType") != "s3":
            continue
        ns, name = d["metadata"].get("namespace", "default"), d["metadata"]["name"]
        try:
            kubeutil.wait_object(api, "externalstorages", ns, name, is_ready,
                                 max(deadline - time.monotonic(), 1), f"{ns}/{name} Ready")
            _say(f"{ns}/{name} is Ready")
        except AssertionError as exc:
            _say(f"{ns}/{name} is not Ready yet: {exc}")


def up(demo: bool) -> int:
    from testbed.endpoints import dev_denylist
    from testbed.s3 import S3Server

    # SIGINT too: a shell that starts the demo in the background makes it ignore SIGINT
    _on_stop_signals(_interrupt)
    # The run directory holds the test CA's key and an admin kubeconfig: it goes whatever
    # happens, and it goes last (the servers log into it until they stop).
    cleanup = contextlib.ExitStack()
    run_dir = Path(tempfile.mkdtemp(prefix="callstorage-demo-"))
    cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
    cp = ControlPlane(run_dir / "cp")
    s3: S3Server | None = None
    operator: Server | None = None
    try:
        _say("building or finding the control-plane binaries (cached after the first run)")
        binaries.ensure_all(["etcd", "kube-apiserver", "kube-controller-manager"])
        cleanup.callback(cp.stop)
        _say("starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1")
        cp.start()
        _say("starting the S3 emulator (moto, SigV4 and IAM policies enforced)")
        s3 = S3Server.start(run_dir / "logs")
        cleanup.callback(s3.stop)
        api = cp.api_client()
        kubeutil.apply_crds(api, ROOT / "crds")
        kubeutil.create_namespace(api, OPERATOR_NAMESPACE, exist_ok=True)
        kubectl = ["kubectl", f"--kubeconfig={cp.kubeconfig}"]
        if demo:
            health = free_port()
            _say("starting the operator (log: %s)" % (run_dir / "logs" / "operator.log"))
            operator = Server("operator", [sys.executable, "-m", "callstorage"],
                              run_dir / "logs", cwd=ROOT, env={
                                  "KUBECONFIG": str(cp.kubeconfig),
                                  "CALLSTORAGE_NAMESPACE": OPERATOR_NAMESPACE,
                                  "CALLSTORAGE_HEALTH_PORT": str(health),
                                  "CALLSTORAGE_METRICS_PORT": str(free_port()),
                                  "CALLSTORAGE_CONNECT_TIMEOUT": "3",
                                  "CALLSTORAGE_READ_TIMEOUT": "5",
                                  # dev only: the emulator listens on loopback
                                  "CALLSTORAGE_ENDPOINT_DENYLIST": ",".join(dev_denylist()),
                                  "PYTHONUNBUFFERED": "1"})
            cleanup.callback(operator.stop)
            wait_for(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), 60,
                     "the operator to start", alive=operator)
            docs = _apply_samples(kubectl, s3)
            _wait_s3_samples(api, docs)
            subprocess.run([*kubectl, "get", "exs,ct", "-A"], check=False)
        _print()
        _say("the cluster is yours; from another shell:")
        _print(next_steps(cp.kubeconfig, s3.endpoint, demo))
        _wait_for_ctrl_c()
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) while starting: clean up what started
    finally:
        # a second Ctrl-C must not cut the cleanup short
        _on_stop_signals(signal.SIG_IGN)
        _say("stopping")
        cleanup.close()
    return 0


def up_node(demo: bool) -> int:
    """A control plane with a real node; with ``demo``, the operator installed by Helm."""
    from testbed import image
    from testbed.node import Node
    from testbed.s3 import S3Server

    _on_stop_signals(_interrupt)
    run_dir = Path(tempfile.mkdtemp(prefix="callstorage-demo-"))
    _say("building or finding the binaries and the operator image (cached after)")
    binaries.ensure_all(["etcd", "kube-apiserver", "kube-controller-manager",
                         "kube-scheduler", "kubelet", "kube-proxy", "pause", "helm"])
    built = image.build()
    _say(f"operator image {built.name} ({built.digest})")
    node = Node()
    cp = ControlPlane(run_dir / "cp", address=node.host_ip, for_node=True)
    s3: S3Server | None = None
    try:
        _say(f"starting the control plane on {node.host_ip} (the host end of the node link)")
        cp.start()
        _say(f"starting the node in network namespace {node.netns} ({node.node_ip}): "
             "containerd, kubelet, kube-proxy")
        node.start(cp)
        node.import_archive(built.archive)
        s3 = S3Server.start(run_dir / "logs", host=node.host_ip)
        kubectl = ["kubectl", f"--kubeconfig={cp.kubeconfig}"]
        if demo:
            ns = OPERATOR_NAMESPACE
            subprocess.run([*kubectl, "create", "namespace", ns], check=True)
            subprocess.run([*kubectl, "label", "namespace", ns,
                            "pod-security.kubernetes.io/enforce=restricted"], check=True)
            helm = [str(binaries.find("helm")), f"--kubeconfig={cp.kubeconfig}"]
            _say("helm install callstorage helm/callstorage (chart defaults: 2 replicas, "
                 "one leader)")
            subprocess.run([*helm, "install", "callstorage", str(ROOT / "helm" / "callstorage"),
                            "-n", ns, "--wait", "--timeout=5m"], check=True,
                           env={**os.environ, "HOME": str(run_dir)})
            subprocess.run([*kubectl, "get", "pods,lease", "-n", ns, "-o", "wide"], check=False)
            docs = _apply_samples(kubectl, s3)
            api = cp.api_client()
            _wait_s3_samples(api, docs)
            api.close()
            subprocess.run([*kubectl, "get", "exs,ct", "-A"], check=False)
        print()
        _say("the cluster is yours; from another shell:")
        print(f"    export KUBECONFIG={cp.kubeconfig}")
        print("    kubectl get nodes,pods -A -o wide")
        print(f"    kubectl -n {OPERATOR_NAMESPACE} logs deploy/callstorage")
        print(f"    S3 emulator: {s3.endpoint}")
        _wait_for_ctrl_c()
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) while starting: clean up what started
    finally:
        _on_stop_signals(signal.SIG_IGN)
        _say("stopping")
        if s3 is not None:
            s3.stop()
        node.stop()
        cp.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        left = node.leftovers()
        if left:
            _say(f"left behind: {left}")
    return 0


def next_steps(kubeconfig: Path, s3_endpoint: str, demo: bool) -> str:
    """What to try from another shell, with this run's kubeconfig."""
    lines = [
        f"    export KUBECONFIG={kubeconfig}",
        "    kubectl get exs,ct -A                      # storages and call types",
        "    kubectl describe exs -n callstorage-demo   # conditions and events",
    ]
    if demo:
        cli = Path(sys.executable).parent / "callstorage"
        with contextlib.suppress(ValueError):  # shorter from the checkout
            cli = cli.relative_to(Path.cwd())
        ns = "-n callstorage-demo"
        lines += [
            "",
            "  the CLI (or `kubectl callstorage ...` with that bin/ directory on PATH):",
            f"    {cli} status -A                      # readiness of everything",
            f"    {cli} check s3-readwrite {ns}   # write a test file now, wait",
            f"    {cli} resolve --call-type livestream {ns}",
            "",
            "  a WriteOnly storage: validated by probe writes only, so keys that may",
            "  only PutObject under its prefixes are enough (s3-writeonly has such keys):",
            f"    {cli} policy s3-writeonly {ns}   # the IAM policy it needs",
            f"    {cli} check s3-writeonly {ns}",
            "    kubectl get exs s3-writeonly -n callstorage-demo -o yaml   # mode, status",
            f"  S3 emulator: {s3_endpoint} (manifests/samples/ shows the objects)",
        ]
    else:
        lines.append(f"    S3 emulator: {s3_endpoint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "up", "demo", "leftovers", "image"])
    parser.add_argument("--node", action="store_true", help="up/demo: with a real node")
    parser.add_argument("--lock", action="store_true", help="image: refresh the locks")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare()
        return 0
    if args.command == "image":
        from testbed import image

        if args.lock:
            image.lock()
        built = image.build()
        _say(f"{built.name} (archive {built.archive})")
        print(built.digest)
        return 0
    if args.command == "leftovers":
        run_id = os.environ.get(RUN_MARKER, "")
        found = leftovers(run_id) if run_id else []
        from testbed import node

        if run_id:
            found += node.leftovers(node.run_tag())
        for line in found:
            print(f"left running: {line}", file=sys.stderr)
        return 1 if found else 0
    if args.node:
        return up_node(demo=args.command == "demo")
    return up(demo=args.command == "demo")


if __name__ == "__main__":
    sys.exit(main())
