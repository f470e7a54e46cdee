"""The storage commands: ``check`` a storage and wait for the operator's answer,
``resolve`` where a call's recordings go, the ``status`` tables, and the least-privilege
``policy`` a storage's credentials need."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from callstorage.cli.common import (
    CALL_TYPE_RESOURCE,
    EXIT_FAILED,
    EXIT_OK,
    MACHINE_OUTPUTS,
    STORAGE_RESOURCE,
    Context,
    positive_float,
    program_name,
)

if TYPE_CHECKING:
    from callstorage.cli.parser import Subcommands


def add_parsers(sub: Subcommands) -> None:
    """The parsers of ``check``, ``resolve``, ``status`` and ``policy``."""
    check = sub.command("check", "ask the operator to write a test file into a storage and "
                        "wait for the result",
                        "Set the check annotation on an ExternalStorage; the operator uploads "
                        "a new {path}/stream-<uuid>.md and reports it. Prints the object "
                        "written; exit 1 if the upload failed, 4 if no answer came in time.")
    check.add_argument("name", help="ExternalStorage name")
    sub.namespace_flag(check)
    check.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the operator (default: 60)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub.output_flag(check)

    resolve = sub.command("resolve", "show which storage a call's recordings go to",
                          "Apply the selection order: the call-level storage, else the call "
                          "type's externalStorage, else the platform storage (stream-s3). "
                          "Exit 1 if the storage is not Ready (unless --no-require-ready).")
    resolve.add_argument("--call-type", required=True, metavar="TYPE", help="call type")
    resolve.add_argument("--call-storage", metavar="NAME",
                         help="storage named for the call (recording_external_storage / "
                              "transcription_external_storage)")
    sub.namespace_flag(resolve)
    resolve.add_argument("--require-ready", action=argparse.BooleanOptionalAction,
                         default=True, help="exit 1 when the storage is not Ready "
                                            "(default: yes)")
    sub.output_flag(resolve)

    status = sub.command("status", "list storages and call types with their readiness",
                         "Tables of ExternalStorages and CallTypes: readiness, reason, which "
                         "call types use which storage.")
    scope = status.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", metavar="NS",
                       help="namespace (the application); default: the context's")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="every namespace")
    sub.output_flag(status)

    policy = sub.command("policy", "print the least-privilege policy a storage's credentials "
                         "need",
                         "Print the provider grant for the storage's effective prefixes and "
                         "access mode: an AWS IAM policy, GCS bucket IAM bindings, or an "
                         "Azure role assignment. The JSON goes to stdout, notes to stderr.")
    policy.add_argument("name", help="ExternalStorage name")
    sub.namespace_flag(policy)
    policy.add_argument("--member", metavar="PRINCIPAL",
                        help="GCS member or Azure assignee to put in the grant "
                             "(default: a placeholder)")
    # the policy document is JSON already: that is its text form
    sub.output_flag(policy, ("json", "yaml", "name"), "json")


def cmd_check(ctx: Context) -> int:
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


def cmd_resolve(ctx: Context) -> int:
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
        ctx.note(f"{program_name()}: error: ExternalStorage {resolved.namespace}/{resolved.name} "
                 f"is not ready: {resolved.message or resolved.reason} ({resolved.reason})")
        return EXIT_FAILED
    return EXIT_OK


def _age(timestamp: str | None) -> str:
    from callstorage.api.timestamps import parse_rfc3339

    if not timestamp:
        return "-"
    try:
        then = parse_rfc3339(timestamp)
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


def cmd_status(ctx: Context) -> int:
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


def cmd_policy(ctx: Context) -> int:
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
