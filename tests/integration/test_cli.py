"""The ``callstorage`` command end to end: a subprocess against the real API server,
operator and S3 emulator, checked on its output and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.client import Client, S3Request
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import free_port
from testbed.s3 import S3Keys, S3Server

BIN = Path(sys.executable).parent
WAIT = 15


def callstorage(*args: str, kubeconfig: Path | None, timeout: float = 60,
                program: str = "callstorage") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CALLSTORAGE_DEBUG")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    env["CALLSTORAGE_NAMESPACE"] = "callstorage-system"
    return subprocess.run([str(BIN / program), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def assert_one_error_line(result: subprocess.CompletedProcess[str], *secret: str) -> None:
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for value in secret:
        assert value not in result.stderr
        assert value not in result.stdout


@pytest.fixture
def kc(control_plane: ControlPlane) -> Path:
    path: Path = control_plane.kubeconfig
    return path


def s3(s3_server: S3Server, keys: S3Keys | None) -> S3Request:
    return S3Request("us-east-1", keys.access_key_id if keys else None,
                     keys.secret_access_key if keys else None, s3_server.endpoint, True)


# --- no cluster needed ---------------------------------------------------------------------


def test_help_documents_commands_and_exit_codes() -> None:
    result = callstorage("--help", kubeconfig=None)
    assert result.returncode == 0
    for text in ("check", "resolve", "status", "policy", "version", "run", "exit codes:",
                 "4  timed out", "5  cannot reach", "--kubeconfig"):
        assert text in result.stdout
    plugin = callstorage("--help", kubeconfig=None, program="kubectl-callstorage")
    assert plugin.returncode == 0
    assert plugin.stdout.startswith("usage: kubectl callstorage")


def test_kubectl_finds_the_plugin() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["kubectl", "callstorage", "version"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("callstorage ")


@pytest.mark.parametrize("args", [(), ("check",), ("resolve", "-n", "x"), ("nope",),
                                  ("check", "a", "--timeout", "0"), ("status", "-A", "-n", "x")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = callstorage(*args, kubeconfig=None)
    assert result.returncode == 2
    assert_one_error_line(result)


def test_unreachable_api_server_exits_5(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{free_port()}"}}}}]
users: [{{name: u, user: {{token: secret-token-value}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    result = callstorage("status", kubeconfig=kubeconfig)
    assert result.returncode == 5
    assert "cannot reach the Kubernetes API server" in result.stderr
    assert_one_error_line(result, "secret-token-value")


# --- against the API server ----------------------------------------------------------------


def test_unknown_names_exit_3(kc: Path, namespace: str) -> None:
    for args in (("check", "nope"), ("policy", "nope"), ("resolve", "--call-type", "nope")):
        result = callstorage(*args, "-n", namespace, kubeconfig=kc)
        assert result.returncode == 3, (args, result.stderr)
        assert "not found" in result.stderr
        assert_one_error_line(result)


@pytest.mark.usefixtures("operator")
def test_check_prints_the_object_and_progress(
    kube_api: Any, kc: Path, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    Client(namespace, kube_api).create_external_storage(
        name="my-s3", storage_type="s3", bucket=bucket, path="checks",
        aws_s3=s3(s3_server, rw_keys))
    result = callstorage("check", "my-s3", "-n", namespace, kubeconfig=kc)
    assert result.returncode == 0, result.stderr
    written = result.stdout.strip()
    key = written.split(f"{bucket}/", 1)[-1]
    assert key.startswith("checks/stream-")
    assert key.endswith(".md")
    assert key in s3_server.list_keys(bucket, "checks/")
    assert "waiting for the operator" in result.stderr
    as_json = callstorage("check", "my-s3", "-n", namespace, "-o", "json", "-q",
                          kubeconfig=kc)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["succeeded"] is True
    assert answer["object"] != written
    assert as_json.stderr == ""
    for out in (result, as_json):
        assert rw_keys.secret_access_key not in out.stdout + out.stderr


@pytest.mark.usefixtures("operator")
def test_failing_check_exits_1_and_silent_operator_exits_4(
    kube_api: Any, kc: Path, namespace: str, s3_server: S3Server, bucket: str,
    credential_values: set[str],
) -> None:
    list_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket"],
         "Resource": f"arn:aws:s3:::{bucket}"}]}
    denied = s3_server.create_user(f"ro-{namespace}", list_only)
    credential_values.update({denied.access_key_id, denied.secret_access_key})
    Client(namespace, kube_api).create_external_storage(
        name="ro", storage_type="s3", bucket=bucket, aws_s3=s3(s3_server, denied))
    result = callstorage("check", "ro", "-n", namespace, "--timeout", str(WAIT), kubeconfig=kc)
    assert result.returncode == 1, result.stderr
    assert "check of" in result.stderr
    assert "failed" in result.stderr
    assert_one_error_line(result, denied.secret_access_key, denied.access_key_id)
    # a timeout too short for any operator
    result = callstorage("check", "ro", "-n", namespace, "--timeout", "0.000001",
                         kubeconfig=kc)
    assert result.returncode == 4
    assert_one_error_line(result)


@pytest.mark.usefixtures("operator")
def test_resolve_and_status(
    kube_api: Any, kc: Path, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    cs = Client(namespace, kube_api)
    cs.create_external_storage(name="good", storage_type="s3", bucket=bucket, path="media",
                               aws_s3=s3(s3_server, rw_keys), prefixes={"audio": "sound"})
    cs.create_external_storage(name="broken", storage_type="s3", bucket=f"no-{bucket}",
                               aws_s3=s3(s3_server, rw_keys))
    cs.update_call_type("allhands", external_storage="good")
    cs.update_call_type("fragile", external_storage="broken")
    storages.wait_ready(kube_api, EXS, namespace, "good", "True", timeout=WAIT)
    # the keys' policy names another bucket: AccessDenied, whatever the reason, not Ready
    broken = storages.wait_ready(kube_api, EXS, namespace, "broken", "False", timeout=WAIT)
    reason = storages.condition(broken)["reason"]

    result = callstorage("resolve", "--call-type", "allhands", "-n", namespace, "-o", "json",
                         kubeconfig=kc)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert {k: resolved[k] for k in ("namespace", "name", "source", "storageType", "bucket",
                                     "accessMode", "ready")} == {
        "namespace": namespace, "name": "good", "source": "CallType", "storageType": "s3",
        "bucket": bucket, "accessMode": "ReadWrite", "ready": True}
    assert resolved["prefixes"] == {"audio": "sound", "video": "media",
                                    "transcript": "media", "metadata": "media"}

    text = callstorage("resolve", "--call-type", "allhands", "--call-storage", "broken",
                       "-n", namespace, kubeconfig=kc)
    assert text.returncode == 1  # resolved, but not Ready
    assert "storage:     " in text.stdout
    assert f"{namespace}/broken" in text.stdout
    assert "source:      Call" in text.stdout
    assert reason in text.stderr
    assert_one_error_line(text)
    lenient = callstorage("resolve", "--call-type", "fragile", "--no-require-ready",
                          "-n", namespace, kubeconfig=kc)
    assert lenient.returncode == 0
    assert f"ready:       False ({reason})" in lenient.stdout

    kubeutil.wait_object(kube_api, "calltypes", namespace, "fragile",
                         lambda o: storages.condition(o).get("reason") == "StorageNotReady",
                         WAIT, "CallType fragile StorageNotReady")
    status = callstorage("status", "-n", namespace, kubeconfig=kc)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "EXTERNAL STORAGES"
    assert lines[1].split()[:4] == ["NAME", "TYPE", "BUCKET", "MODE"]
    good = next(line for line in lines if line.startswith("good "))
    assert "True" in good
    assert "Validated" in good
    assert "allhands" in good
    broken_row = next(line for line in lines if line.startswith("broken "))
    assert reason in broken_row
    fragile = next(line for line in lines if line.startswith("fragile "))
    assert "StorageNotReady" in fragile
    assert rw_keys.secret_access_key not in status.stdout

    everywhere = callstorage("status", "-A", "-o", "json", kubeconfig=kc)
    assert everywhere.returncode == 0
    listed = json.loads(everywhere.stdout)
    mine = [s for s in listed["externalStorages"] if s["namespace"] == namespace]
    assert sorted(s["name"] for s in mine) == ["broken", "good"]
    assert sorted(c["name"] for c in listed["callTypes"] if c["namespace"] == namespace) == \
        ["allhands", "fragile"]
    table = callstorage("status", "-A", kubeconfig=kc)
    assert table.stdout.splitlines()[1].startswith("NAMESPACE")


@pytest.mark.usefixtures("operator")
def test_policy_is_enough_for_the_operator_and_nothing_more(
    kube_api: Any, kc: Path, namespace: str, s3_server: S3Server, bucket: str,
    credential_values: set[str],
) -> None:
    """The printed WriteOnly policy, given to a real IAM user, lets the operator validate
    (a probe under each prefix) and check (the path), and denies everything else."""
    cs = Client(namespace, kube_api)
    prefixes = {"audio": "rec/audio", "video": "rec/video", "transcript": "text"}
    cs.create_external_storage(name="wo", storage_type="s3", bucket=bucket, path="meta",
                               access_mode="WriteOnly", prefixes=prefixes,
                               aws_s3=s3(s3_server, None))
    result = callstorage("policy", "wo", "-n", namespace, kubeconfig=kc)
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)
    assert "AWS IAM identity policy" in result.stderr
    keys = s3_server.create_user(f"wo-{namespace}", policy)
    credential_values.update({keys.access_key_id, keys.secret_access_key})

    user = s3_server.client("s3", keys)
    for prefix in ("rec/audio", "rec/video", "text", "meta"):
        user.put_object(Bucket=bucket, Key=f"{prefix}/call1_file", Body=b"x")
    for key in ("elsewhere/call1_audio.wav", "rec/call1_audio.wav", "recx/audio/a"):
        with pytest.raises(Exception, match="AccessDenied"):
            user.put_object(Bucket=bucket, Key=key, Body=b"x")
    with pytest.raises(Exception, match=r"AccessDenied|Forbidden|403"):
        user.get_object(Bucket=bucket, Key="rec/audio/call1_file")

    cs.update_external_storage("wo", aws_s3=s3(s3_server, keys))
    storages.wait_ready(kube_api, EXS, namespace, "wo", "True", "Validated", timeout=WAIT)
    check = callstorage("check", "wo", "-n", namespace, "-q", kubeconfig=kc)
    assert check.returncode == 0, check.stderr
    assert "meta/stream-" in check.stdout


def test_policy_for_other_providers_is_printed(kube_api: Any, kc: Path, namespace: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, EXS, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "az"},
        "spec": {"storageType": "abs", "bucket": "recordings", "accessMode": "WriteOnly",
                 "path": "calls",
                 "abs": {"accountName": "myaccount", "credentialsSecretRef": {"name": "az"}}}})
    result = callstorage("policy", "az", "-n", namespace, "--member", "0000-aaaa",
                         kubeconfig=kc)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["roleAssignment"]["assignee"] == "0000-aaaa"
    assert "calls/" in document["roleAssignment"]["condition"]
    assert "Azure role assignment" in result.stderr


# --- output formats and completion against the API server ------------------------------------

def _storage(custom: Any, namespace: str, name: str) -> None:
    custom.create_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, EXS, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": name},
        "spec": {"storageType": "abs", "bucket": "recordings", "accessMode": "WriteOnly",
                 "abs": {"accountName": "myaccount", "credentialsSecretRef": {"name": "az"}}}})


def test_yaml_name_and_error_documents(kube_api: Any, kc: Path, namespace: str) -> None:
    import yaml

    _storage(client.CustomObjectsApi(kube_api), namespace, "az")
    names = callstorage("status", "-n", namespace, "-o", "name", kubeconfig=kc)
    assert names.returncode == 0, names.stderr
    assert names.stdout == "externalstorage.callstorage.io/az\n"
    # kubectl takes what -o name prints
    got = subprocess.run(["kubectl", f"--kubeconfig={kc}", "get", "-n", namespace,
                          names.stdout.strip(), "-o", "name"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert got.stdout == names.stdout
    as_yaml = callstorage("status", "-n", namespace, "-o", "yaml", kubeconfig=kc)
    as_json = callstorage("status", "-n", namespace, "-o", "json", kubeconfig=kc)
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    policy_yaml = callstorage("policy", "az", "-n", namespace, "-o", "yaml", kubeconfig=kc)
    policy_json = callstorage("policy", "az", "-n", namespace, kubeconfig=kc)
    assert policy_yaml.returncode == policy_json.returncode == 0, policy_yaml.stderr
    assert yaml.safe_load(policy_yaml.stdout) == json.loads(policy_json.stdout)
    assert callstorage("policy", "az", "-n", namespace, "-o", "name",
                       kubeconfig=kc).stdout == "externalstorage.callstorage.io/az\n"

    missing = callstorage("check", "nope", "-n", namespace, "-o", "json", "--timeout", "5",
                          kubeconfig=kc)
    assert missing.returncode == 3
    error = json.loads(missing.stdout)["error"]
    assert error["exitCode"] == 3
    assert "nope" in error["message"]
    assert_one_error_line(missing)


def test_completion_offers_names_from_the_cluster(kube_api: Any, kc: Path,
                                                  namespace: str, tmp_path: Path) -> None:
    custom = client.CustomObjectsApi(kube_api)
    for name in ("az-one", "az-two"):
        _storage(custom, namespace, name)
    script = tmp_path / "callstorage.bash"
    script.write_text(callstorage("completion", "bash", kubeconfig=None).stdout)

    def complete(line: str) -> list[str]:
        program = """
            source "$1"
            read -ra COMP_WORDS <<< "$2"
            [[ "$2" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
            _callstorage
            printf '%s\\n' "${COMPREPLY[@]}"
        """
        env = {**os.environ, "KUBECONFIG": str(kc)}
        result = subprocess.run(["bash", "-c", program, "_", str(script), line], env=env,
                                capture_output=True, text=True, timeout=60, check=True)
        return [w for w in result.stdout.splitlines() if w]

    assert complete(f"callstorage check -n {namespace} az") == ["az-one", "az-two"]
    assert complete(f"callstorage policy --namespace={namespace} az-t") == ["az-two"]
    assert namespace in complete("callstorage status -n ")
    assert complete(f"callstorage --kubeconfig {kc} check -n {namespace} az-o") == ["az-one"]

    # kubectl callstorage <TAB>: kubectl asks kubectl_complete-callstorage (kubectl 1.26+)
    env = {**os.environ, "KUBECONFIG": str(kc),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for words, expected in ((["ch"], ["check"]),
                            (["check", "-n", namespace, "az-t"], ["az-two"])):
        answer = subprocess.run(["kubectl", "__complete", "callstorage", *words], env=env,
                                capture_output=True, text=True, timeout=60, check=True)
        assert answer.stdout.splitlines() == [*expected, ":4"], answer.stderr
