"""The CLI without a cluster: argument parsing, help, usage errors, exit codes, ``run``."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest

from callstorage import cli
from callstorage.client import (
    AlreadyExists,
    ApiError,
    ApiUnreachable,
    CallStorageError,
    CallTypeNotFound,
    CheckFailed,
    CheckTimeout,
    InvalidRequest,
    StorageNotFound,
    StorageNotReady,
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No kubeconfig anywhere and not in a pod."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("run", "check", "resolve", "status", "policy", "version"):
        assert command in text
    assert "exit codes:" in text
    for line in ("0  success", "2  usage error", "3  not found", "4  timed out",
                 "5  cannot reach"):
        assert line in text


@pytest.mark.parametrize("command", ["check", "resolve", "status", "policy", "version"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"callstorage {command}" in text
    assert "exit codes:" in text


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["check"],
    ["check", "a", "--timeout", "-1"],
    ["check", "a", "--timeout", "soon"],
    ["check", "a", "-o", "xml"],
    ["version", "-o", "name"],
    ["resolve"],
    ["resolve", "--call-storage", "x"],
    ["status", "-n", "a", "-A"],
    ["policy"],
    ["version", "extra"],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "error:" in err
    assert "Traceback" not in err


def test_connection_flags_work_before_and_after_the_command() -> None:
    parser = cli.build_parser("callstorage")
    before = parser.parse_args(["--kubeconfig", "k1", "--context", "c", "check", "s"])
    after = parser.parse_args(["check", "s", "--kubeconfig", "k2", "-n", "app"])
    neither = parser.parse_args(["check", "s"])
    assert (before.kubeconfig, before.context) == ("k1", "c")
    assert (after.kubeconfig, after.namespace) == ("k2", "app")
    assert not hasattr(neither, "kubeconfig")


def test_parsed_defaults() -> None:
    parser = cli.build_parser("callstorage")
    check = parser.parse_args(["check", "my-s3"])
    assert (check.name, check.timeout, check.output, check.namespace) == \
        ("my-s3", 60.0, "text", None)
    resolve = parser.parse_args(["resolve", "--call-type", "allhands", "-o", "json"])
    assert (resolve.call_type, resolve.call_storage, resolve.require_ready, resolve.output) == \
        ("allhands", None, True, "json")
    assert parser.parse_args(["resolve", "--call-type", "t",
                              "--no-require-ready"]).require_ready is False
    assert parser.parse_args(["status", "-A"]).all_namespaces is True


@pytest.mark.parametrize(("error", "code"), [
    (StorageNotFound(None, "x"), 3),
    (CallTypeNotFound(None, "x"), 3),
    (CheckTimeout(None, "x"), 4),
    (ApiUnreachable(None, "x"), 5),
    (InvalidRequest(None, "x"), 2),
    (CheckFailed("AccessDenied", "x"), 1),
    (StorageNotReady("BucketNotFound", "x"), 1),
    (AlreadyExists(None, "x"), 1),
    (ApiError("Forbidden", "x"), 1),
])
def test_exit_codes(error: CallStorageError, code: int) -> None:
    assert cli.exit_code_for(error) == code


def test_version() -> None:
    assert run("version") == (0, "callstorage 0.1.0\n", "")
    code, out, _ = run("version", "-o", "json")
    assert code == 0
    assert '"version": "0.1.0"' in out


@pytest.mark.usefixtures("no_cluster")
def test_no_kubeconfig_is_exit_5_with_one_line() -> None:
    code, out, err = run("status")
    assert code == 5
    assert out == ""
    assert err.startswith("callstorage: error: no kubeconfig found")
    assert err.count("\n") == 1


def test_unreachable_api_server_is_exit_5(tmp_path: Path) -> None:
    from testbed.procs import free_port

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{free_port()}"}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: app-1}}}}]
current-context: c
""")
    code, _, err = run("--kubeconfig", str(kubeconfig), "status")
    assert code == 5
    assert "cannot reach the Kubernetes API server" in err
    assert "not-a-real-token" not in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("argv", [["check", "stream-s3"], ["check", "Bad_Name"],
                                  ["policy", "stream-s3"]])
