"""Milvus item search: connections, the scenario filter, max-over-interests top-k of unseen items, never short."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import numpy as np
from pymilvus import MilvusClient, MilvusException

from recplugin.config import IndexConfig
from recplugin.index import lite_guard
from recplugin.models.merge import interleaved

VECTOR_FIELD = "vector"
# pymilvus 3 asks Milvus Lite for AllocTimestamp, which it does not implement; the call is optional and the log is noise.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Hit:
    """One retrieved item and its score (best cosine over the user's interest vectors)."""

    item_id: int
    score: float


MILVUS_ERRORS = (MilvusException, grpc.RpcError)  # a deadline (a hung server) comes as a bare gRPC error


def milvus_reason(error: Exception, timeout_s: float | None) -> str:
    """What went wrong with a Milvus call, in one line."""
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name} after {timeout_s} s" if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED \
            else f"{error.code().name}: {error.details()}"
    return error.message


# pymilvus pings every 10 s even with no call in flight; `milvus-lite server` (gRPC defaults) answers an idle client's
# pings with GOAWAY "too_many_pings" and the reconnect then fails. Ping only while calls are in flight.
IDLE_SAFE_KEEPALIVE = {"grpc.keepalive_time_ms": 60_000, "grpc.keepalive_permit_without_calls": False}


def connect(uri: str, timeout: float | None = None, borrow: bool = True) -> MilvusClient:
    """A client for a Milvus server URI or a Milvus Lite file; `timeout` bounds the connection attempt. A Milvus Lite file
    another process serves is used through that process's server when `borrow` (for as long as it runs), else refused."""
    if "://" in uri:
        return MilvusClient(uri, grpc_options=IDLE_SAFE_KEEPALIVE, timeout=timeout)
    try:
        taken = lite_guard.hold(uri)  # before milvus-lite sees the file: it never opens a file another process serves
    except lite_guard.HeldElsewhere as held:
        if not (borrow and held.socket):
            raise
        return MilvusClient(held.socket, grpc_options=IDLE_SAFE_KEEPALIVE, timeout=timeout)
    try:
        try:
            client = MilvusClient(uri, timeout=timeout)
        except MilvusException as error:  # Milvus Lite's server can die while starting (its socket never appears): once more
            logging.getLogger(__name__).warning("Milvus Lite at %s did not start (%s); starting it again", uri, error.message)
            _stop_lite_server(uri)
            client = MilvusClient(uri, timeout=timeout)
        shared_uri(uri)  # says where its server listens
        return client
    except Exception:
        if taken:
            _release_lite(uri)
        raise


def _stop_lite_server(uri: str) -> None:
    """Stop the in-process Milvus Lite server of a file, which holds milvus-lite's lock on it."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def _release_lite(uri: str) -> None:
    """Stop the in-process Milvus Lite server of a file, then let other processes open it."""
    _stop_lite_server(uri)
    lite_guard.release(uri)


def shared_uri(uri: str) -> str:
    """A URI another process on this machine can connect with: a server's as given; for a Milvus Lite file, the socket of
    the server this process runs for it (started by `connect`; a second process may not open the file itself)."""
    if "://" in uri:
        return uri
    from milvus_lite.server_manager import server_manager_instance

    taken = lite_guard.hold(uri)
    socket = server_manager_instance.start_and_get_uri(uri)
    if socket is None:
        if taken:
            lite_guard.release(uri)
        raise MilvusException(message=f"Milvus Lite did not start for {uri}")
    shared = "unix://" + socket.removeprefix("unix:")
    lite_guard.advertise(uri, shared)
    return shared


def disconnect(client: MilvusClient, uri: str) -> None:
    """Close the client; for a Milvus Lite file this process serves, also stop its server."""
    client.close()
    if "://" not in uri and lite_guard.holds(uri):
        _release_lite(uri)


def eligibility_field(scenario: str) -> str:
    """The BOOL field saying an item may be shown in a scenario; only identifiers (configured scenarios) are accepted."""
    if not scenario.isidentifier():
        raise ValueError(f"scenario {scenario!r} is not an identifier")
    return f"in_{scenario}"


def eligibility_filter(scenario: str) -> str:
    """The scenario filter, from a validated name only; no caller string is ever pasted into it."""
    return f"{eligibility_field(scenario)} == true"


def exclusion_filter(scenario: str, exclude: set[int]) -> str:
    """The scenario filter plus `item_id not in [...]`, every id cast to int (never a caller string)."""
    ids = ", ".join(str(int(i)) for i in sorted(exclude))
    return eligibility_filter(scenario) + (f" and item_id not in [{ids}]" if ids else "")


def _best_unseen(per_interest_hits: list, seen: set[int], k: int, limit: int, merge: str = "max") -> tuple[list[Hit], bool]:
    """Top-k of the unseen hits merged over the interests (by max score, or interleaved: each interest in turn adds its
    best item not yet taken), and whether every interest still had k unseen hits (exactness)."""
    unseen_lists, complete = [], True
    for hits in per_interest_hits:
        unseen = [pair for pair in zip(map(int, hits.ids), map(float, hits.distances)) if pair[0] not in seen]
        complete &= len(unseen) >= k or len(hits) < limit  # a short list holds every eligible item
        unseen_lists.append(unseen)
    best: dict[int, float] = {}
    for item_id, score in (pair for unseen in unseen_lists for pair in unseen):
        best[item_id] = max(score, best.get(item_id, -np.inf))
    if merge == "interleave":
        lists = [[item_id for item_id, _ in unseen] for unseen in unseen_lists]
        ranked = [(item_id, best[item_id]) for item_id, _ in interleaved(lists, k)]
    else:
        ranked = sorted(best.items(), key=lambda pair: -pair[1])[:k]
    return [Hit(item_id, score) for item_id, score in ranked], complete


def search_params(index_type: str, config: IndexConfig, limit: int) -> dict:
    """Search parameters for the collection's index: nprobe for IVF, ef >= limit for HNSW (a server refuses ef < limit)."""
    params = {"IVF_FLAT": {"nprobe": config.ivf_nprobe}, "HNSW": {"ef": max(config.hnsw_ef, limit)}}.get(index_type, {})
    return {"metric_type": "IP", "params": params}


