"""The ``callstorage`` argument parser: global flags, the help epilog, and one place each
command group adds its subcommands through (``Subcommands``)."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from callstorage import __version__
from callstorage.cli import media_commands, storage_commands
from callstorage.cli.common import EXIT_USAGE, MACHINE_OUTPUTS, OUTPUTS, program_name

EPILOG = """\
exit codes:
  0  success
  1  failure reported by the operator or the API server (check failed, storage not
     ready, request refused)
  2  usage error (unknown option, missing argument, invalid or reserved name)
  3  not found (ExternalStorage, CallType, or the platform storage)
  4  timed out waiting for the operator
  5  cannot reach, or authenticate to, the Kubernetes API server
  With -o json or -o yaml, an error is also printed to stdout as
  {"error": {"reason": ..., "message": ..., "exitCode": ...}}.

environment:
  KUBECONFIG                    kubeconfig file(s), as for kubectl (default ~/.kube/config,
                                else the in-cluster service account)
  CALLSTORAGE_NAMESPACE         the operator's namespace, home of the platform storage
                                (default callstorage-system)
  CALLSTORAGE_PLATFORM_STORAGE  the platform storage that stream-s3 means
                                (default platform-default)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class Subcommands:
    """Where a command group adds its subcommands: each gets the connection flags and the
    epilog, and the shared ``-n`` and ``-o`` flags are spelled once."""

    def __init__(self, commands: argparse._SubParsersAction[Parser],
                 connection: Parser) -> None:
        self._commands = commands
        self._connection = connection

    def command(self, name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return self._commands.add_parser(
            name, help=help_, description=textwrap.fill(description, 78),
            parents=[self._connection], epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter)

    @staticmethod
    def namespace_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", metavar="NS",
                       help="namespace (the application); default: the context's")

    @staticmethod
    def output_flag(p: argparse.ArgumentParser, choices: Sequence[str] = OUTPUTS,
                    default: str = "text") -> None:
        p.add_argument("-o", "--output", choices=choices, default=default,
                       help=f"output format: {', '.join(choices)} (default: {default})")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand (exposed for tests and docs)."""

    # Connection flags work before or after the subcommand, as with kubectl; SUPPRESS
    # keeps a subcommand's default from overwriting a value given before it.
    connection = Parser(add_help=False)
    connection.add_argument("--kubeconfig", default=argparse.SUPPRESS, metavar="PATH",
                            help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                                 "in-cluster)")
    connection.add_argument("--context", default=argparse.SUPPRESS,
                            help="kubeconfig context to use (default: the current one)")
    parser = Parser(
        prog=prog or program_name(), parents=[connection], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Manage and inspect where call recordings and transcriptions are\n"
                    "stored (ExternalStorage and CallType objects).")
    parser.add_argument("--version", action="version", version=f"callstorage {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=Parser)
    commands.add_parser("run", help="run the operator (the remaining arguments go to it; "
                        "see 'run --help')", add_help=False)
    sub = Subcommands(commands, connection)
    storage_commands.add_parsers(sub)
    media_commands.add_parsers(sub)
    _add_tool_parsers(sub)
    return parser


def _add_tool_parsers(sub: Subcommands) -> None:
    """``version`` and ``completion``: about the tool itself, not the cluster."""
    version = sub.command("version", "print the version", "Print the callstorage version.")
    # kubectl version has no -o name either: a version is not a resource
    sub.output_flag(version, ("text", *MACHINE_OUTPUTS))

    completion = sub.command(
        "completion", "print a shell completion script",
        "Print a completion script for bash or zsh. bash: "
        "source <(callstorage completion bash), or save it in "
        "~/.local/share/bash-completion/completions/callstorage. zsh: "
        "source <(callstorage completion zsh). It completes commands, "
        "flags, their values, and ExternalStorage names (through kubectl).")
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
