"""BentoML service: POST /recommend and POST /events; /readyz is false until model, Feast and Milvus answer."""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Annotated, Literal, Optional, Union

import anyio
import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse

from recplugin.config import load_config
from recplugin.serving.batch_process import PIPELINED, BatchProcesses, BatchProcessUnavailable
from recplugin.serving.batching import Batcher, Overloaded
from recplugin.serving.guards import RequestGuard, bound_metrics_labels
from recplugin.serving.ids import IdCodec
from recplugin.serving.messages import IndexUnavailable, InvalidRequest, RecommendRequest, Unprocessable
from recplugin.serving.online_metrics import BATCH_SECONDS, BATCH_SIZES, BATCHES_ANSWERED, count_answer, count_attributed, new_request_id, version_of
from recplugin.serving.openapi import document_service

if TYPE_CHECKING:  # torch, Feast and pymilvus load in the workers only (RecPlugin.__init__): `bentoml serve` imports this
    from recplugin.serving.recommender import Recommender  # module in its parent process too, ~10 s more per start

CONFIG = load_config()
LIMITS = CONFIG.serving
logger = logging.getLogger("recplugin.serving")
logging.getLogger("recplugin").setLevel(logging.INFO)  # one INFO line per 4xx, version switches; BentoML's handlers print them

TeamId = Annotated[str, Field(strict=True, min_length=1, max_length=256)]  # source.string_ids: the team's own id
UserId = Annotated[int, Field(strict=True, ge=0, le=LIMITS.max_user_id, description="Non-negative integer user id")]
TopK = Annotated[int, Field(strict=True, ge=1, le=LIMITS.max_k, description=f"Number of items, 1..{LIMITS.max_k}")]
Query = Annotated[Optional[str], Field(default=None, max_length=LIMITS.max_query_chars,
                                       description=f"Search query text, at most {LIMITS.max_query_chars} characters")]
Scenario = Annotated[Literal[tuple(CONFIG.scenarios)], Field(description="One of the configured scenarios")]
Action = Annotated[Literal[tuple(CONFIG.actions)], Field(description="One of the configured actions")]
EventId = Annotated[Optional[str], Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
                                         description="The client's id of this event: a retried call with it is applied once")]
EventTime = Annotated[Optional[float], Field(default=None, ge=1, description="When the event happened, unix seconds (default: "
                                             "when it arrives); with it and no event_id, the id is derived from the content")]
RequestId = Annotated[Optional[str], Field(default=None, max_length=96, description="The request_id of the /recommend answer "
                                           "this event came from: it counts for that answer's model version")]
Position = Annotated[Optional[int], Field(default=None, strict=True, ge=0, le=LIMITS.max_k - 1,
                                          description="The item's position in that answer, 0-based")]
ItemId = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1, description="An item id of the served model's catalogue")]
ItemIds = Annotated[list[ItemId], Field(min_length=1, max_length=1000, description="1..1000 item ids")]
if CONFIG.source.string_ids:  # the team's string ids (hashed as at load time), or the integers they became
    UserId, ItemId = Union[UserId, TeamId], Union[ItemId, TeamId]  # noqa: F811
    ItemIds = Annotated[list[ItemId], Field(min_length=1, max_length=1000, description="1..1000 item ids")]  # noqa: F811




class ItemBody(BaseModel):
    """One catalogue item to add while serving."""

    item_id: ItemId
    title: Annotated[str, Field(min_length=1, max_length=1000, description="The item's title")]
    text: Annotated[Optional[str], Field(default=None, max_length=LIMITS.max_item_text_chars, description=(
        "What the item tower reads, built as `load events` builds it from your text columns (default: the title)"))]
    category: Annotated[str, Field(default="", max_length=256)]
    scenarios: Annotated[Optional[list[Scenario]], Field(default=None, min_length=1, description=(
        "The scenarios the item may be shown in (default: all)"))]


ItemBodies = Annotated[list[ItemBody], Field(min_length=1, max_length=1000, description="1..1000 items")]