MAX_OVERFETCH = 500  # a user with more seen items than this may need a second search of its own


def search_many(client: MilvusClient, collection: str, interests: np.ndarray, k: int, scenario: str,
                exclude: list[set[int]], config: IndexConfig = IndexConfig(), index_type: str = "FLAT",
                overfetch: int | None = None, merge: str = "max") -> list[list[Hit]]:
    """One Milvus call for several users' interest vectors [U, K, E] in one scenario; seen items are dropped after.

    Each interest asks for k + `overfetch` hits (default: the most seen items of any user here, at most MAX_OVERFETCH).
    An item in a user's true top-k by max-over-interests is within the top k unseen hits of the interest that gives it
    its best score, so the answer is exact whenever every interest kept k unseen hits; a user for whom one did not is
    searched again alone with its seen ids in the filter. With k + 2k hits (the old default) 4.5 of a batch of 16 demo
    users needed that second call; read through pymilvus' id and distance columns, the longer pages cost less.
    An ANN index (HNSW) may return short filtered lists: an answer still short of k is filled by further searches that
    exclude what it already holds, so it is only short when the scenario has fewer than k unseen items.
    """
    users, per_user = interests.shape[0], interests.shape[1]
    limit = k + (min(max(map(len, exclude), default=0), MAX_OVERFETCH) if overfetch is None else overfetch)
    results = client.search(collection, data=interests.reshape(users * per_user, -1).tolist(), limit=limit,
                            anns_field=VECTOR_FIELD, filter=eligibility_filter(scenario),
                            search_params=search_params(index_type, config, limit), timeout=config.rpc_timeout_s)
    answers = []
    for user, seen in enumerate(exclude):
        hits, complete = _best_unseen(results[user * per_user:(user + 1) * per_user], seen, k, limit, merge)
        if not complete or len(hits) < k:
            hits = _search_alone(client, collection, interests[user], k, scenario, seen, config, index_type, merge=merge)
        answers.append(hits)
    return answers


def _search_alone(client: MilvusClient, collection: str, interests: np.ndarray, k: int, scenario: str, seen: set[int],
                  config: IndexConfig, index_type: str, rounds: int = 4, merge: str = "max") -> list[Hit]:
    """One user's top-k with its seen ids in the filter, searched again without what it holds while it is short."""
    found: dict[int, float] = {}
    for _ in range(rounds):
        need = k - len(found)
        hits = client.search(collection, data=interests.tolist(), limit=need, anns_field=VECTOR_FIELD,
                             filter=exclusion_filter(scenario, seen | set(found)),
                             search_params=search_params(index_type, config, need), timeout=config.rpc_timeout_s)
        new, _ = _best_unseen(hits, set(), need, need, merge)
        found.update((hit.item_id, hit.score) for hit in new)
        if not new or len(found) >= k:
            break
    ranked = list(found.items()) if merge == "interleave" else sorted(found.items(), key=lambda pair: -pair[1])
    return [Hit(item_id, score) for item_id, score in ranked[:k]]


def search_interests(client: MilvusClient, collection: str, interests: np.ndarray, k: int, scenario: str,
                     exclude: list[int], config: IndexConfig = IndexConfig(), index_type: str = "FLAT",
                     merge: str = "max") -> list[Hit]:
    """One user's interest vectors [K, E]: the best k unseen eligible items, merged over the interests."""
    return search_many(client, collection, interests[None], k, scenario, [{int(i) for i in exclude}], config, index_type,
                       merge=merge)[0]
