"""``callstorage completion bash|zsh``: the script, sourced into a real bash, completes
commands, flags and flag values (what needs a cluster is in tests/integration/test_cli.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from callstorage import cli

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["completion", shell]) == 0
    return capsys.readouterr().out


def complete(path: Path, line: str) -> list[str]:
    """COMPREPLY for the command line ``line`` (the cursor at its end)."""
    program = """
        source "$1"
        read -ra COMP_WORDS <<< "$2"
        [[ "$2" == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _callstorage
        printf '%s\\n' "${COMPREPLY[@]}"
    """
    result = subprocess.run(["bash", "-c", program, "_", str(path), line], text=True,
                            capture_output=True, timeout=30, check=True)
    return [w for w in result.stdout.splitlines() if w]


@pytest.fixture
def bash_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "callstorage.bash"
    path.write_text(script("bash", capsys))
    return path


@pytest.mark.parametrize(("line", "expected"), [
    ("callstorage ", ["run", "check", "resolve", "status", "policy", "upload", "url",
                      "version", "completion", "--kubeconfig", "--context", "--help",
                      "--version"]),
    ("callstorage st", ["status"]),
    ("kubectl-callstorage --context c po", ["policy"]),
    ("callstorage status -o ", ["text", "json", "yaml", "name"]),
    ("callstorage policy x --output ", ["json", "yaml", "name"]),
    ("callstorage version -o ", ["text", "json", "yaml"]),
    ("callstorage completion ", ["bash", "zsh"]),
    ("callstorage check x --timeout ", []),
    ("callstorage run --", []),
])
def test_bash_completes(bash_script: Path, line: str, expected: list[str]) -> None:
    assert complete(bash_script, line) == expected


def test_bash_completes_every_flag_of_a_command(bash_script: Path) -> None:
    flags = complete(bash_script, "callstorage check x --")
    assert set(flags) >= {"--namespace", "--output", "--timeout", "--quiet", "--kubeconfig",
                          "--context", "--help"}
    assert "--all-namespaces" not in flags  # status's, not check's
    assert "-A" in complete(bash_script, "callstorage status -")


def test_zsh_script_loads_the_bash_function_through_bashcompinit(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = script("zsh", capsys)
    assert text.splitlines()[3] == "autoload -U +X bashcompinit && bashcompinit"
    assert "complete -F _callstorage callstorage kubectl-callstorage" in text


def test_kubectl_complete_answers_in_cobras_format(capsys: pytest.CaptureFixture[str]) -> None:
    from callstorage.completion import kubectl_complete

    assert kubectl_complete(["__complete", "version", "-o", ""]) == 0
    assert capsys.readouterr().out == "text\njson\nyaml\n:4\n"
