"""The metrics module, checked by scraping a real HTTP server like Prometheus would."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callstorage import metrics


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def metrics_url() -> Iterator[str]:
    port = _free_port()
    metrics.start_metrics_server(port, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        metrics.stop_metrics_server()


def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(metric: str, /, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return metric, frozenset(labels.items())


def test_validations_counter_and_histogram_are_served(metrics_url: str) -> None:
    # unique label values keep this test independent of others sharing the registry
    before = _scrape(metrics_url)
    ok = _key("callstorage_validations_total", storage_type="s3", result="success",
              reason="Validated")
    denied = _key("callstorage_validations_total", storage_type="s3", result="failure",
                  reason="AccessDenied")
    count = _key("callstorage_validation_duration_seconds_count", storage_type="s3")
    total = _key("callstorage_validation_duration_seconds_sum", storage_type="s3")

    metrics.record_validation("s3", "success", "Validated", 0.2)
    metrics.record_validation("s3", "success", "Validated", 0.3)
    metrics.record_validation("s3", "failure", "AccessDenied", 1.5)

    after = _scrape(metrics_url)
    assert after[ok] - before.get(ok, 0) == 2
    assert after[denied] - before.get(denied, 0) == 1
    assert after[count] - before.get(count, 0) == 3
    assert after[total] - before.get(total, 0) == pytest.approx(2.0)
    # 0.2 and 0.3 fall at or under the 0.5 s bucket, 1.5 s does not
    le_half = _key("callstorage_validation_duration_seconds_bucket", storage_type="s3", le="0.5")
    assert after[le_half] - before.get(le_half, 0) == 2


def test_negative_durations_are_clamped(metrics_url: str) -> None:
    before = _scrape(metrics_url)
    total = _key("callstorage_validation_duration_seconds_sum", storage_type="gcs")
    metrics.record_validation("gcs", "failure", "Timeout", -1.0)
    assert _scrape(metrics_url)[total] - before.get(total, 0) == 0


def test_storage_ready_gauge_and_forget(metrics_url: str) -> None:
    ready = _key("callstorage_storage_ready", namespace="app-metrics", name="ok")
    broken = _key("callstorage_storage_ready", namespace="app-metrics", name="broken")

    metrics.set_storage_ready("app-metrics", "ok", True)
    metrics.set_storage_ready("app-metrics", "broken", False)
    scraped = _scrape(metrics_url)
    assert scraped[ready] == 1
    assert scraped[broken] == 0

    metrics.set_storage_ready("app-metrics", "broken", True)
    assert _scrape(metrics_url)[broken] == 1

    metrics.forget_storage("app-metrics", "broken")
    metrics.forget_storage("app-metrics", "never-existed")  # no error
    scraped = _scrape(metrics_url)
    assert broken not in scraped
    assert scraped[ready] == 1


def test_reconcile_errors_and_queue_depth(metrics_url: str) -> None:
    before = _scrape(metrics_url)
    errors = _key("callstorage_reconcile_errors_total", kind="CallType")
    metrics.record_reconcile_error("CallType")
    metrics.set_queue_depth(7)
    scraped = _scrape(metrics_url)
    assert scraped[errors] - before.get(errors, 0) == 1
    assert scraped[_key("callstorage_queue_depth")] == 7
    metrics.set_queue_depth(-3)
    assert _scrape(metrics_url)[_key("callstorage_queue_depth")] == 0


def test_process_series_are_included(metrics_url: str) -> None:
    names = {name for name, _ in _scrape(metrics_url)}
    assert "python_info" in names


def test_port_zero_disables_and_second_start_is_a_no_op(metrics_url: str) -> None:
    metrics.start_metrics_server(0)  # disabled: returns without binding anything
    # the fixture's server is running: starting again must not raise "address in use"
    port = int(metrics_url.rsplit(":", 1)[1].split("/")[0])
    metrics.start_metrics_server(port, host="127.0.0.1")
    assert _scrape(metrics_url)


def test_start_does_not_block() -> None:
    """The server runs in a daemon thread: the call returns while it keeps serving."""
    port = _free_port()
    metrics.start_metrics_server(port, host="127.0.0.1")
    try:
        assert _scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        metrics.stop_metrics_server()
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_no_created_series_double_the_count(metrics_url: str) -> None:
    """Counters and histograms export no ``_created`` timestamps: one series per value."""
    metrics.record_validation("s3", "failure", "CreatedSeriesCheck", 0.2)
    metrics.record_reconcile_error("CreatedSeriesCheck")
    names = {name for name, _ in _scrape(metrics_url)}
    assert "callstorage_validations_total" in names
    assert "callstorage_validation_duration_seconds_bucket" in names
    assert not [n for n in names if n.endswith("_created")]
