"""Leader election durations that cannot be safe are refused at start-up, with a message
that names the settings: retry period < renew deadline < lease duration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callstorage.runner import main
from callstorage.settings import Settings


@pytest.mark.parametrize(("env", "message"), [
    ({"CALLSTORAGE_LEASE_RENEW_DEADLINE": "15"},
     "CALLSTORAGE_LEASE_RENEW_DEADLINE (15) must be less than CALLSTORAGE_LEASE_DURATION (15)"),
    ({"CALLSTORAGE_LEASE_DURATION": "8", "CALLSTORAGE_LEASE_RENEW_DEADLINE": "9"},
     "CALLSTORAGE_LEASE_RENEW_DEADLINE (9) must be less than CALLSTORAGE_LEASE_DURATION (8)"),
    ({"CALLSTORAGE_LEASE_RETRY_PERIOD": "10"},
     "CALLSTORAGE_LEASE_RETRY_PERIOD (10) must be less than "
     "CALLSTORAGE_LEASE_RENEW_DEADLINE (10)"),
], ids=["deadline-equals-duration", "deadline-longer", "retry-equals-deadline"])
def test_inconsistent_lease_durations_stop_the_operator_at_start_up(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings()
    # `python -m callstorage` says it in one line and exits 2, before touching anything
    assert main([]) == 2
    err = capsys.readouterr().err
    assert f"callstorage: invalid settings: {message}" in err
    assert "Traceback" not in err


def test_the_defaults_and_short_test_durations_are_accepted() -> None:
    s = Settings()
    assert (s.lease_retry_period, s.lease_renew_deadline, s.lease_duration) == (2, 10, 15)
    short = Settings(lease_duration=3, lease_renew_deadline=1.5, lease_retry_period=0.3)
    assert short.lease_renew_deadline == 1.5
