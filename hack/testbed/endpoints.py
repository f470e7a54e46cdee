"""The endpoint policy of development set-ups (``make demo``, the tests): DEV ONLY.

The emulators listen on 127.0.0.1, which the operator's default deny list refuses
(``callstorage.settings.DEFAULT_DENIED_ENDPOINTS``). Development set-ups therefore deny
the default list without its loopback entries, and the tests deny ``DENIED_HOST``, another
loopback address (Linux routes all of 127.0.0.0/8 locally), where attack tests put a
listener that must never see a connection. Never use this list in an installation.
"""

from __future__ import annotations

from callstorage.settings import DEFAULT_DENIED_ENDPOINTS, LOOPBACK_ENDPOINTS

#: A loopback address the tests' policy denies (127.0.0.1, the emulators', stays allowed).
DENIED_HOST = "127.0.0.2"


def dev_denylist(*extra: str) -> list[str]:
    """The default deny list without loopback, plus ``extra``."""
    return [e for e in DEFAULT_DENIED_ENDPOINTS if e not in LOOPBACK_ENDPOINTS] + list(extra)


#: The tests' list: the default without loopback, and DENIED_HOST.
TEST_DENYLIST = dev_denylist(f"{DENIED_HOST}/32")
