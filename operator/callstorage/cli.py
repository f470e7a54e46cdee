"""The ``callstorage`` command (also the kubectl plugin ``kubectl callstorage``).

Commands for people and scripts: ``check`` a storage and wait for the operator's answer,
``resolve`` where a call's recordings go, ``status`` of storages and call types,
``policy`` (the least-privilege grant a storage needs), ``version``, and ``run`` (the
operator itself). Results go to stdout (``-o json`` for machines), progress and errors to
stderr, one line per error and never a traceback; the exit code says what went wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from callstorage import __version__

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from callstorage.client import CallStorageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_UNREACHABLE = 5

EPILOG = """\
exit codes:
  0  success
  1  failure reported by the operator or the API server (check failed, storage not
     ready, request refused)
  2  usage error (unknown option, missing argument, invalid or reserved name)
  3  not found (ExternalStorage, CallType, or the platform storage)
  4  timed out waiting for the operator
  5  cannot reach, or authenticate to, the Kubernetes API server

environment:
  KUBECONFIG                    kubeconfig file(s), as for kubectl (default ~/.kube/config,
                                else the in-cluster service account)
  CALLSTORAGE_NAMESPACE         the operator's namespace, home of the platform storage
                                (default callstorage-system)
  CALLSTORAGE_PLATFORM_STORAGE  the platform storage that stream-s3 means
                                (default platform-default)
"""

_GLOBAL_WITH_VALUE = ("--kubeconfig", "--context")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "callstorage"
    # Run by kubectl as a plugin: show what the user typed.
    return "kubectl callstorage" if name.startswith("kubectl-") else "callstorage"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand (exposed for tests and docs)."""
    prog = prog or _prog()
    # Connection flags work before or after the subcommand, as with kubectl; SUPPRESS
    # keeps a subcommand's default from overwriting a value given before it.
    connection = _Parser(add_help=False)
    connection.add_argument("--kubeconfig", default=argparse.SUPPRESS, metavar="PATH",
                            help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                                 "in-cluster)")
    connection.add_argument("--context", default=argparse.SUPPRESS,
                            help="kubeconfig context to use (default: the current one)")

    def namespace_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", metavar="NS",
                       help="namespace (the application); default: the context's")

    def output_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                       help="output format (default: text)")

    parser = _Parser(
        prog=prog, parents=[connection], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Manage and inspect where call recordings and transcriptions are\n"
                    "stored (ExternalStorage and CallType objects).")
    parser.add_argument("--version", action="version", version=f"callstorage {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_, description=textwrap.fill(description, 78), parents=[connection],
            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    commands.add_parser("run", help="run the operator (the remaining arguments go to it; "
                        "see 'run --help')", add_help=False)

    check = command("check", "ask the operator to write a test file into a storage and "
                    "wait for the result",
                    "Set the check annotation on an ExternalStorage; the operator uploads "
                    "a new {path}/stream-<uuid>.md and reports it. Prints the object "
                    "written; exit 1 if the upload failed, 4 if no answer came in time.")
    check.add_argument("name", help="ExternalStorage name")
    namespace_flag(check)
    check.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the operator (default: 60)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    output_flag(check)

    resolve = command("resolve", "show which storage a call's recordings go to",
                      "Apply the selection order: the call-level storage, else the call "
                      "type's externalStorage, else the platform storage (stream-s3). "
                      "Exit 1 if the storage is not Ready (unless --no-require-ready).")
    resolve.add_argument("--call-type", required=True, metavar="TYPE", help="call type")
    resolve.add_argument("--call-storage", metavar="NAME",
                         help="storage named for the call (recording_external_storage / "
                              "transcription_external_storage)")
    namespace_flag(resolve)
    resolve.add_argument("--require-ready", action=argparse.BooleanOptionalAction,
                         default=True, help="exit 1 when the storage is not Ready "
                                            "(default: yes)")
    output_flag(resolve)

    status = command("status", "list storages and call types with their readiness",
                     "Tables of ExternalStorages and CallTypes: readiness, reason, which "
                     "call types use which storage.")
    scope = status.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", metavar="NS",
                       help="namespace (the application); default: the context's")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="every namespace")
    output_flag(status)

    policy = command("policy", "print the least-privilege policy a storage's credentials "
                     "need",
                     "Print the provider grant for the storage's effective prefixes and "
                     "access mode: an AWS IAM policy, GCS bucket IAM bindings, or an "
                     "Azure role assignment. The JSON goes to stdout, notes to stderr.")
    policy.add_argument("name", help="ExternalStorage name")
    namespace_flag(policy)
    policy.add_argument("--member", metavar="PRINCIPAL",
                        help="GCS member or Azure assignee to put in the grant "
                             "(default: a placeholder)")

    version = command("version", "print the version", "Print the callstorage version.")
    output_flag(version)
    return parser


