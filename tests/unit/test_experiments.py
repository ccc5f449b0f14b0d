"""Online metrics per version: request ids name their version (unknown ones stay one label), /metrics text parses
into per-version counts, and the intervals are the textbook ones."""
import math

from prometheus_client import generate_latest

from recplugin.serving import experiments
from recplugin.serving.online_metrics import count_answer, count_attributed, new_request_id, version_of


def test_a_request_id_names_its_version_and_anything_else_is_unknown():
    request_id = new_request_id("v20261206_1108_ab")
    assert version_of(request_id, {"v20261206_1108_ab"}) == "v20261206_1108_ab"
    assert version_of(request_id, {"v_other"}) == "unknown"  # not a registered version: no new label
    assert version_of("v20261206_1108_ab", {"v20261206_1108_ab"}) == "unknown"  # malformed
    assert version_of("x" * 80 + ".0123456789abcdef", {"x" * 80}) == "unknown"


def test_metrics_text_gives_per_version_counts_and_click_through():
    for _ in range(200):
        count_answer("vexp_a", "feed", False)
    for _ in range(100):
        count_answer("vexp_b", "feed", False)
    for position in [0] * 30 + [12] * 5:
        count_attributed("vexp_a", "feed", "click", position)
    for _ in range(20):
        count_attributed("vexp_b", "feed", "click", 3)
    count_attributed("vexp_b", "feed", "click", None)
    stats = {s.version: s for s in experiments.parse(generate_latest().decode())}
    a, b = stats["vexp_a"], stats["vexp_b"]
    assert (a.answers, a.attributed, a.clicks_top10) == (200, 35, 30) and (b.answers, b.attributed, b.clicks_top10) == (100, 21, 20)
    assert math.isclose(a.ctr, 0.15) and math.isclose(b.ctr, 0.20)
    delta, low, high = experiments.difference(b, a)
    assert math.isclose(delta, 0.05) and low < 0 < high  # 100 answers cannot tell 0.15 from 0.20
    text = experiments.table([a, b], control="vexp_a")
    assert "control" in text.splitlines()[1] and "+0.0500" in text.splitlines()[2]


def test_wilson_interval_matches_the_closed_form():
    low, high = experiments.wilson(30, 200)
    assert math.isclose(low, 0.1072, abs_tol=1e-3) and math.isclose(high, 0.2059, abs_tol=1e-3)
    assert experiments.wilson(0, 0) == (0.0, 0.0)
