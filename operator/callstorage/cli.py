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

import argparse
import contextlib
import datetime as dt
import io
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

# -o values: kubectl's names. "name" prints kubectl-style resource/name lines.
MACHINE_OUTPUTS = ("json", "yaml")
OUTPUTS = ("text", *MACHINE_OUTPUTS, "name")
STORAGE_RESOURCE = "externalstorage.callstorage.io"
CALL_TYPE_RESOURCE = "calltype.callstorage.io"

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

    def output_flag(p: argparse.ArgumentParser, choices: Sequence[str] = OUTPUTS,
                    default: str = "text") -> None:
        p.add_argument("-o", "--output", choices=choices, default=default,
                       help=f"output format: {', '.join(choices)} (default: {default})")

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
    # the policy document is JSON already: that is its text form
    output_flag(policy, ("json", "yaml", "name"), "json")

    _media_commands(command, namespace_flag)

    version = command("version", "print the version", "Print the callstorage version.")
    # kubectl version has no -o name either: a version is not a resource
    output_flag(version, ("text", *MACHINE_OUTPUTS))

    completion = command("completion", "print a shell completion script",
                         "Print a completion script for bash or zsh. bash: "
                         "source <(callstorage completion bash), or save it in "
                         "~/.local/share/bash-completion/completions/callstorage. zsh: "
                         "source <(callstorage completion zsh). It completes commands, "
                         "flags, their values, and ExternalStorage names (through kubectl).")
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    return parser


def _media_commands(command: Callable[[str, str, str], argparse.ArgumentParser],
                    namespace_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    """``upload`` and ``url``: the media path (callstorage.media) from the shell."""
    upload = command(
        "upload", "upload a call's recordings and transcripts to its storage",
        "Resolve the call's storage (call, call type, platform default), write each "
        "FILE=PATH to the key the layout gives ({prefix}/{call id}_{file}), then the "
        "manifest. Prints the stored location (JSON): keep it, 'url' needs it. FILE is a "
        "name of the layout (audio.wav, meeting_recording.mp4, screenshots/a.png, "
        "transcription/<provider>/<id>/raw_transcript.json, ...); PATH '-' reads stdin. "
        "Give the same FILE several times for a recording in parts (each at most 2 "
        "hours): they are stored as <stem>_part001<ext>, ...")
    upload.add_argument("files", nargs="+", metavar="FILE=PATH", help="what to upload")
    upload.add_argument("--call-type", required=True, metavar="TYPE", help="call type")
    upload.add_argument("--call-id", required=True, metavar="ID", help="call (bot) id")
    upload.add_argument("--call-storage", metavar="NAME",
                        help="storage named for the call, if any")
    namespace_flag(upload)
    upload.add_argument("--part-size", type=_positive_float, default=8, metavar="MiB",
                        help="part size of multi-part uploads (default: 8)")
    upload.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="parallel requests (default: 8)")
    upload.add_argument("--output-file", metavar="PATH",
                        help="also write the stored location to PATH")

    url = command(
        "url", "print a time-limited download URL for an uploaded file",
        "Sign a URL (S3 presign, GCS signed URL, Azure SAS) for FILE of the call whose "
        "stored location 'upload' printed, from the bucket it was written to, with the "
        "storage's current credentials, for the call's own namespace (-n) only. Exit 2 for "
        "a forged, edited or old location, 1 for another namespace or a WriteOnly storage "
        "(the error says where the file is), 3 if the storage was deleted.")
    url.add_argument("location", metavar="LOCATION",
                     help="the stored location JSON: a file, or '-' for stdin")
    url.add_argument("file", metavar="FILE", help="file of the call (audio.wav, ...)")
    namespace_flag(url)
    url.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                     help="validity of the URL (default: 3600)")
    url.add_argument("-o", "--output", choices=("text", *MACHINE_OUTPUTS), default="text",
                     help="output format: text, json, yaml (default: text)")


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

    @property
    def output(self) -> str:
        return str(getattr(self.args, "output", "text"))

    def document(self, value: Any) -> None:
        """``value`` as the JSON or YAML document -o asks for."""
        if self.output == "yaml":
            print(_yaml(value), file=self.out, end="")
        else:
            self.json(value)

    def names(self, *names: str) -> None:
        for name in names:
            print(name, file=self.out)

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
    if args.output in MACHINE_OUTPUTS:
        ctx.document(result.to_dict())
    elif args.output == "name":
        ctx.names(f"{STORAGE_RESOURCE}/{args.name}")
    else:
        ctx.print(result.object)
    if not args.quiet:
        ctx.note(f"check succeeded: the operator wrote {result.object}")
    return EXIT_OK