def _positive_float(value: str) -> float:
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


class _Context:
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

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def _cmd_check(ctx: _Context) -> int:
    from callstorage.client import CheckFailed, Client, check_storage_name

    args = ctx.args
    check_storage_name(args.name)  # before connecting: a bad name is a usage error
    namespace = ctx.namespace
    where = f"{namespace}/{args.name}"
    if not args.quiet:
        ctx.note(f"checking ExternalStorage {where}: waiting for the operator "
                 f"(up to {args.timeout:g}s)...")

    def progress(elapsed: float) -> None:
        if not args.quiet and elapsed >= 1:
            ctx.note(f"  still waiting ({elapsed:.0f}s)")

    try:
        result = Client(namespace, ctx.api).check_external_storage(
            args.name, timeout=args.timeout, progress=progress)
    except CheckFailed as exc:
        raise type(exc)(exc.reason, f"check of {where} failed: {exc.message}") from None
    if args.output == "json":
        ctx.json(result.to_dict())
    else:
        ctx.print(result.object)
    if not args.quiet:
        ctx.note(f"check succeeded: the operator wrote {result.object}")
    return EXIT_OK


def _cmd_resolve(ctx: _Context) -> int:
    from callstorage.resolution import resolve

    args = ctx.args
    resolved = resolve(ctx.namespace, args.call_type, args.call_storage, api_client=ctx.api)
    if args.output == "json":
        ctx.json(resolved.to_dict())
    else:
        named = f" (named {resolved.requested})" if resolved.requested and \
            resolved.requested != resolved.name else ""
        rows = [
            ("storage", f"{resolved.namespace}/{resolved.name}{named}"),
            ("source", str(resolved.source)),
            ("type", resolved.storage_type),
            ("bucket", resolved.bucket),
            ("access mode", resolved.access_mode),
            ("ready", f"{resolved.ready} ({resolved.reason})" if resolved.reason
             else str(resolved.ready)),
        ]
        if resolved.message:
            rows.append(("message", resolved.message))
        if resolved.terminating:
            rows.append(("terminating", "yes (kept while call types refer to it)"))
        for key, value in rows:
            ctx.print(f"{key + ':':<13}{value}")
        ctx.print("prefixes:")
        for category, prefix in resolved.prefixes.items():
            ctx.print(f"  {category + ':':<12}{prefix or '(bucket root)'}")
    if args.require_ready and not resolved.ready:
        ctx.note(f"{_prog()}: error: ExternalStorage {resolved.namespace}/{resolved.name} "
                 f"is not ready: {resolved.message or resolved.reason} ({resolved.reason})")
        return EXIT_FAILED
    return EXIT_OK


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header, columns padded as kubectl does."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows,
                                                                        strict=False)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in (header, *rows)]
    return "\n".join(lines)