def test_reserved_or_invalid_names_are_usage_errors_before_connecting(argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert "ReservedName" in err or "InvalidName" in err


def test_default_namespace_comes_from_the_kubeconfig_context(tmp_path: Path) -> None:
    from callstorage.client import default_namespace

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("""
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: a, context: {cluster: c, user: u, namespace: app-1}}
- {name: b, context: {cluster: c, user: u}}
current-context: a
""")
    assert default_namespace(kubeconfig) == "app-1"
    assert default_namespace(kubeconfig, "b") == "default"


@pytest.mark.parametrize(("argv", "expected"), [
    (["run"], ({}, [])),
    (["run", "--namespace", "a", "-n", "b"], ({}, ["--namespace", "a", "-n", "b"])),
    (["--kubeconfig", "k", "run", "--help"], ({"--kubeconfig": "k"}, ["--help"])),
    (["--kubeconfig=k", "run"], ({"--kubeconfig": "k"}, [])),
    (["check", "run"], None),
    (["--kubeconfig"], None),
])
def test_split_run(argv: list[str], expected: object) -> None:
    assert cli._split_run(argv) == expected


def test_run_delegates_the_rest_to_the_operator_runner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str] | None] = []

    def fake_main(argv: list[str] | None = None) -> int:
        seen.append(argv)
        return 7

    fake = types.ModuleType("callstorage.runner")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "callstorage.runner", fake)
    monkeypatch.setenv("KUBECONFIG", "before")
    assert cli.main(["--kubeconfig", "/tmp/kc", "run", "--namespace", "a"]) == 7
    assert seen == [["--namespace", "a"]]
    import os

    assert os.environ["KUBECONFIG"] == "/tmp/kc"


def test_format_table_aligns_columns() -> None:
    table = cli.format_table(["NAME", "READY"], [["a-long-name", "True"], ["b", "False"]])
    assert table.splitlines() == ["NAME          READY", "a-long-name   True",
                                  "b             False"]


def test_kubectl_plugin_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kubectl-callstorage"])
    assert cli.build_parser().prog == "kubectl callstorage"


# --- output formats, machine-readable errors, -n ------------------------------------------

def _output_choices(command: str) -> tuple[str, ...]:
    sub = cli.build_parser("callstorage")._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    (action,) = [a for a in sub._actions if "--output" in a.option_strings]
    return tuple(action.choices)


@pytest.mark.parametrize("command", ["check", "resolve", "status", "policy"])
def test_yaml_and_name_wherever_json_exists(command: str) -> None:
    assert {"json", "yaml", "name"} <= set(_output_choices(command))


def test_every_command_with_json_has_yaml() -> None:
    """A new command cannot forget it (name only where there is an object to name)."""
    commands = cli.build_parser("callstorage")._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    with_output = [c for c, sub in commands.items()
                   if any("--output" in a.option_strings for a in sub._actions)]
    assert len(with_output) >= 5
    for command in with_output:
        if "json" in _output_choices(command):
            assert "yaml" in _output_choices(command), command


def test_version_has_json_and_yaml_but_no_name() -> None:
    assert _output_choices("version") == ("text", "json", "yaml")
    code, out, _ = run("version", "-o", "yaml")
    assert (code, out) == (0, "version: 0.1.0\n")


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_errors_are_documents_on_stdout_when_json_or_yaml_is_asked(fmt: str) -> None:
    import yaml

    code, out, err = run("status", "-o", fmt)
    assert code == 5
    document = yaml.safe_load(out)  # JSON is YAML
    assert document["error"]["exitCode"] == 5
    assert document["error"]["reason"]
    assert document["error"]["message"].startswith("no kubeconfig found")
    assert err.count("\n") == 1  # and still one line for people
    if fmt == "json":
        assert json.loads(out) == document


def test_usage_errors_are_documents_when_json_is_asked() -> None:
    code, out, err = run("check", "-o", "json")  # no name
    assert code == 2
    assert json.loads(out)["error"] == {
        "reason": "UsageError", "exitCode": 2,
        "message": "the following arguments are required: name"}
    assert err.count("\n") == 1
    code, out, err = run("check", "--output=json", "--timeout", "soon", "x")
    assert code == 2
    assert "--timeout" in json.loads(out)["error"]["message"]


@pytest.mark.usefixtures("no_cluster")
def test_text_errors_leave_stdout_empty() -> None:
    code, out, err = run("status", "-o", "name")
    assert (code, out) == (5, "")
    assert err.startswith("callstorage: error: no kubeconfig found")


@pytest.mark.parametrize("command", [["check", "x"], ["resolve", "--call-type", "t"],
                                     ["status"], ["policy", "x"]])
def test_n_is_the_namespace_in_every_command(command: list[str]) -> None:
    args = cli.build_parser("callstorage").parse_args([*command, "-n", "app-1"])
    assert args.namespace == "app-1"


def test_run_n_is_the_operators_namespace_and_watching_has_its_own_flag() -> None:
    from callstorage.runner import parse_args

    args = parse_args(["-n", "cs", "--watch-namespace", "app-a", "--watch-namespace", "app-b"])
    assert (args.namespace, args.watch_namespace) == ("cs", ["app-a", "app-b"])
    assert parse_args([]).watch_namespace is None
