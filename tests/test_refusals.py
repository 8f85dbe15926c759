"""Refused inputs are counted in the daemon's own `Refusals` (no process-wide counter) and logged."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from daemon.metrics import DaemonMetrics
from daemon.refusals import Refusals


def refused_samples(metrics: DaemonMetrics) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {(s.labels["transport"], s.labels["reason"]): s.value
            for family in families if family.name == "spoofwatch_refused_inputs"
            for s in family.samples if s.name == "spoofwatch_refused_inputs_total"}


def test_each_refusal_is_counted_by_transport_and_reason_and_logged() -> None:
    refusals = Refusals()
    with capture_logs() as logs:
        assert refusals.refuse("zmq", "bad_json", message="x") == 1
        assert refusals.refuse("zmq", "bad_json") == 2
        assert refusals.refuse("twilio", "bad_json") == 1
    assert refusals.count("zmq", "bad_json") == 2 and refusals.count("zmq", "other") == 0
    assert refusals.counts() == [(("twilio", "bad_json"), 1), (("zmq", "bad_json"), 2)]
    assert [(e["event"], e["transport"], e["reason"], e["count"]) for e in logs] == [
        ("input_refused", "zmq", "bad_json", 1), ("input_refused", "zmq", "bad_json", 2),
        ("input_refused", "twilio", "bad_json", 1)]
    assert logs[0]["message"] == "x" and logs[0]["log_level"] == "info"


def test_two_daemons_never_share_counts_and_metrics_read_their_own() -> None:
    first, second = Refusals(), Refusals()
    first_metrics, second_metrics = DaemonMetrics(first), DaemonMetrics(second)
    first.refuse("http", "no_token")
    first.refuse("http", "no_token")
    second.refuse("zmq", "unknown_key")
    assert refused_samples(first_metrics) == {("http", "no_token"): 2.0}
    assert refused_samples(second_metrics) == {("zmq", "unknown_key"): 1.0}
    assert refused_samples(DaemonMetrics()) == {}
