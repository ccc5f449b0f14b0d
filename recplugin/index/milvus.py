"""Milvus item index: a collection per model version, an alias (where the server has them), max-over-interests search."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import grpc
from pymilvus import DataType, MilvusClient
from tqdm import tqdm

from recplugin.config import IndexConfig

VECTOR_FIELD = "vector"
# pymilvus 3 asks Milvus Lite for AllocTimestamp, which it does not implement; the call is optional and the log is noise.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


class IndexIncomplete(RuntimeError):
    """A new collection did not end up holding every item; the alias was left where it was."""


@dataclass(frozen=True)
class Hit:
    """One retrieved item and its score (best cosine over the user's interest vectors)."""

    item_id: int
    score: float


def collection_name(config: IndexConfig, version: str) -> str:
    """Milvus-safe collection name for a model version."""
    safe = "".join(c if c.isalnum() else "_" for c in version)
    return f"{config.collection_prefix}_{safe}"


# pymilvus pings every 10 s even with no call in flight; `milvus-lite server` (gRPC defaults) answers an idle client's
# pings with GOAWAY "too_many_pings" and the reconnect then fails. Ping only while calls are in flight.
IDLE_SAFE_KEEPALIVE = {"grpc.keepalive_time_ms": 60_000, "grpc.keepalive_permit_without_calls": False}


def connect(uri: str) -> MilvusClient:
    """A client for a Milvus server URI or a Milvus Lite file."""
    if "://" in uri:
        return MilvusClient(uri, grpc_options=IDLE_SAFE_KEEPALIVE)
    return MilvusClient(uri)


def disconnect(client: MilvusClient, uri: str) -> None:
    """Close the client; for a Milvus Lite file also stop its in-process server, which holds the file's lock."""
    client.close()
    if "://" not in uri:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def ivf_lists(num_items: int) -> int:
    """IVF cluster count: about 4 x sqrt(items), between 64 and 16384."""
    return int(min(16384, max(64, 4 * round(num_items ** 0.5))))


def _index_params(client: MilvusClient, config: IndexConfig, num_items: int):
    """Exact FLAT search below `flat_index_below` items, IVF_FLAT above (for Milvus servers, where nprobe is honoured;
    Milvus Lite 2.5.1 ignores nprobe: measured recall@100 0.67 at 100k and 0.44 at 1M whatever nprobe, so the
    default keeps FLAT at every size)."""
    params = client.prepare_index_params()
    if num_items < config.flat_index_below:
        params.add_index(field_name=VECTOR_FIELD, index_type="FLAT", metric_type="IP")
    else:
        params.add_index(field_name=VECTOR_FIELD, index_type="IVF_FLAT", metric_type="IP", params={"nlist": ivf_lists(num_items)})
    return params


def build_collection(client: MilvusClient, config: IndexConfig, version: str, item_ids: np.ndarray, vectors: np.ndarray,
                     categories: list[str], scenarios: list[list[str]], progress: bool = True,
                     scenario_names: list[str] | None = None) -> str:
    """Create and fill the version's collection; raise IndexIncomplete unless every item is in it.

    Each scenario gets a BOOL field `in_<scenario>` (filtering on it costs half what array_contains does).
    """
    names = scenario_names or sorted({name for item in scenarios for name in item})
    name = collection_name(config, version)
    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, description=f"recplugin items, model {version}")
    schema.add_field("item_id", DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    schema.add_field("category", DataType.VARCHAR, max_length=256)
    schema.add_field("scenarios", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=32, max_length=64)
    for scenario in names:
        schema.add_field(eligibility_field(scenario), DataType.BOOL)
    client.create_collection(name, schema=schema, index_params=_index_params(client, config, len(item_ids)))
    batch = config.insert_batch  # Milvus Lite 2.5 inserts 100k rows in ~8 s in 500-row batches, ~330 s in 20k-row ones
    for start in tqdm(range(0, len(item_ids), batch), desc="index items", unit="batch", disable=not progress):
        stop = start + batch
        client.insert(name, [
            {"item_id": int(i), VECTOR_FIELD: v.tolist(), "category": str(c)[:256], "scenarios": list(s),
             **{eligibility_field(scenario): scenario in s for scenario in names}}
            for i, v, c, s in zip(item_ids[start:stop], vectors[start:stop], categories[start:stop], scenarios[start:stop])
        ])
    client.load_collection(name)
    stored = int(client.get_collection_stats(name)["row_count"])
    if stored != len(item_ids):
        raise IndexIncomplete(f"collection {name} holds {stored} of {len(item_ids)} items; alias not switched")
    return name


def supports_aliases(client: MilvusClient) -> bool:
    """Whether the server has aliases (Milvus servers do; Milvus Lite 2.5 answers UNIMPLEMENTED)."""
    rpc_log = logging.getLogger("pymilvus.decorators")  # logs a traceback for the expected UNIMPLEMENTED
    level = rpc_log.level
    rpc_log.setLevel(logging.CRITICAL)
    try:
        client.list_aliases()
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise
    finally:
        rpc_log.setLevel(level)
    return True


def point_alias(client: MilvusClient, alias: str, collection: str) -> None:
    """Point `alias` at a complete collection (create it, or move it atomically)."""
    existing = client.list_aliases().get("aliases", [])
    if alias in existing:
        client.alter_alias(collection, alias)
    else:
        client.create_alias(collection, alias)


def alias_target(client: MilvusClient, alias: str) -> str | None:
    """The collection the alias names, or None."""
    if alias not in client.list_aliases().get("aliases", []):
        return None
    return client.describe_alias(alias)["collection_name"]


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


def _best_unseen(per_interest_hits: list, seen: set[int], k: int, limit: int) -> tuple[list[Hit], bool]:
    """Max-over-interests top-k of the unseen hits, and whether every interest still had k unseen hits (exactness)."""
    best: dict[int, float] = {}
    complete = True
    for hits in per_interest_hits:
        unseen = 0
        for hit in hits:
            item_id = int(hit["id"] if "id" in hit else hit["item_id"])
            if item_id not in seen:
                unseen += 1
                best[item_id] = max(float(hit["distance"]), best.get(item_id, -np.inf))
        complete &= unseen >= k or len(hits) < limit  # a short list holds every eligible item
    ranked = sorted(best.items(), key=lambda pair: -pair[1])[:k]
    return [Hit(item_id, score) for item_id, score in ranked], complete


def search_many(client: MilvusClient, collection: str, interests: np.ndarray, k: int, scenario: str,
                exclude: list[set[int]], nprobe: int = IndexConfig.ivf_nprobe, overfetch: int | None = None) -> list[list[Hit]]:
    """One Milvus call for several users' interest vectors [U, K, E] in one scenario; seen items are dropped after.

    Each interest asks for k + `overfetch` hits (default: k). An item in a user's true top-k by max-over-interests is
    within the top k unseen hits of the interest that gives it its best score, so the answer is exact whenever every
    interest kept k unseen hits; a user for whom one did not is searched again alone with its seen ids in the filter.
    Fetching k + (all seen) for everyone instead costs more in pymilvus' result parsing than the rare second search.
    """
    users, per_user = interests.shape[0], interests.shape[1]
    limit = k + (k if overfetch is None else overfetch)
    params = {"metric_type": "IP", "params": {"nprobe": nprobe}}
    results = client.search(collection, data=interests.reshape(users * per_user, -1).tolist(), limit=limit,
                            anns_field=VECTOR_FIELD, filter=eligibility_filter(scenario), search_params=params)
    answers = []
    for user, seen in enumerate(exclude):
        hits, complete = _best_unseen(results[user * per_user:(user + 1) * per_user], seen, k, limit)
        if not complete:
            again = client.search(collection, data=interests[user].tolist(), limit=k, anns_field=VECTOR_FIELD,
                                  filter=exclusion_filter(scenario, seen), search_params=params)
            hits, _ = _best_unseen(again, set(), k, k)
        answers.append(hits)
    return answers


def search_interests(client: MilvusClient, collection: str, interests: np.ndarray, k: int, scenario: str,
                     exclude: list[int], nprobe: int = IndexConfig.ivf_nprobe) -> list[Hit]:
    """One user's interest vectors [K, E]: the best k unseen eligible items by max over the interests."""
    return search_many(client, collection, interests[None], k, scenario, [{int(i) for i in exclude}], nprobe)[0]