def bad_request(message: str, status: int = 400) -> JSONResponse:
    """A 4xx with {"error": message} (BentoML's own 400 body for a raised InvalidArgument is a JSON array), logged in one line."""
    logger.info("%d: %s", status, message)
    return JSONResponse({"error": message}, status_code=status)


class OneLineClientErrors(logging.Filter):
    """BentoML logs every rejected request at ERROR with a ~25-line traceback; a 4xx becomes one INFO line (5xx keep it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        client = isinstance(error, ValidationError) or (isinstance(error, BentoMLException) and error.error_code.value < 500)
        if client:
            summary = f"{type(error).__name__}: {' | '.join(line.strip() for line in str(error).splitlines())[:400]}"
            record.msg, record.args = f"{record.msg}: %s", (*record.args, summary)
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.INFO, "INFO", None, None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(OneLineClientErrors())


def unavailable(message: str) -> JSONResponse:
    """A 503 that keeps its message (BentoML replaces the text of raised 5xx errors with a generic one)."""
    return JSONResponse({"error": message}, status_code=503)


@bentoml.service(name="recplugin", traffic={"timeout": 30}, workers=LIMITS.workers,
                 logging={"access": {"enabled": LIMITS.access_log}})
class RecPlugin:
    """Cross-scenario recommendations from Feast features, the user tower and Milvus."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(LIMITS.torch_threads)  # batches and requests overlap in a worker: one thread each beats contention
        self.config = CONFIG
        self.ids = IdCodec(CONFIG.source.string_ids, CONFIG.data_dir)
        self._lock = threading.Lock()
        self._recommender: Recommender | None = None
        self._batch_process: BatchProcesses | None = None
        self._error = "not started"
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="recplugin-readyz")
        self._readiness: Future | None = None
        self._connect()
        # Concurrent /recommend calls in this worker are served in batches (one Feast read, one user-tower forward and one
        # Milvus call per scenario for the group); a batch starts as soon as a slot is free, never on a timer. A batch
        # process takes the next batch behind the one it runs once half a batch waits (c=32, 3k items: 0.56 -> 0.62x of
        # the no-op ceiling; behind it at a quarter: 0.59x, smaller batches).
        pipelined = PIPELINED if LIMITS.batch_process else 1
        self._batched = Batcher(self._recommend_batch, LIMITS.batch_max_size, LIMITS.batch_max_latency_ms,
                                slots=LIMITS.batch_slots * pipelined, min_behind=max(1, LIMITS.batch_max_size // 2))

    async def _recommend_batch(self, requests: list[RecommendRequest]) -> list:
        """The batch callback: a batch process's answers (this worker's own, in a thread, when it cannot answer), or the
        batch-wide Milvus failure for each request."""
        BATCH_SIZES.observe(len(requests))
        with BATCH_SECONDS.time():
            try:
                if self._batch_process is not None:
                    try:
                        answers = await self._batch_process.answer(requests)
                        BATCHES_ANSWERED.labels("batch_process").inc()
                        return answers
                    except BatchProcessUnavailable:
                        pass
                BATCHES_ANSWERED.labels("worker").inc()
                return await anyio.to_thread.run_sync(self._recommender.recommend_many, requests)
            except IndexUnavailable as error:
                return [error] * len(requests)

    def _connect(self) -> Recommender | None:
        """Build the recommender if it is not built yet; remember why when it cannot be."""
        with self._lock:
            if self._recommender is None:
                try:
                    from recplugin.serving.recommender import Recommender

                    if LIMITS.batch_process and self._batch_process is None:  # it loads while this worker does
                        from recplugin.index.milvus import shared_uri

                        self._batch_process = BatchProcesses(self.config, shared_uri(self.config.milvus_uri), LIMITS.batch_slots,
                                                           LIMITS.torch_threads, LIMITS.batch_process_timeout_s)
                    self._recommender = Recommender(self.config)
                    self.ids.added_keys = self._recommender.catalogue.keys
                except Exception as error:  # any dependency may be down; readiness reports it
                    self._error = f"{type(error).__name__}: {error}"
                    logger.warning("recplugin not ready: %s", self._error)
            return self._recommender


    def _check_ready(self) -> bool:
        recommender = self._connect()
        if self._batch_process is not None and not self._batch_process.settled():
            self._error = "the batch process is loading the model"
            return False
        try:
            return recommender is not None and recommender.ready()
        except Exception as error:  # an unreachable store means not ready, not a crash
            self._error = f"{type(error).__name__}: {error}"
            return False

    def __is_ready__(self) -> bool:
        """The readiness check, bounded: a hung dependency makes it False within serving.ready_timeout_s, never a hang
        (a check still running from before is not started again)."""
        with self._lock:
            if self._readiness is None or self._readiness.done():
                self._readiness = self._checker.submit(self._check_ready)
            pending = self._readiness
        try:
            return pending.result(timeout=LIMITS.ready_timeout_s)
        except FutureTimeout:
            self._error = f"a dependency did not answer the readiness check within {LIMITS.ready_timeout_s} s"
            return False

    @bentoml.api(route="/recommend")
    async def recommend(self, user_id: UserId, scenario: Scenario, k: TopK = LIMITS.default_k, query: Query = None) -> dict:
        """Top-k items for a user in a scenario (search may add a query); unknown users get popular items."""
        if self._recommender is None and await anyio.to_thread.run_sync(self._connect) is None:
            return unavailable(f"recplugin is not ready: {self._error}")
        try:
            answer = await self._batched(RecommendRequest(self.ids.internal(user_id), scenario, k, query or None))
        except InvalidRequest as error:
            return bad_request(str(error))
        except Overloaded as error:
            return unavailable(f"recplugin is overloaded: {error}; retry later")
        except IndexUnavailable as error:
            return unavailable(f"the Milvus item index did not answer: {error}")
        count_answer(answer.model_version, scenario, answer.cold_start)
        # a Response skips BentoML's output model (validation, a JSON schema built per answer, serialisation): the same
        # JSON for 1.10-1.18 ms of the worker's CPU per request at c=32 instead of 1.45-1.52 (ad-hoc, 3k items)
        return JSONResponse(self.ids.answer({**answer.as_dict(), "request_id": new_request_id(answer.model_version)}))

    @bentoml.api(route="/user_vectors")
    def user_vectors(self, user_id: UserId, scenario: Scenario, query: Query = None) -> dict:
        """The user's K interest vectors for the scenario (normalised, the model's embedding size) and the model version,
        for a team's own ANN or ranker; scores are dot products with the items' vectors in the Milvus collection."""
        recommender = self._connect()
        if recommender is None:
            return unavailable(f"recplugin is not ready: {self._error}")
        try:
            return {**recommender.user_vectors(self.ids.internal(user_id), scenario, query or None), "user_id": user_id}
        except InvalidRequest as error:
            return bad_request(str(error))
        except Exception as error:  # online store down or hung: no vectors to give
            logger.warning("user vectors not computed: %s: %s", type(error).__name__, error)
            return unavailable(f"the online store did not answer ({type(error).__name__}: {error}); retry later")

    @bentoml.api(route="/events")
    def events(self, user_id: UserId, item_id: ItemId, scenario: Scenario, action: Action = CONFIG.actions[0],
               event_id: EventId = None, timestamp: EventTime = None, request_id: RequestId = None,
               position: Position = None) -> dict:
        """Record one behaviour; the next /recommend for this user sees it. A 200 means it is stored online and logged,
        once per event_id: retry a failed call with the same event_id (or timestamp) and it is never counted twice."""
        recommender = self._connect()
        if recommender is None:
            return unavailable(f"recplugin is not ready: {self._error}")
        try:
            receipt = recommender.record_event(self.ids.internal(user_id), self.ids.internal(item_id), scenario, action,
                                               event_id, timestamp)
            if request_id and not receipt["duplicate"]:
                self._attribute(recommender, request_id, scenario, action, position)
            return {**receipt, "user_id": user_id}
        except Unprocessable as error:  # an item the served model does not know, a timestamp in the future
            return bad_request(str(error), 422)
        except InvalidRequest as error:
            return bad_request(str(error))
        except Exception as error:  # online store down or hung, user locked too long, log not writable: not acknowledged
            logger.warning("event not recorded: %s: %s", type(error).__name__, error)
            return unavailable(f"the event was not recorded ({type(error).__name__}: {error}); retry later")

    @staticmethod
    def _attribute(recommender: Recommender, request_id: str, scenario: str, action: str, position: int | None) -> None:
        """Count a stored event for the version its answer came from; a registry that does not answer costs the count
        only, never the event (it is stored already)."""
        try:
            count_attributed(version_of(request_id, recommender.known_versions()), scenario, action, position)
        except Exception as error:
            logger.warning("event stored but not attributed to %s: %s: %s", request_id, type(error).__name__, error)

    @bentoml.api(route="/items")
    def add_items(self, items: ItemBodies) -> dict:
        """Add items to the catalogue while serving: their vectors come from the served model's item tower (text), they
        are searchable and accepted by /events at once, on every worker from its next request; items the served model
        already holds are left as they are. `recplugin items load FILE` sends a whole item table."""
        recommender = self._connect()
        if recommender is None:
            return unavailable(f"recplugin is not ready: {self._error}")
        from recplugin.data.live_items import NewItem

        now = time.time()
        new = [NewItem(self.ids.internal(item.item_id), item.title, item.text or item.title, item.category,
                       list(item.scenarios or CONFIG.scenarios), now, item.item_id if isinstance(item.item_id, str) else None)
               for item in items]
        try:
            return recommender.add_items(new)
        except Unprocessable as error:  # an ids-only model has no vector for a new item
            return bad_request(str(error), 422)
        except Exception as error:  # Milvus, the online store or the log did not take them: retry the same call
            logger.warning("items not added: %s: %s", type(error).__name__, error)
            return unavailable(f"the items were not added ({type(error).__name__}: {error}); retry later")

    @bentoml.api(route="/items/hide")
    def hide_items(self, item_ids: ItemIds) -> dict:
        """Take items off the shelf (out of stock, a takedown): no answer holds them from the next request on, on every
        worker; their events are kept. /items/unhide puts them back."""
        return self._change_hidden(item_ids, hide=True)

    @bentoml.api(route="/items/unhide")
    def unhide_items(self, item_ids: ItemIds) -> dict:
        """Put hidden items back on the shelf."""
        return self._change_hidden(item_ids, hide=False)

    def _change_hidden(self, item_ids: list, hide: bool) -> dict:
        recommender = self._connect()
        if recommender is None:
            return unavailable(f"recplugin is not ready: {self._error}")
        internal = {self.ids.internal(item_id) for item_id in item_ids}
        try:
            before = recommender.hidden_items()
            recommender.online.hidden.change(sorted(internal), hide)
            after = recommender.online.hidden.current()
        except Exception as error:  # the store of the hidden set is down or hung: nothing changed for sure
            logger.warning("hidden items not changed: %s: %s", type(error).__name__, error)
            return unavailable(f"the hidden items were not changed ({type(error).__name__}: {error}); retry later")
        return {"hidden": len(after), "changed": len(after ^ before)}


document_service(RecPlugin, api_key_required=bool(os.environ.get(LIMITS.api_key_env)), string_ids=CONFIG.source.string_ids)
# Bodies over serving.max_body_bytes (POST /items: serving.max_items_body_bytes) get 413; when the variable named by serving.api_key_env is set,
# /recommend, /user_vectors and /events need that key in X-API-Key or as a bearer token (401 otherwise).
bound_metrics_labels()
RecPlugin.add_asgi_middleware(RequestGuard, max_body_bytes=LIMITS.max_body_bytes,
                              api_key=os.environ.get(LIMITS.api_key_env, ""), max_items_body_bytes=LIMITS.max_items_body_bytes)
