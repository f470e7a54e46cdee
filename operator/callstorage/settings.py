"""Install-time settings, read from ``CALLSTORAGE_*`` environment variables.

The Helm chart and the kustomize base set these; every one has a safe default so the
operator also runs straight from a checkout (``python -m callstorage``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The operator connects wherever a storage's spec or Secret points, from its own network
# position (SSRF): never to itself or its pod (loopback, unspecified), to link-local
# addresses, or to cloud metadata services, which hand out the operator's own credentials.
# An IPv6 address embedding a denied IPv4 address (mapped, NAT64, 6to4, Teredo, ...) is
# denied with it (callstorage.providers.endpoint_policy). Private ranges stay allowed
# (in-cluster MinIO lives there); add them to deny them. This is the one home of the
# list: the chart and the kustomize base say `default`, which stands for it, and
# docs/install.md's table of it is checked against it (tests/unit/test_docs_install.py).
DEFAULT_DENIED_ENDPOINTS = (
    "127.0.0.0/8",  # loopback
    "::1/128",
    "0.0.0.0/8",  # "this host": connecting to 0.0.0.0 reaches loopback
    "::/128",
    "169.254.0.0/16",  # link-local, incl. AWS/GCP/Azure/OpenStack metadata 169.254.169.254
    "fe80::/10",
    "fd00:ec2::254/128",  # AWS IMDS over IPv6
    "fd00:ec2::23/128",  # EKS Pod Identity agent over IPv6 (169.254.170.23 over IPv4)
    "fd20:ce::254/128",  # GCE metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "192.0.0.192/32",  # Oracle Cloud metadata (besides 169.254.169.254)
    "fd00:c1::a9fe:a9fe/128",  # Oracle Cloud metadata over IPv6
    "168.63.129.16/32",  # Azure WireServer (platform agent endpoint)
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",  # AWS EC2's name for its metadata service
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",  # Tencent Cloud metadata (169.254.0.23)
)
#: The word in CALLSTORAGE_ENDPOINT_DENYLIST that stands for DEFAULT_DENIED_ENDPOINTS.
DEFAULT_KEYWORD = "default"
#: Loopback entries of the default list: a development set-up (`make demo`, the tests),
#: whose emulators listen on 127.0.0.1, denies the rest of the default list only.
LOOPBACK_ENDPOINTS = ("127.0.0.0/8", "::1/128")


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything an installation may choose; see README "Settings"."""

    model_config = SettingsConfigDict(env_prefix="CALLSTORAGE_", frozen=True)

    namespace: str = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "callstorage-system"),
        description="The operator's own namespace, home of the platform storage.",
    )
    platform_storage: str = Field(
        "platform-default",
        description="Name of the ExternalStorage in `namespace` that `stream-s3` means.",
    )
    allow_ambient_credentials: bool = Field(
        False,
        description="Let S3 storages without a Secret use the operator's own IAM identity "
                    "(in `ambient_credentials_namespaces` only, AWS endpoints only).",
    )
    ambient_credentials_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces whose storages may use ambient credentials; empty means "
                    "the operator's own `namespace` (the platform storage) only.",
    )
    endpoint_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="If set, custom endpoints must match one of these hosts or CIDRs.",
    )
    endpoint_denylist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_ENDPOINTS),
        description="Hosts or CIDRs no storage connection may go to; `default` stands "
                    "for DEFAULT_DENIED_ENDPOINTS.",
    )
    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch; empty means all."
    )
    max_concurrent_validations: int = Field(16, ge=1, le=1024)
    secret_label_selector: str = Field(
        "",
        description="If set, the operator watches and reads only Secrets matching this "
                    "label selector (server-side), e.g. `callstorage.io/credentials=true`.",
    )
    max_ca_bundle_bytes: int = Field(
        64 * 1024, ge=1024, le=1024 * 1024,
        description="Largest spec.tls.caSecretRef bundle accepted (CABundleTooLarge above): "
                    "each distinct bundle in use is a file in the operator's temp space.",
    )
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    read_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a response.")
    max_attempts: int = Field(2, ge=1, le=10, description="SDK attempts per request.")
    provider_deadline: float = Field(
        60.0, gt=0, le=3600,
        description="Total seconds one validation or check may spend on its storage "
                    "calls, retries included; when it passes, its connections are closed "
                    "and it reads Timeout (an endpoint trickling bytes never hits a read "
                    "timeout).",
    )
    retry_base: float = Field(5.0, gt=0, description="First retry delay after a failure.")
    retry_max: float = Field(300.0, gt=0, description="Longest retry delay after failures.")
    resync_interval: float = Field(
        300.0, ge=1,
        description="Seconds between full LISTs that catch deletions a watch missed.",
    )
    check_object_prefix: str = Field(
        "stream-", description="File-name prefix of on-demand check objects."
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="0 disables metrics.")
    health_port: int = Field(8081, ge=0, le=65535, description="0 disables the probe.")
    leader_election: bool = Field(
        False,
        description="Run as one of several replicas: only the holder of the Lease "
                    "`lease_name` in `namespace` handles objects (the chart turns it on).",
    )
    lease_name: str = Field("callstorage-operator", description="The leader election Lease.")
    # renew_deadline < lease_duration: the leader stops writing before a standby may take
    # over; retry_period < renew_deadline: a leader gets more than one try (_lease_order).
    lease_duration: float = Field(15.0, ge=1, description="Seconds a standby waits on a "
                                  "silent leader before taking over.")
    lease_renew_deadline: float = Field(10.0, gt=0, description="Seconds the leader may "
                                        "go without a renewal before it stops handling "
                                        "objects and exits; shorter than lease_duration.")
    lease_retry_period: float = Field(2.0, gt=0, description="Seconds between attempts; "
                                      "shorter than lease_renew_deadline.")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def ambient_namespaces(self) -> list[str]:
        """The namespaces whose storages may use the operator's ambient credentials."""
        return list(self.ambient_credentials_namespaces) or [self.namespace]

    @model_validator(mode="after")
    def _lease_order(self) -> Settings:
        """Leader election is safe only with retry period < renew deadline < lease
        duration: a leader that stopped renewing must stop writing before a standby may
        take the Lease over (the difference is the margin for its last write to land)."""
        if not self.lease_renew_deadline < self.lease_duration:
            raise ValueError(
                f"CALLSTORAGE_LEASE_RENEW_DEADLINE ({self.lease_renew_deadline:g}) must be "
                f"less than CALLSTORAGE_LEASE_DURATION ({self.lease_duration:g}): a leader "
                "that cannot renew must stop before a standby may take over")
        if not self.lease_retry_period < self.lease_renew_deadline:
            raise ValueError(
                f"CALLSTORAGE_LEASE_RETRY_PERIOD ({self.lease_retry_period:g}) must be less "
                f"than CALLSTORAGE_LEASE_RENEW_DEADLINE ({self.lease_renew_deadline:g}): a "
                "leader must get more than one try to renew")
        return self

    @field_validator("endpoint_allowlist", "endpoint_denylist", "watch_namespaces",
                     "ambient_credentials_namespaces", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        """Environment variables hold comma-separated lists."""
        return _split(value)

    @field_validator("endpoint_denylist")
    @classmethod
    def _expand_default(cls, value: list[str]) -> list[str]:
        """``default`` in the deny list stands for the built-in entries."""
        out: list[str] = []
        for entry in value:
            out += list(DEFAULT_DENIED_ENDPOINTS) if entry.strip() == DEFAULT_KEYWORD else [entry]
        return list(dict.fromkeys(out))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