def _cmd_resolve(ctx: _Context) -> int:
    from callstorage.resolution import resolve

    args = ctx.args
    resolved = resolve(ctx.namespace, args.call_type, args.call_storage, api_client=ctx.api)
    if args.output in MACHINE_OUTPUTS:
        ctx.document(resolved.to_dict())
    elif args.output == "name":
        ctx.names(f"{STORAGE_RESOURCE}/{resolved.name}")
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
    if args.output in MACHINE_OUTPUTS:
        ctx.document({"externalStorages": [s.to_dict() for s in storages],
                      "callTypes": [c.to_dict() for c in call_types]})
        return EXIT_OK
    if args.output == "name":
        ctx.names(*(f"{STORAGE_RESOURCE}/{s.name}" for s in storages),
                  *(f"{CALL_TYPE_RESOURCE}/{c.name}" for c in call_types))
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
    from callstorage.api import InvalidSpecError, effective_prefixes
    from callstorage.client import (
        InvalidRequest,
        check_storage_name,
        get_external_storage_object,
    )
    from callstorage.policy import least_privilege_policy
    from callstorage.settings import get_settings
    from callstorage.storagespec import parse_external_storage
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
    if args.output == "name":
        ctx.names(f"{STORAGE_RESOURCE}/{args.name}")
    elif args.output == "yaml":
        ctx.document(policy.document)
    else:
        ctx.print(policy.to_json())
    return EXIT_OK


def _cmd_upload(ctx: _Context) -> int:
    from callstorage.client import InvalidRequest
    from callstorage.media import Artifact, upload_artifacts
    from callstorage.transfer import MiB, TransferOptions

    args = ctx.args
    sources: dict[str, list[Any]] = {}
    for item in args.files:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidRequest("InvalidArtifact", f"{item!r}: expected FILE=PATH")
        sources.setdefault(name, []).append(sys.stdin.buffer if path == "-" else Path(path))
    if args.concurrency < 1:
        raise InvalidRequest("InvalidArgument", "--concurrency must be >= 1")
    artifacts = [Artifact(name, source=paths[0]) if len(paths) == 1 else
                 Artifact(name, parts=paths) for name, paths in sources.items()]
    options = TransferOptions(part_size=int(args.part_size * MiB),
                              concurrency=args.concurrency)
    location = upload_artifacts(ctx.namespace, args.call_type, args.call_id, artifacts,
                                args.call_storage, api_client=ctx.api, options=options)
    text = location.to_json()
    if args.output_file:
        Path(args.output_file).write_text(text + "\n")
    ctx.print(text)
    total = sum(o.size for o in location.objects)
    ctx.note(f"uploaded {len(location.objects)} objects ({total} bytes) to "
             f"{location.provider} bucket {location.bucket} (ExternalStorage "
             f"{location.storage})")
    return EXIT_OK


def _cmd_url(ctx: _Context) -> int:
    from callstorage.client import InvalidRequest
    from callstorage.media import StoredLocation, presigned_url

    args = ctx.args
    try:
        raw = sys.stdin.read() if args.location == "-" else \
            Path(args.location).read_text()
    except OSError as exc:
        raise InvalidRequest("InvalidLocation", f"cannot read {args.location}: "
                             f"{exc.strerror or exc}") from None
    location = StoredLocation.from_json(raw)
    signed = presigned_url(location, args.file, args.expires, namespace=ctx.namespace,
                           api_client=ctx.api)
    if args.output in MACHINE_OUTPUTS:
        ctx.document({"url": signed, "expiresIn": args.expires,
                      "object": location.object_url(args.file)})
    else:
        ctx.print(signed)
    return EXIT_OK


def _cmd_version(ctx: _Context) -> int:
    if ctx.args.output in MACHINE_OUTPUTS:
        ctx.document({"version": __version__})
    else:
        ctx.print(f"callstorage {__version__}")
    return EXIT_OK


def _cmd_completion(ctx: _Context) -> int:
    from callstorage.completion import script

    ctx.print(script(build_parser("callstorage"), ctx.args.shell))
    return EXIT_OK


COMMANDS: dict[str, Callable[[_Context], int]] = {
    "check": _cmd_check,
    "resolve": _cmd_resolve,
    "status": _cmd_status,
    "policy": _cmd_policy,
    "upload": _cmd_upload,
    "url": _cmd_url,
    "version": _cmd_version,
    "completion": _cmd_completion,
}


def _yaml(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False))


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
    print(line or f"{_prog()}: error: {message} ({reason})", file=err)
    if output in MACHINE_OUTPUTS:
        doc = {"error": {"reason": reason, "message": message, "exitCode": code}}
        text = _yaml(doc) if output == "yaml" else json.dumps(doc, indent=2) + "\n"
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
    ctx = _Context(args, out, err)
    try:
        return COMMANDS[args.command](ctx)
    except CallStorageError as exc:
        return _error(err, out, ctx.output, str(exc.reason), exc.message, exit_code_for(exc))
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
        message = f"internal error: {type(exc).__name__}: {exc}"
        return _error(err, out, ctx.output, "InternalError", message, EXIT_FAILED,
                      f"{_prog()}: {message} (set CALLSTORAGE_DEBUG=1 for a traceback)")
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