def _cmd_status(ctx: _Context) -> int:
    from callstorage.client import Client

    args = ctx.args
    everywhere = bool(args.all_namespaces)
    namespace = "" if everywhere else ctx.namespace
    client = Client(namespace, ctx.api)
    storages = client.list_external_storage(all_namespaces=everywhere)
    call_types = client.list_call_types(all_namespaces=everywhere)
    if args.output == "json":
        ctx.json({"externalStorages": [s.to_dict() for s in storages],
                  "callTypes": [c.to_dict() for c in call_types]})
        return EXIT_OK
    where = "any namespace" if everywhere else f"namespace {namespace}"
    prefix = ["NAMESPACE"] if everywhere else []
    if storages:
        ctx.print("EXTERNAL STORAGES")
        rows = [[*([s.namespace] if everywhere else []), s.name, s.storage_type, s.bucket,
                 s.access_mode, s.ready_status + (" (Terminating)" if s.terminating else ""),
                 s.reason or "-", ",".join(s.used_by) or "-", _age(s.last_validated_at)]
                for s in storages]
        ctx.print(format_table([*prefix, "NAME", "TYPE", "BUCKET", "MODE", "READY", "REASON",
                                "USED BY", "LAST VALIDATED"], rows))
    else:
        ctx.note(f"No ExternalStorages found in {where}.")
    if call_types:
        if storages:
            ctx.print()
        ctx.print("CALL TYPES")
        rows = []
        for c in call_types:
            resolved = c.resolved_storage or {}
            rows.append([*([c.namespace] if everywhere else []), c.name,
                         c.external_storage or "(platform)", str(resolved.get("name") or "-"),
                         str(resolved.get("source") or "-"), c.ready_status, c.reason or "-"])
        ctx.print(format_table([*prefix, "NAME", "EXTERNAL STORAGE", "RESOLVED", "SOURCE",
                                "READY", "REASON"], rows))
    else:
        ctx.note(f"No CallTypes found in {where}.")
    return EXIT_OK


def _cmd_policy(ctx: _Context) -> int:
    from callstorage.api import InvalidSpecError, effective_prefixes, parse_external_storage
    from callstorage.client import (
        InvalidRequest,
        check_storage_name,
        get_external_storage_object,
    )
    from callstorage.policy import least_privilege_policy
    from callstorage.settings import get_settings
    from callstorage.storagetypes import PROVIDERS

    args = ctx.args
    namespace = ctx.namespace
    check_storage_name(args.name)
    obj = get_external_storage_object(ctx.api, namespace, args.name)
    try:
        spec = parse_external_storage(obj)
    except InvalidSpecError as exc:
        raise InvalidRequest("InvalidSpec", f"ExternalStorage {namespace}/{args.name}: "
                             f"{exc.summary()}") from None
    prefixes = effective_prefixes(spec)
    options = PROVIDERS[spec.storage_type].policy_options(spec.provider)
    policy = least_privilege_policy(
        spec.storage_type, spec.bucket, spec.access_mode, prefixes, path=spec.path,
        check_object_prefix=get_settings().check_object_prefix, member=args.member,
        **options)
    distinct = sorted({p or "(bucket root)" for p in prefixes.values()})
    ctx.note(f"# {policy.kind} for ExternalStorage {namespace}/{args.name} "
             f"({spec.access_mode}; prefixes: {', '.join(distinct)})")
    for line in policy.notes:
        ctx.note(f"# {line}")
    ctx.print(policy.to_json())
    return EXIT_OK


def _cmd_version(ctx: _Context) -> int:
    if ctx.args.output == "json":
        ctx.json({"version": __version__})
    else:
        ctx.print(f"callstorage {__version__}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[_Context], int]] = {
    "check": _cmd_check,
    "resolve": _cmd_resolve,
    "status": _cmd_status,
    "policy": _cmd_policy,
    "version": _cmd_version,
}


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
        print(f"{_prog()}: error: --context is not supported by run; use a kubeconfig "
              "whose current context is the cluster", file=err)
        return EXIT_USAGE
    if "--kubeconfig" in flags:
        os.environ["KUBECONFIG"] = flags["--kubeconfig"]
    from callstorage.runner import main as run_main  # heavy (kopf): only when running

    return run_main(rest)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Entry point of ``callstorage`` and ``kubectl-callstorage``; returns the exit code."""
    from callstorage.client import CallStorageError

    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    run = _split_run(argv)
    if run is not None:
        return _run_operator(*run, err=err)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = _Context(args, out, err)
    try:
        return COMMANDS[args.command](ctx)
    except CallStorageError as exc:
        print(f"{_prog()}: error: {exc.message} ({exc.reason})", file=err)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print(f"{_prog()}: interrupted", file=err)
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("CALLSTORAGE_DEBUG"):
            raise
        print(f"{_prog()}: internal error: {type(exc).__name__}: {exc} "
              "(set CALLSTORAGE_DEBUG=1 for a traceback)", file=err)
        return EXIT_FAILED
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
