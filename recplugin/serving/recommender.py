"""The serving logic behind the HTTP API: Feast online features -> user tower -> Milvus, plus live events."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import pandas as pd
from pymilvus.client.types import LoadState

from recplugin.config import RecConfig
from recplugin.data.live_events import log_to_append
from recplugin.data.live_items import NewItem
from recplugin.features.history import UserState
from recplugin.features.online import OnlineFeatures
from recplugin.index.collections import alias_target, collection_index, collection_version, row_count, supports_aliases
from recplugin.index.milvus import MILVUS_ERRORS, connect, disconnect, milvus_reason, search_many
from recplugin.models.artifact import NoTextTower, RetrievalModel
from recplugin.models.exclusion import excluded_items
from recplugin.models.inputs import NO_QUERY, ScenarioEvents, build_batch
from recplugin.registry.models import ModelRegistry, Rollout, UnknownVersion, UntrustedArtifact, confined_artifact
from recplugin.serving.catalogue import Catalogue
from recplugin.serving.messages import (IndexUnavailable, InvalidRequest, NotReady, Recommendation, RecommendRequest, Served,
                                        Unprocessable, UnknownItem)
from recplugin.serving.events import LiveEvent, record_once
from recplugin.serving.rollout import gets_candidate


logger = logging.getLogger("recplugin.serving")


class Recommender:
    """Resolves the served model through the Milvus alias (or the registry's serving row), answers requests, and
    follows the served version: every `serving.reload_interval_s` it looks again and switches model and collection."""

    def __init__(self, config: RecConfig):
        self.config = config
        self.timeout = config.index.rpc_timeout_s
        self.event_log = log_to_append(config.live_events_path, config.serving.event_log_per_host)
        self.registry = ModelRegistry(config.registry_sqlalchemy_url)
        self.milvus = connect(config.milvus_uri, timeout=self.timeout, borrow=False)  # never on another process's server
        self._stop = threading.Event()
        self.feast_lock = threading.Lock()
        # a batch's scenario searches overlap: each waits on Milvus while another parses its hits (batch of 16: -12%)
        self._searches = ThreadPoolExecutor(len(config.scenarios), thread_name_prefix="recplugin-search")
        try:
            self.online = OnlineFeatures(config)
            self.catalogue = Catalogue(config, self.online, self.online_store, self.milvus)
            self.served = self._load_served(self._served_collection())
        except Exception:
            self.close()
            raise
        self.candidate: tuple[Rollout, Served] | None = None
        try:
            self._follow_rollout()
        except Exception as error:  # the candidate is not loadable: everyone gets the serving version
            logger.warning("rollout not followed, serving %s to every user: %s", self.served.model.version, error)
        self._hidden: frozenset[int] = frozenset()
        self._versions: tuple[float, set[str]] = (0.0, set())
        self._follower = threading.Thread(target=self._follow, name="recplugin-follow-version", daemon=True)
        self._follower.start()

    @contextmanager
    def online_store(self) -> Iterator[None]:
        """This worker's turn at the Feast client (not thread-safe), waited for at most twice the online timeout: a hung
        store fails the waiting requests too (flagged popular items, or a 503 event), not only the one inside."""
        wait = 2 * self.config.feast.online_timeout_s
        if not self.feast_lock.acquire(timeout=wait):
            raise TimeoutError(f"the online store is busy or hung: no turn at it within {wait:.1f} s")
        try:
            yield
        finally:
            self.feast_lock.release()

    @property
    def model(self) -> RetrievalModel:
        """The model being served now."""
        return self.served.model

    def _served_collection(self) -> str:
        """The alias's collection; on Milvus Lite, which has no aliases, the registry's serving version's collection."""
        if supports_aliases(self.milvus):
            collection = alias_target(self.milvus, self.config.index.alias, timeout=self.timeout)
            if collection is None:
                raise NotReady(f"Milvus alias {self.config.index.alias!r} does not exist yet: run `recplugin index` first")
            return collection
        try:
            return self.registry.latest(status="serving").collection
        except UnknownVersion:
            raise NotReady("no model version is serving in the registry yet: run `recplugin index` first") from None

    def _load_served(self, collection: str) -> Served:
        """Collection -> its model version -> registry row -> artifact -> item count, refusing any disagreement."""
        if not self.milvus.has_collection(collection, timeout=self.timeout):
            raise NotReady(f"Milvus has no collection {collection!r}, which the registry says is serving")
        try:
            version = self.registry.get(collection_version(self.milvus, collection, timeout=self.timeout))
        except LookupError:  # built before collections carried their version: the registry row names it
            version = self.registry.by_collection(collection)
        try:
            artifact = confined_artifact(self.config.models_dir, version.artifact_uri)
        except UntrustedArtifact as error:
            raise NotReady(str(error)) from None
        model = RetrievalModel(str(artifact))
        if model.version != version.version:
            raise NotReady(f"artifact holds model {model.version} but the registry says {version.version}")
        model.warm_up()  # readiness means ready: search queries included
        self.milvus.load_collection(collection, timeout=self.timeout)
        indexed = row_count(self.milvus, collection, timeout=self.timeout)
        if indexed < len(model.item_ids):  # more: items added while serving
            raise NotReady(f"collection {collection} has {indexed} items but model {version.version} has {len(model.item_ids)}")
        self.catalogue.sync(model, collection)  # items added while serving, into this version's table (and collection)
        return Served(collection, model, collection_index(self.milvus, collection, timeout=self.timeout))

    def refresh(self) -> bool:
        """Switch to the served version if it changed (model and collection at once), then follow the rollout; True
        when the served version switched."""
        collection = self._served_collection()
        switched = collection != self.served.collection
        if switched:
            served = self._load_served(collection)
            previous, self.served = self.served, served
            logger.info("now serving model %s from %s (was %s)", served.model.version, collection, previous.model.version)
        self._follow_rollout()
        return switched

    def _follow_rollout(self) -> None:
        """Load the registry's rollout candidate (once per version), or drop it when the rollout ended or it serves."""
        rollout, current = self.registry.rollout(), self.candidate
        if rollout is None or rollout.version == self.served.model.version:
            self.candidate = None
        elif current is not None and current[1].model.version == rollout.version:
            self.candidate = (rollout, current[1])  # a new share: the same model
        else:
            entry = self.registry.get(rollout.version)
            if not entry.collection:
                raise NotReady(f"rollout candidate {rollout.version} has no Milvus collection: index it with --candidate")
            self.candidate = (rollout, self._load_served(entry.collection))
            logger.info("rollout: %s answers %g%% of users beside %s", rollout.version, rollout.share, self.served.model.version)

    def _follow(self) -> None:
        """Background loop: look for a new served version every reload interval; keep the current one on any error."""
        while not self._stop.wait(self.config.serving.reload_interval_s):
            try:
                self.refresh()
            except Exception as error:  # the served version stays until the new one is complete and reachable
                logger.warning("could not switch model version, still serving %s: %s", self.served.model.version, error)

    def check_scenario(self, scenario: str) -> int:
        """The scenario's index, or InvalidRequest naming the allowed scenarios."""
        if scenario not in self.config.scenarios:
            raise InvalidRequest(f"scenario {scenario!r} is unknown; allowed: {self.config.scenarios}")
        return self.config.scenarios.index(scenario)

    def user_state(self, user_id: int) -> UserState | None:
        """The user's state from the online store."""
        with self.online_store():
            return self.online.user_states([user_id])[0]

    def recommend(self, user_id: int, scenario: str, k: int, query: str | None = None) -> Recommendation:
        """Top-k items for the user in the scenario, excluding what the user already interacted with."""
        answer = self.recommend_many([RecommendRequest(user_id, scenario, k, query)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def recommend_many(self, requests: list[RecommendRequest]) -> list[Recommendation | Exception]:
        """A batch of requests: per version answering (the serving one, and a rollout's candidate for its share of
        users), one Feast read, one user-tower forward, one Milvus call per scenario.

        A request's own mistake comes back as its InvalidRequest; a Milvus failure fails the whole batch.
        """
        served, candidate = self.served, self.candidate  # fixed for the whole batch, even if a version switches meanwhile
        hidden = self.hidden_items()
        if candidate is None:
            return self._answer(served, requests, hidden)
        chosen = [gets_candidate(candidate[0], request.user_id) for request in requests]
        answers: list[Recommendation | Exception | None] = [None] * len(requests)
        for flag, version in ((False, served), (True, candidate[1])):
            positions = [p for p, c in enumerate(chosen) if c == flag]
            if positions:
                for position, answer in zip(positions, self._answer(version, [requests[p] for p in positions], hidden)):
                    answers[position] = answer
        return answers

    def _answer(self, served: Served, requests: list[RecommendRequest], hidden: frozenset[int]) -> list[Recommendation | Exception]:
        """One version's answers to a batch, hidden items left out."""
        self.follow_new_items(served)
        answers: list[Recommendation | Exception | None] = [None] * len(requests)
        valid = []
        for position, request in enumerate(requests):
            try:
                self.check_scenario(request.scenario)
                valid.append(position)
            except InvalidRequest as error:
                answers[position] = error
        try:
            with self.online_store():
                states = self.online.user_states(sorted({requests[p].user_id for p in valid}))
        except Exception as error:  # an unreachable online store degrades to popular items, flagged
            logger.warning("Feast online read failed, answering with popular items: %s", error)
            reason = f"feature store unavailable ({type(error).__name__}); popular items"
            for position in valid:
                answers[position] = served.popular(requests[position].scenario, requests[position].k, reason, hidden)
            return answers
        by_user = {state_user: state for state_user, state in zip(sorted({requests[p].user_id for p in valid}), states)}
        known = [p for p in valid if by_user[requests[p].user_id] is not None]
        for position in valid:
            if by_user[requests[position].user_id] is None:
                answers[position] = served.popular(requests[position].scenario, requests[position].k, hidden=hidden)
        if known:
            self._retrieve(served, [requests[p] for p in known], [by_user[requests[p].user_id] for p in known], hidden,
                           lambda index, answer: answers.__setitem__(known[index], answer))
        return answers

    def _interests(self, served: Served, states: list[UserState], scenarios: list[str], queries: list[str | None]):
        """The user tower over each state: every row's K interest vectors for its scenario (and search query)."""
        histories = [[ScenarioEvents(h.item_ids, h.actions, h.timestamps) for h in state.histories.values()] for state in states]
        batch = build_batch(histories, [self.config.scenarios.index(s) for s in scenarios], [NO_QUERY] * len(states),
                            self.config.model.max_sequence_length, served.model.id_to_row)
        return served.model.user_vectors(batch, queries)

    def user_vectors(self, user_id: int, scenario: str, query: str | None = None) -> dict:
        """The scenario's K interest vectors for a team's own ANN or ranker (none for an unknown user), with the model
        version that made them; an online-store failure is raised (there is no meaningful fallback vector)."""
        self.check_scenario(scenario)
        served = self.served
        with self.online_store():
            state = self.online.user_states([user_id])[0]
        vectors = [] if state is None else self._interests(served, [state], [scenario], [query])[0].tolist()
        return {"user_id": user_id, "scenario": scenario, "model_version": served.model.version, "known_user": state is not None,
                "vectors": [[round(float(x), 7) for x in vector] for vector in vectors]}

    def known_versions(self) -> set[str]:
        """The registry's model versions, read again at most every reload interval (attribution labels come from it)."""
        read_at, versions = self._versions
        if time.monotonic() - read_at > self.config.serving.reload_interval_s:
            versions = {entry.version for entry in self.registry.list()}
            self._versions = (time.monotonic(), versions)
        return versions

    def follow_new_items(self, served: Served) -> None:
        """Items another worker added since the last batch, into this worker's table; on any error, at the next batch."""
        try:
            self.catalogue.sync(served.model, served.collection)
        except Exception as error:  # the shared set or Milvus did not answer: answers go on without the newest items
            logger.warning("items added while serving not followed yet: %s: %s", type(error).__name__, error)

    def add_items(self, items: list[NewItem]) -> dict:
        """Add items to the served version now (and to every worker from its next batch); known items are left as they are."""
        served = self.served
        unknown = [s for item in items for s in item.scenarios if s not in self.config.scenarios]
        if unknown:
            raise InvalidRequest(f"scenarios {unknown[0]!r} is unknown; allowed: {self.config.scenarios}")
        try:
            return self.catalogue.add(served.model, served.collection, items)
        except NoTextTower as error:
            raise Unprocessable(str(error)) from None

    def hidden_items(self) -> frozenset[int]:
        """The items off the shelf now (read once per batch); the last set read when its store does not answer."""
        try:
            self._hidden = self.online.hidden.current()
        except Exception as error:  # the store is down or hung: keep hiding what was hidden
            logger.warning("hidden items not read, the last set read applies: %s", error)
        return self._hidden

    def _retrieve(self, served: Served, requests: list[RecommendRequest], states: list[UserState], hidden: frozenset[int],
                  put) -> None:
        """User tower for all requests at once, then one Milvus search per scenario among them, hidden items left out."""
        interests = self._interests(served, states, [r.scenario for r in requests], [r.query for r in requests])
        mode = self.config.serving.exclude_seen
        seen = [set(excluded_items([i for h in state.histories.values() for i in h.item_ids], sorted(state.seen), mode).tolist())
                | hidden for state in states]
        groups = {s: [i for i, r in enumerate(requests) if r.scenario == s] for s in {r.scenario for r in requests}}
        searches = [(group, self._searches.submit(search_many, self.milvus, served.collection, interests[group],
                                                  max(requests[i].k for i in group), scenario, [seen[i] for i in group],
                                                  self.config.index, served.index_type, merge=self.config.serving.merge))
                    for scenario, group in groups.items()]
        for group, search in searches:
            try:
                found = search.result()
            except MILVUS_ERRORS as error:  # the whole batch fails: each request gets a 503 that names the reason
                raise IndexUnavailable(milvus_reason(error, self.timeout)) from error
            for index, hits in zip(group, found):
                items = [{"item_id": h.item_id, "score": round(h.score, 6)} for h in hits[:requests[index].k]]
                put(index, Recommendation(items, served.model.version, False))

    def record_event(self, user_id: int, item_id: int, scenario: str, action: str, event_id: str | None = None,
                     timestamp_s: float | None = None) -> dict:
        """Append one behaviour to the user's state, push it online and log it for the offline source, exactly once per
        event id (the client's, one derived from the content and `timestamp_s`, or a new one: then a retry counts twice)."""
        self.check_scenario(scenario)
        if action not in self.config.actions:
            raise InvalidRequest(f"action {action!r} is unknown; allowed: {self.config.actions}")
        if int(item_id) not in self.served.model.id_to_row:
            self.follow_new_items(self.served)  # added on another worker a moment ago?
        if int(item_id) not in self.served.model.id_to_row:
            raise UnknownItem(f"item_id {item_id} is not in the catalogue of model {self.served.model.version}; "
                              "add it with POST /items (or `recplugin items load`)")
        if timestamp_s is not None and timestamp_s > pd.Timestamp.now(tz="UTC").timestamp() + self.config.serving.max_clock_skew_s:
            raise Unprocessable(f"timestamp {timestamp_s} is in the future; allowed: unix seconds up to now + "
                                 f"serving.max_clock_skew_s ({self.config.serving.max_clock_skew_s:g} s)")
        return record_once(self.config, self.online, self.online_store, self.event_log,
                           LiveEvent(user_id, int(item_id), scenario, action, event_id, timestamp_s))

    def ready(self) -> bool:
        """True when the online store answers and the served Milvus collection is loaded."""
        with self.online_store():
            self.online.ping()
        # loaded, not only present: a restarted Milvus server lists the collection ~30 s before it can search it
        state = self.milvus.get_load_state(self.served.collection, timeout=self.timeout).get("state")
        return state == LoadState.Loaded

    def close(self) -> None:
        """Stop following versions; release the Milvus connection (and a Milvus Lite file's lock)."""
        self._stop.set()
        self._searches.shutdown(wait=False)
        disconnect(self.milvus, self.config.milvus_uri)
