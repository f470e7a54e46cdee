"""What every ``callstorage`` command shares: exit codes, output formats, the program name,
and the ``Context`` a command runs in."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from callstorage.client import CallStorageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_UNREACHABLE = 5

# -o values: kubectl's names. "name" prints kubectl-style resource/name lines.
MACHINE_OUTPUTS = ("json", "yaml")
OUTPUTS = ("text", *MACHINE_OUTPUTS, "name")
STORAGE_RESOURCE = "externalstorage.callstorage.io"
CALL_TYPE_RESOURCE = "calltype.callstorage.io"


def program_name() -> str:
    """How the user invoked us: ``kubectl callstorage`` as a kubectl plugin."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "callstorage"
    # Run by kubectl as a plugin: show what the user typed.
    return "kubectl callstorage" if name.startswith("kubectl-") else "callstorage"


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def exit_code_for(error: CallStorageError) -> int:
    """The documented exit code of an error."""
    from callstorage.client import (
        ApiUnreachable,
        CheckTimeout,
        InvalidRequest,
        NotFoundError,
    )

    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, CheckTimeout):
        return EXIT_TIMEOUT
    if isinstance(error, ApiUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(error, InvalidRequest):
        return EXIT_USAGE
    return EXIT_FAILED


class Context:
    """What every command needs: the parsed flags, output streams, and a lazily built
    API client (``version`` never touches the cluster)."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.kubeconfig: str | None = getattr(args, "kubeconfig", None)
        self.context: str | None = getattr(args, "context", None)
        self._api: ApiClient | None = None

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            from callstorage.client import api_client_from_config

            self._api = api_client_from_config(self.kubeconfig, self.context)
        return self._api

    @property
    def namespace(self) -> str:
        given: str | None = getattr(self.args, "namespace", None)
        if given:
            return given
        from callstorage.client import default_namespace

        return default_namespace(self.kubeconfig, self.context)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=False), file=self.out)

    @property
    def output(self) -> str:
        return str(getattr(self.args, "output", "text"))

    def document(self, value: Any) -> None:
        """``value`` as the JSON or YAML document -o asks for."""
        if self.output == "yaml":
            print(yaml_text(value), file=self.out, end="")
        else:
            self.json(value)

    def names(self, *names: str) -> None:
        for name in names:
            print(name, file=self.out)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def yaml_text(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False))
