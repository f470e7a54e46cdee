"""A real Kubernetes node for the test bed: kubelet, containerd + runc, CNI, kube-proxy.

The node lives in a network namespace of its own, joined to the host by a veth pair, the
way kind puts a node in a container: the workplace allows no address that is neither
loopback nor inside a namespace the test bed made, and the kubelet refuses a loopback node
IP. On the host side of the link sit the API server (``ControlPlane(address=...)``) and
whatever Pods must reach (the S3 emulator); inside sit containerd (so the CNI bridge, the
Pods' veths and kube-proxy's iptables rules all land in the namespace and vanish with it),
the kubelet and kube-proxy. Processes enter the namespace with ``nsenter --net`` only:
``ip netns exec`` would also give them a private mount namespace, and the kubelet's volume
mounts must be visible to runc.

No registry is reachable: the pause image is a static Go program packed here as an OCI
archive, and every image a test runs is imported into containerd (``imagePullPolicy:
Never`` or ``IfNotPresent``).

``stop()`` removes everything: containers, shims, cgroups (under a cgroup root of this run),
mounts, the namespace (and with it the bridge, veths and iptables rules), CNI state;
``leftovers()`` proves it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from testbed import apt, binaries
from testbed.controlplane import ControlPlane
from testbed.procs import RUN_MARKER, Server, wait_for

PAUSE_IMAGE = f"registry.k8s.io/pause:{binaries.PAUSE_VERSION}"
NODE_NAME = "callstorage-node"
POD_CIDR = "10.244.0.0/24"  # inside the node's namespace only
SERVICE_CIDR = "10.0.0.0/24"  # the control plane's --service-cluster-ip-range
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CNI_RESULTS = Path("/var/lib/cni/results")  # libcni's cache; not configurable in containerd 1.6
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Everything a node creates on the host carries this prefix plus a per-run tag.
PREFIX = "csnode"


def run_tag() -> str:
    """Short tag of this test-bed run (``CALLSTORAGE_TESTBED_RUN``), for names on the host."""
    run = os.environ.get(RUN_MARKER, "")
    return hashlib.sha256(run.encode()).hexdigest()[:6] if run else "manual"


def _pick_link_subnet() -> ipaddress.IPv4Network:
    """A /30 for the veth link that no route of the host already covers."""
    routes = subprocess.run(["ip", "-j", "route"], capture_output=True, text=True,
                            check=True).stdout
    used = [ipaddress.ip_network(r["dst"], strict=False) for r in json.loads(routes)
            if r.get("dst") not in (None, "default")]
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}."
                                   f"{random.randrange(0, 256, 4)}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 in 10.200.0.0/13 for the node link")


def _run(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, **kw)


def _oci_archive(name: str, binary: Path, entrypoint: list[str]) -> bytes:
    """A one-layer OCI image archive holding ``binary`` at ``entrypoint[0]``."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        info = tarfile.TarInfo(entrypoint[0].lstrip("/"))
        data = binary.read_bytes()
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    layer_raw = layer_tar.getvalue()
    layer_gz = gzip.compress(layer_raw, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_raw).hexdigest()]},
    }).encode()

    def desc(media: str, blob: bytes) -> dict[str, Any]:
        return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
                "size": len(blob)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer_gz)],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        **desc("application/vnd.oci.image.manifest.v1+json", manifest),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index.encode()}
        for blob in (config, manifest, layer_gz):
            files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
        for path, blob in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(blob), 0
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue()


