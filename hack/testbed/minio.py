"""MinIO on 127.0.0.1: a fast S3 server (Go) for the media benchmark.

Built from its Go module on demand by ``testbed.binaries`` (``find("minio")``), never by
``prepare``: only ``make bench-media`` needs it. It runs with generated root credentials,
update checks off, and its data in a directory the caller owns.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from testbed import binaries
from testbed.procs import Server, free_port, http_ok, wait_for
from testbed.s3 import S3Keys


class MinIOServer:
    """``MinIOServer.start(data_dir, log_dir)``; ``admin`` holds the root keys."""

    def __init__(self, server: Server, endpoint: str, admin: S3Keys) -> None:
        self._server = server
        self.endpoint = endpoint
        self.region = "us-east-1"
        self.admin = admin

    @classmethod
    def start(cls, data_dir: Path, log_dir: Path, timeout: float = 60.0) -> MinIOServer:
        binary = binaries.find("minio")
        port, console = free_port(), free_port()
        admin = S3Keys(f"bench{secrets.token_hex(4)}", secrets.token_urlsafe(24))
        data_dir.mkdir(parents=True, exist_ok=True)
        server = Server(
            "minio",
            [str(binary), "server", str(data_dir), "--address", f"127.0.0.1:{port}",
             "--console-address", f"127.0.0.1:{console}", "--quiet"],
            log_dir,
            env={"MINIO_ROOT_USER": admin.access_key_id,
                 "MINIO_ROOT_PASSWORD": admin.secret_access_key,
                 "MINIO_UPDATE": "off", "MINIO_BROWSER": "off",
                 "MINIO_CALLHOME_ENABLE": "off", "MINIO_REGION": "us-east-1"},
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: http_ok(f"{endpoint}/minio/health/live"), timeout, "minio",
                     alive=server)
        except BaseException:
            server.stop()
            raise
        return cls(server, endpoint, admin)

    def client(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.admin.access_key_id,
            aws_secret_access_key=self.admin.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5,
                          read_timeout=120))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MinIOServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
