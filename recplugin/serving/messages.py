"""What the serving logic takes and gives: requests, answers, the version that answers, and the errors that become
4xx / 503 answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service module imports this file in BentoML's parent process too: no torch there
    from recplugin.models.artifact import RetrievalModel


class InvalidRequest(ValueError):
    """A request value that is not allowed; the message names the field and what is allowed."""


class Unprocessable(InvalidRequest):
    """A well-formed value that cannot be taken now (HTTP 422)."""


class UnknownItem(Unprocessable):
    """A well-formed item id that the served model's catalogue does not hold (HTTP 422)."""


class NotReady(RuntimeError):
    """Model, features or index are not usable yet."""


class IndexUnavailable(RuntimeError):
    """The Milvus item index did not answer (an error, or its deadline); the message says which (HTTP 503)."""


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


@dataclass(frozen=True)
class Served:
    """A model version and the collection holding its items: switched together, read once per batch."""

    collection: str
    model: RetrievalModel
    index_type: str

    def popular(self, scenario: str, k: int, degraded: str | None = None, hidden: frozenset[int] = frozenset()) -> Recommendation:
        """The scenario's most popular items (cold start); a score is the item's training count over the top item's (0..1]."""
        ranked = [entry for entry in self.model.popular[scenario] if int(entry[0]) not in hidden][:k]
        top = float(ranked[0][1]) if ranked and ranked[0][1] > 0 else 1.0
        items = [{"item_id": int(item_id), "score": round(float(count) / top, 6)} for item_id, count in ranked]
        return Recommendation(items, self.model.version, cold_start=True, degraded=degraded)