class Node:
    """One node (kubelet + containerd + kube-proxy) in its own network namespace.

    Create it before the control plane: ``host_ip`` is where the control plane must listen
    (``ControlPlane(address=node.host_ip, for_node=True)``); then ``start(cp)``.
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        apt.ensure(apt.NODE_PACKAGES)
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="callstorage-node-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tag = f"{run_tag()}{os.getpid() % 10000:04d}"
        self.netns = f"{PREFIX}-{self.tag}"
        self.host_if = f"{PREFIX}{self.tag}"[:15]  # interface names: at most 15 bytes
        self.cni_network = f"{PREFIX}-{self.tag}"
        self.cgroup_root = f"/{PREFIX}-{self.tag}"
        net = _pick_link_subnet()
        hosts = list(net.hosts())
        self.host_ip, self.node_ip = str(hosts[0]), str(hosts[1])
        self._servers: list[Server] = []
        self._logs = self.run_dir / "logs"
        self.containerd_sock = self.run_dir / "containerd" / "containerd.sock"
        self._netns_created = False
        self._create_link(net.prefixlen)

    # -- network ---------------------------------------------------------------------

    def _create_link(self, prefixlen: int) -> None:
        _run("ip", "netns", "add", self.netns)
        self._netns_created = True
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
             "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_ip}/{prefixlen}", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        for cmd in (("ip", "addr", "add", f"{self.node_ip}/{prefixlen}", "dev", "eth0"),
                    ("ip", "link", "set", "lo", "up"), ("ip", "link", "set", "eth0", "up"),
                    # No default route: the node reaches the link's host end and nothing
                    # further. Service IPs need a route for the node's own connections
                    # (kube-proxy rewrites them to Pod IPs after the route lookup).
                    ("ip", "route", "add", SERVICE_CIDR, "via", self.host_ip)):
            self.exec(*cmd)
        self.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def exec(self, *argv: str, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's network namespace (only that namespace)."""
        return _run("nsenter", f"--net={self.netns_path}", "--", *argv, check=check,
                    timeout=timeout, input=input)

    def _serve(self, name: str, argv: list[str]) -> Server:
        server = Server(name, ["nsenter", f"--net={self.netns_path}", "--", *argv],
                        self._logs)
        self._servers.append(server)
        return server

    # -- start -----------------------------------------------------------------------

    def start(self, cp: ControlPlane, timeout: float = 120) -> Node:
        """Start containerd, import the pause image, start kubelet and kube-proxy, and wait
        until the Node is Ready."""
        self.cp = cp
        kubelet_bin = binaries.find("kubelet")
        proxy_bin = binaries.find("kube-proxy")
        self._start_containerd()
        self.import_archive(_oci_archive(PAUSE_IMAGE, binaries.find("pause"), ["/pause"]))
        kubelet_kc = cp.issue_client("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        proxy_kc = cp.issue_client("kube-proxy", "system:kube-proxy")
        kubelet_dir = self.run_dir / "kubelet"
        kubelet_dir.mkdir(exist_ok=True)
        resolv = self.run_dir / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False},
                               "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(cp.ca_path)}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failCgroupV1": False,  # this VM has cgroup v1 hierarchies (plus the unified one)
            "failSwapOn": False,
            # Pods without cluster DNS fall back to this file: a nameserver on their own
            # loopback, so a name lookup never leaves the Pod (nothing routes outside)
            "resolvConf": str(resolv),
            "staticPodPath": "",
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            "registerNode": True,
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": True,
        }
        cfg_path = self.run_dir / "kubelet.yaml"
        cfg_path.write_text(json.dumps(config))
        self._mkdir_cgroups()
        kubelet = self._serve("kubelet", [
            str(kubelet_bin), f"--config={cfg_path}", f"--kubeconfig={kubelet_kc}",
            f"--root-dir={kubelet_dir}", f"--cert-dir={kubelet_dir / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.node_ip}", "--v=1",
        ])
        proxy_cfg = self.run_dir / "kube-proxy.yaml"
        proxy_cfg.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(proxy_kc)},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # leave the host-wide conntrack sysctls alone
            "conntrack": {"maxPerCore": 0, "min": 0},
        }))
        self._serve("kube-proxy", [str(proxy_bin), f"--config={proxy_cfg}", "--v=1"])
        api = cp.api_client()
        try:
            from kubernetes import client

            core = client.CoreV1Api(api)

            def ready() -> bool:
                try:
                    node = core.read_node(NODE_NAME)
                except client.ApiException:
                    return False
                # Ready, and the node lifecycle controller lifted the not-ready taint
                return any(c.type == "Ready" and c.status == "True"
                           for c in node.status.conditions or []) and not any(
                    t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])

            wait_for(ready, timeout, f"node {NODE_NAME} Ready and untainted", interval=0.5,
                     alive=kubelet)
        finally:
            api.close()
        return self

    def _start_containerd(self) -> None:
        root = self.run_dir / "containerd"
        cni_conf = self.run_dir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-callstorage.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": self.cni_network,
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.run_dir / "cni-ipam"),
                          "ranges": [[{"subnet": POD_CIDR}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (root / "config.toml").parent.mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{self.containerd_sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # this VM withholds CAP_SYS_RESOURCE: a sandbox may not lower its oom_score_adj
  restrict_oom_score_adj = true
  # pod network namespaces under our state dir, not /run/netns
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
""")
        server = self._serve("containerd", ["containerd", f"--config={root / 'config.toml'}"])
        wait_for(lambda: self.ctr("version", check=False).returncode == 0, 30,
                 "containerd", interval=0.2, alive=server)

    def _mkdir_cgroups(self) -> None:
        """The kubelet's cgroup root in every v1 hierarchy (it creates the levels below)."""
        for hierarchy in self._cgroup_hierarchies():
            top = hierarchy / self.cgroup_root.lstrip("/")
            top.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):  # empty in a new cpuset cgroup
                if (top / knob).exists() and not (top / knob).read_text().strip():
                    (top / knob).write_text((hierarchy / knob).read_text())

    @staticmethod
    def _cgroup_hierarchies() -> list[Path]:
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] in ("cgroup", "cgroup2"):
                found.append(Path(fields[4]))
        return found

    # -- images ----------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run("ctr", f"--address={self.containerd_sock}", "--namespace=k8s.io", *args,
                    check=check, timeout=timeout)

    def import_archive(self, archive: bytes | Path) -> None:
        """Import an image archive (OCI or docker-archive) into the CRI's image store."""
        if isinstance(archive, bytes):
            path = self.run_dir / f"import-{hashlib.sha256(archive).hexdigest()[:12]}.tar"
            path.write_bytes(archive)
        else:
            path = archive
        self.ctr("images", "import", str(path))
        if isinstance(archive, bytes):
            path.unlink()

    def image_ids(self) -> dict[str, str]:
        """Image name -> image id (config digest) as containerd's CRI store has them."""
        out = self.ctr("images", "ls").stdout.splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    # -- stop and leftovers ----------------------------------------------------------

    def stop(self) -> None:
        """Stop everything and remove every trace of the node from the host."""
        by_name = {s.name: s for s in self._servers}
        # containers are killed below anyway: no need for the kubelet to drain them first
        for name in ("kube-proxy", "kubelet"):
            if name in by_name:
                by_name[name].stop(grace=3)
        if "containerd" in by_name and by_name["containerd"].proc.poll() is None:
            self._remove_containers()
            by_name["containerd"].stop(grace=3)
        self._servers.clear()
        self._kill_cgroup_members()
        self._kill_strays()
        self._unmount_all()
        self._remove_cgroups()
        if self._netns_created:
            _run("ip", "netns", "delete", self.netns, check=False)
            self._netns_created = False
        for f in CNI_RESULTS.glob(f"{self.cni_network}-*"):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _remove_containers(self) -> None:
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--all", "--signal=SIGKILL", task, check=False)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _cgroup_dirs(self) -> list[Path]:
        """Every cgroup directory under this node's root, deepest first."""
        dirs: list[Path] = []
        for hierarchy in self._cgroup_hierarchies():
            top = hierarchy / self.cgroup_root.lstrip("/")
            if top.is_dir():
                dirs += [Path(d) for d, _, _ in os.walk(top)]
        return sorted(dirs, key=lambda p: len(p.parts), reverse=True)

    def _kill_cgroup_members(self) -> None:
        for _ in range(50):
            pids = set()
            for d in self._cgroup_dirs():
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _kill_strays(self) -> None:
        """containerd's shims outlive containerd; they carry our run dir in their args."""
        marker = str(self.run_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ProcessLookupError):
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)

    def _mounts(self) -> list[str]:
        base = str(self.run_dir)
        points = [line.split()[4] for line in
                  Path("/proc/self/mountinfo").read_text().splitlines()]
        return [p for p in points if p == base or p.startswith(base + "/")]

    def _unmount_all(self) -> None:
        for _ in range(5):
            mounts = self._mounts()
            if not mounts:
                return
            for point in sorted(mounts, key=len, reverse=True):
                if _run("umount", point, check=False).returncode != 0:
                    _run("umount", "--lazy", point, check=False)

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 10
        while (dirs := self._cgroup_dirs()) and time.monotonic() < deadline:
            for d in dirs:  # deepest first; a parent goes once its children have
                with contextlib.suppress(OSError):
                    d.rmdir()
            if self._cgroup_dirs():
                self._kill_cgroup_members()
                time.sleep(0.1)

    def leftovers(self) -> list[str]:
        """What of this node is still on the host (empty after ``stop()``)."""
        return leftovers(self.tag)

    def logs(self) -> dict[str, str]:
        return {s.name: s.tail() for s in self._servers}


def leftovers(tag: str = "") -> list[str]:
    """Traces a node (of this run's tag, or any) left on the host: network namespaces,
    links, mounts, cgroups, CNI state, and iptables KUBE-* chains in the host's tables."""
    prefix = f"{PREFIX}-{tag}" if tag else f"{PREFIX}-"
    found: list[str] = []
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        found += [f"netns {p.name}" for p in netns_dir.iterdir() if p.name.startswith(prefix)]
    links = _run("ip", "-o", "link", "show", check=False).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if line.split(":")[1].strip().startswith(f"{PREFIX}{tag}")]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if "/callstorage-node-" in point or f"/{prefix}" in point:
            found.append(f"mount {point}")
    for hierarchy in Node._cgroup_hierarchies():
        found += [f"cgroup {p}" for p in hierarchy.glob(f"{prefix}*")]
    if CNI_RESULTS.is_dir():
        found += [f"cni {p}" for p in CNI_RESULTS.glob(f"{prefix}*")]
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            out = _run(tool, check=False).stdout
            found += [f"{tool}: {line}" for line in out.splitlines()
                      if line.startswith(":KUBE-")]
    return found
