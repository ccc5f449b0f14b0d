"""`recplugin experiments`: per model version, answers, attributed events and click-through within the top 10, read
from a running service's /metrics, with 95% intervals, and each version against the serving one (the control)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Z95 = 1.959964


@dataclass(frozen=True)
class VersionStats:
    """One version's online counts."""

    version: str
    answers: int
    attributed: int
    clicks_top10: int

    @property
    def ctr(self) -> float:
        return self.clicks_top10 / self.answers if self.answers else 0.0


def parse(metrics_text: str) -> list[VersionStats]:
    """Per-version counts from the Prometheus text of /metrics (every worker's counters summed)."""
    answers: dict[str, float] = {}
    attributed: dict[str, float] = {}
    top10: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            version = sample.labels.get("model_version", "")
            if sample.name == "recplugin_answers_total":
                answers[version] = answers.get(version, 0) + sample.value
            elif sample.name == "recplugin_attributed_events_total":
                attributed[version] = attributed.get(version, 0) + sample.value
                if sample.labels.get("position") == "top10":
                    top10[version] = top10.get(version, 0) + sample.value
    return [VersionStats(v, int(answers.get(v, 0)), int(attributed.get(v, 0)), int(top10.get(v, 0)))
            for v in sorted(set(answers) | set(attributed))]


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson interval of a rate."""
    if not trials:
        return 0.0, 0.0
    rate, spread = successes / trials, Z95 ** 2 / trials
    centre = (rate + spread / 2) / (1 + spread)
    half = Z95 * math.sqrt(rate * (1 - rate) / trials + spread / (4 * trials)) / (1 + spread)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference(candidate: VersionStats, control: VersionStats) -> tuple[float, float, float]:
    """Candidate minus control click-through, with its 95% interval (normal approximation, unpooled)."""
    delta = candidate.ctr - control.ctr
    variance = sum(s.ctr * (1 - s.ctr) / s.answers for s in (candidate, control) if s.answers)
    half = Z95 * math.sqrt(variance)
    return delta, delta - half, delta + half


def table(stats: list[VersionStats], control: str) -> str:
    """The experiments table, a line per version."""
    lines = [f"{'version':34s} {'answers':>9s} {'events':>8s} {'CTR@10':>8s} {'95% CI':>17s}   vs {control} (95% CI)"]
    base = next((s for s in stats if s.version == control), None)
    for entry in stats:
        low, high = wilson(entry.clicks_top10, entry.answers)
        versus = "control" if entry.version == control else "-"
        if base is not None and entry.version != control and entry.answers and base.answers:
            delta, d_low, d_high = difference(entry, base)
            versus = f"{delta:+.4f} ({d_low:+.4f} .. {d_high:+.4f})"
        lines.append(f"{entry.version:34s} {entry.answers:9d} {entry.attributed:8d} {entry.ctr:8.4f} "
                     f"{low:8.4f}..{high:.4f}   {versus}")
    return "\n".join(lines)
