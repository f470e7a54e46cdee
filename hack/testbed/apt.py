"""Install the Debian packages the node and the image build need, once, with apt.

The real node (kubelet's container runtime, CNI plugins, iptables for kube-proxy) and the
registry-free image build (a base root filesystem from Debian packages, a daemonless
builder) use Debian's own packages; nothing is installed by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# runtime of the node: containerd with its CRI plugin, runc, the CNI plugins (bridge,
# host-local, loopback, portmap), iptables for kube-proxy, nsenter (util-linux)
NODE_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables",
                 "conntrack", "util-linux", "iproute2")
# the operator image: a base rootfs from Debian packages and a builder for the Dockerfile
IMAGE_PACKAGES = ("mmdebstrap", "buildah")


def missing(packages: tuple[str, ...]) -> list[str]:
    """Packages of ``packages`` that dpkg does not list as installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True, text=True, check=False).stdout
    installed = {line.split()[0] for line in out.splitlines()
                 if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure(packages: tuple[str, ...]) -> None:
    """apt-get install whatever of ``packages`` is missing (needs root and apt)."""
    todo = missing(packages)
    if not todo:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(f"these Debian packages are needed: {' '.join(todo)} "
                           "(install them with apt-get as root)")
    print(f"[testbed] apt-get install {' '.join(todo)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo],
                   check=True, env=env)
