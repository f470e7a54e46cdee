"""The media commands: ``upload`` a call's recordings and transcripts to its storage, and
print a time-limited ``url`` to read one back (``callstorage.media`` from the shell)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callstorage.cli.common import EXIT_OK, MACHINE_OUTPUTS, Context, positive_float

if TYPE_CHECKING:
    from callstorage.cli.parser import Subcommands


def add_parsers(sub: Subcommands) -> None:
    """The parsers of ``upload`` and ``url``."""
    upload = sub.command(
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
    sub.namespace_flag(upload)
    upload.add_argument("--part-size", type=positive_float, default=8, metavar="MiB",
                        help="part size of multi-part uploads (default: 8)")
    upload.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="parallel requests (default: 8)")
    upload.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="total deadline of the upload (default: none; each request "
                             "has its own)")
    upload.add_argument("--output-file", metavar="PATH",
                        help="also write the stored location to PATH")

    url = sub.command(
        "url", "print a time-limited download URL for an uploaded file",
        "Sign a URL (S3 presign, GCS signed URL, Azure SAS) for FILE of the call whose "
        "stored location 'upload' printed, from the bucket it was written to, with the "
        "storage's current credentials, for the call's own namespace (-n) only. Exit 2 for "
        "a forged, edited or old location, 1 for another namespace or a WriteOnly storage "
        "(the error says where the file is), 3 if the storage was deleted.")
    url.add_argument("location", metavar="LOCATION",
                     help="the stored location JSON: a file, or '-' for stdin")
    url.add_argument("file", metavar="FILE", help="file of the call (audio.wav, ...)")
    sub.namespace_flag(url)
    url.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                     help="validity of the URL (default: 3600)")
    url.add_argument("-o", "--output", choices=("text", *MACHINE_OUTPUTS), default="text",
                     help="output format: text, json, yaml (default: text)")


def cmd_upload(ctx: Context) -> int:
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
                              concurrency=args.concurrency, total_deadline=args.timeout)
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


def cmd_url(ctx: Context) -> int:
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
