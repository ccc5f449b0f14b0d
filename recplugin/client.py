"""A small typed client for a running recplugin service, on BentoML's HTTP client: /recommend, /user_vectors, /events,
/items."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import bentoml
import httpx
from bentoml.exceptions import BentoMLException


@dataclass(frozen=True)
class ScoredItem:
    """One candidate and its score (its best dot product with the user's interest vectors)."""

    item_id: int | str  # a string: the team's own id (source.string_ids)
    score: float


@dataclass(frozen=True)
class Recommendation:
    """The answer of /recommend; `degraded` says why popular items were served instead, when they were."""

    items: list[ScoredItem]
    model_version: str
    cold_start: bool
    degraded: str | None
    request_id: str  # send it back with an event on one of these items: the event counts for model_version


@dataclass(frozen=True)
class UserVectors:
    """The answer of /user_vectors: K interest vectors for a team's own ANN search or ranker."""

    user_id: int | str
    scenario: str
    model_version: str
    known_user: bool
    vectors: list[list[float]]


@dataclass(frozen=True)
class EventReceipt:
    """The answer of /events: the event is stored; the user's counts per scenario after it; its id, and whether an
    earlier attempt had stored it already."""

    user_id: int | str
    counts: dict[str, int]
    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class ItemsAdded:
    """The answer of /items: how many items became recommendable, how many the served model already held."""

    added: int
    known: int
    model_version: str


class ServiceError(RuntimeError):
    """The service answered with an error status; `message` is its `error` text (which names the field for a 4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class ServiceTimeout(ServiceError):
    """No answer within the client's timeout."""

    def __init__(self, timeout_s: float):
        super().__init__(504, f"no answer within {timeout_s} s")


class RecClient:
    """`RecClient("http://host:3000", api_key=...)`; every call is bounded by `timeout_s` and raises ServiceError."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0, wait_ready_s: float = 0.0):
        self.url, self.timeout_s, self.wait_ready_s = url, timeout_s, wait_ready_s
        self._api_key = api_key or ""
        self._http: bentoml.SyncHTTPClient | None = None  # connects at the first call (it reads the service's routes)

    def recommend(self, user_id: int | str, scenario: str, k: int | None = None, query: str | None = None) -> Recommendation:
        """Top-k items for the user in the scenario (a search query for search)."""
        body = self._call("recommend", user_id=user_id, scenario=scenario, k=k, query=query)
        items = [ScoredItem(item["item_id"], float(item["score"])) for item in body["items"]]
        return Recommendation(items, body["model_version"], bool(body["cold_start"]), body.get("degraded"), body["request_id"])

    def user_vectors(self, user_id: int | str, scenario: str, query: str | None = None) -> UserVectors:
        """The user's K interest vectors in the scenario and the model version they belong to."""
        body = self._call("user_vectors", user_id=user_id, scenario=scenario, query=query)
        return UserVectors(body["user_id"], body["scenario"], body["model_version"], bool(body["known_user"]),
                           [list(map(float, vector)) for vector in body["vectors"]])

    def event(self, user_id: int | str, item_id: int | str, scenario: str, action: str | None = None,
              event_id: str | None = None, timestamp: float | None = None, request_id: str | None = None,
              position: int | None = None, retries: int = 2) -> EventReceipt:
        """Record a behaviour; it is stored (online store and event log) exactly once when this returns: a call that
        times out or gets a 5xx is retried up to `retries` times with the same event id (a new one unless given).
        `request_id` and `position`: the answer (and the place in it) the item came from, for per-version metrics."""
        event_id = event_id or f"c-{uuid.uuid4().hex}"
        for attempt in range(retries + 1):
            try:
                body = self._call("events", user_id=user_id, item_id=item_id, scenario=scenario, action=action,
                                  event_id=event_id, timestamp=timestamp, request_id=request_id, position=position)
                break
            except ServiceError as error:
                if attempt == retries or error.status < 500:
                    raise
                time.sleep(0.2 * 2**attempt)  # a moment for a restarting worker or a recovering store
        return EventReceipt(body["user_id"], {name: int(count) for name, count in body["counts"].items()},
                            body["event_id"], bool(body["duplicate"]))

    def add_items(self, items: list[dict]) -> ItemsAdded:
        """Add catalogue items while serving (dicts with item_id, title and optionally text, category, scenarios); the
        same call again is harmless (items already held are `known`)."""
        body = self._call("add_items", items=items)
        return ItemsAdded(int(body["added"]), int(body["known"]), body["model_version"])

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RecClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, endpoint: str, **fields: object) -> dict:
        """POST the fields that are set; errors become ServiceError with the service's message."""
        try:
            return self._connected().call(endpoint, **{name: value for name, value in fields.items() if value is not None})
        except httpx.TimeoutException:
            raise ServiceTimeout(self.timeout_s) from None
        except BentoMLException as error:
            raise ServiceError(int(error.error_code), _error_text(str(error.message))) from None


    def _connected(self) -> bentoml.SyncHTTPClient:
        """BentoML's client, created at the first call; a refusal of its route lookup raises with the service's answer."""
        if self._http is None:
            try:
                self._http = bentoml.SyncHTTPClient(self.url, token=self._api_key, timeout=self.timeout_s,
                                                    server_ready_timeout=self.wait_ready_s)
            except BentoMLException:
                answer = httpx.get(f"{self.url}/schema.json", headers={"Authorization": f"Bearer {self._api_key}"},
                                   timeout=self.timeout_s)
                raise ServiceError(answer.status_code, _error_text(answer.text)) from None
        return self._http


def _error_text(body: str) -> str:
    """The `error` field of a JSON error body, else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    return str(data.get("error", body)) if isinstance(data, dict) else body
