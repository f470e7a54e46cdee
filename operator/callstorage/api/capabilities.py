"""What a storage's credentials proved able to do (``status.capabilities``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What the credentials proved able to do; ``False`` means "not proven", not "denied"."""

    write: bool = False
    read: bool = False
    list: bool = False

    def merged(self, other: Capabilities) -> Capabilities:
        return Capabilities(
            write=self.write or other.write,
            read=self.read or other.read,
            list=self.list or other.list,
        )

    def as_status(self) -> dict[str, bool]:
        return {"write": self.write, "read": self.read, "list": self.list}
