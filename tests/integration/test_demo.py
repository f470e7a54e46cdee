"""``make demo`` (``python -m testbed demo``) as a user runs it: its advice, and its cleanup.

The run directory holds the test CA's private key and an admin kubeconfig, so it must go
however the demo ends, even when nobody reads its output any more (``make demo | tee
log`` and Ctrl-C: tee dies first, and the demo's next print hits a closed pipe).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from paths import ROOT
from testbed.procs import RUN_MARKER, leftovers


def _start(command: str, tmp_path: Path, marker: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(tmp_path), RUN_MARKER: marker,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "hack"), str(ROOT / "operator")])}
    return subprocess.Popen([sys.executable, "-m", "testbed", command], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def _read_until(proc: subprocess.Popen[bytes], text: str, timeout: float) -> str:
    """The output up to and including the line with ``text``."""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        if proc.poll() is not None:
            seen += proc.stdout.read() or b""
            raise AssertionError(f"the demo exited ({proc.returncode}):\n{seen.decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} within {timeout}s:\n{seen.decode()}")
        chunk = proc.stdout.read()
        if chunk:
            seen += chunk
        else:
            time.sleep(0.2)
    return seen.decode()


def _run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("callstorage-demo-*"))


@pytest.mark.parametrize(("command", "signum"), [("demo", signal.SIGINT),
                                                 ("up", signal.SIGTERM)])
def test_stopping_with_a_closed_stdout_still_removes_the_run_directory(
        tmp_path: Path, command: str, signum: signal.Signals) -> None:
    marker = f"demo-{uuid.uuid4().hex}"
    proc = _start(command, tmp_path, marker)
    try:
        output = _read_until(proc, "press Ctrl-C", timeout=240)
        (run_dir,) = _run_dirs(tmp_path)
        assert (run_dir / "cp").is_dir()
        assert proc.stdout is not None
        proc.stdout.close()  # the reader (tee) is gone
        proc.send_signal(signum)
        proc.wait(timeout=120)
        assert _run_dirs(tmp_path) == [], "the run directory (CA key, kubeconfig) was left"
        deadline = time.monotonic() + 15
        while leftovers(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leftovers(marker) == []
        if command == "demo":
            # the next steps a new user wants, with this run's paths
            assert f"export KUBECONFIG={run_dir}" in output
            assert "status -A" in output
            assert "check s3-readwrite -n callstorage-demo" in output
            assert "WriteOnly" in output
            assert "policy s3-writeonly -n callstorage-demo" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for line in leftovers(marker):  # only what this test started carries the marker
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
