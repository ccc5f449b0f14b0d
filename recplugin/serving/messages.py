"""What the serving logic takes and gives: requests, answers, and the errors that become 4xx / 503 answers."""
from __future__ import annotations

from dataclasses import dataclass


class InvalidRequest(ValueError):
    """A request value that is not allowed; the message names the field and what is allowed."""


class Unprocessable(InvalidRequest):
    """A well-formed value that cannot be taken now (HTTP 422)."""


class UnknownItem(Unprocessable):
    """A well-formed item id that the served model's catalogue does not hold (HTTP 422)."""


class NotReady(RuntimeError):
    """Model, features or index are not usable yet."""


@dataclass(frozen=True)
class RecommendRequest:
    """One /recommend call."""

    user_id: int
    scenario: str
    k: int
    query: str | None = None


@dataclass(frozen=True)
class Recommendation:
    """The answer to /recommend."""

    items: list[dict]
    model_version: str
    cold_start: bool
    degraded: str | None = None

    def as_dict(self) -> dict:
        return {"items": self.items, "model_version": self.model_version, "cold_start": self.cold_start,
                "degraded": self.degraded}
