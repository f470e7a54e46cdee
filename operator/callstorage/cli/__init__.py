"""The ``callstorage`` command (also the kubectl plugin ``kubectl callstorage``).

Commands for people and scripts: ``check`` a storage and wait for the operator's answer,
``resolve`` where a call's recordings go, ``status`` of storages and call types,
``policy`` (the least-privilege grant a storage needs), ``upload`` a call's media and
print a ``url`` to read it back, ``version``, ``completion`` (a shell completion script),
and ``run`` (the operator itself). Results go to stdout (``-o json|yaml|name`` for
machines), progress and errors to stderr, one line per error and never a traceback; the
exit code says what went wrong. With ``-o json`` or ``-o yaml`` an error is also a
document on stdout, so a script that parses the output always gets one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from callstorage import __version__
from callstorage.cli import media_commands, storage_commands
from callstorage.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    MACHINE_OUTPUTS,
    Context,
    exit_code_for,
    program_name,
    yaml_text,
)
from callstorage.cli.parser import build_parser
from callstorage.cli.storage_commands import format_table

__all__ = ["build_parser", "exit_code_for", "format_table", "main"]

_GLOBAL_WITH_VALUE = ("--kubeconfig", "--context")


def cmd_version(ctx: Context) -> int:
    if ctx.args.output in MACHINE_OUTPUTS:
        ctx.document({"version": __version__})
    else:
        ctx.print(f"callstorage {__version__}")
    return EXIT_OK


def cmd_completion(ctx: Context) -> int:
    from callstorage.completion import script

    ctx.print(script(build_parser("callstorage"), ctx.args.shell))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Context], int]] = {
    "check": storage_commands.cmd_check,
    "resolve": storage_commands.cmd_resolve,
    "status": storage_commands.cmd_status,
    "policy": storage_commands.cmd_policy,
    "upload": media_commands.cmd_upload,
    "url": media_commands.cmd_url,
    "version": cmd_version,
    "completion": cmd_completion,
}


def _asked_output(argv: Sequence[str]) -> str | None:
    """The -o value in ``argv``, read without argparse (which may be what failed)."""
    found = None
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--output="):
            found = arg.partition("=")[2]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            found = arg[2:].lstrip("=")
    return found


def _error(err: TextIO, out: TextIO, output: str | None, reason: str, message: str,
           code: int, line: str | None = None) -> int:
    """One line on stderr; with -o json|yaml also a document on stdout. Returns ``code``."""
    print(line or f"{program_name()}: error: {message} ({reason})", file=err)
    if output in MACHINE_OUTPUTS:
        doc = {"error": {"reason": reason, "message": message, "exitCode": code}}
        text = yaml_text(doc) if output == "yaml" else json.dumps(doc, indent=2) + "\n"
        print(text, file=out, end="")
    return code


def _split_run(argv: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """If the command is ``run``, the connection flags before it and the operator's own
    arguments after it. argparse cannot hand over arguments that look like options."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_WITH_VALUE:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            flags[name] = value
            i += 1
            continue
        if arg == "run":
            return flags, argv[i + 1:]
        return None
    return None


def _run_operator(flags: dict[str, str], rest: list[str], err: TextIO) -> int:
    if "--context" in flags:
        print(f"{program_name()}: error: --context is not supported by run; use a kubeconfig "
              "whose current context is the cluster", file=err)
        return EXIT_USAGE
    if "--kubeconfig" in flags:
        os.environ["KUBECONFIG"] = flags["--kubeconfig"]
    from callstorage.runner import main as run_main  # heavy (kopf): only when running

    return run_main(rest)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Entry point of ``callstorage`` and ``kubectl-callstorage``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    run = _split_run(argv)
    if run is not None:  # before the client package: the operator never loads `kubernetes`
        return _run_operator(*run, err=err)
    from callstorage.client import CallStorageError
    asked = _asked_output(argv)
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        text = usage.getvalue()
        if code == EXIT_USAGE and asked in MACHINE_OUTPUTS:
            message = text.strip().rpartition(": error: ")[2].removesuffix(" (see --help)")
            return _error(err, out, asked, "UsageError", message, code, text.strip())
        err.write(text)
        return code
    ctx = Context(args, out, err)
    try:
        return COMMANDS[args.command](ctx)
    except CallStorageError as exc:
        return _error(err, out, ctx.output, str(exc.reason), exc.message, exit_code_for(exc))
    except KeyboardInterrupt:
        print(f"{program_name()}: interrupted", file=err)
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("CALLSTORAGE_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {exc}"
        return _error(err, out, ctx.output, "InternalError", message, EXIT_FAILED,
                      f"{program_name()}: {message} (set CALLSTORAGE_DEBUG=1 for a traceback)")
    finally:
        ctx.close()
