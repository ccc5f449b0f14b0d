"""Milvus collections per model version: build (never over the served one), count, alias, served lookup, retirement."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient

from recplugin.config import IndexConfig
from recplugin.index.milvus import VECTOR_FIELD, eligibility_field
from recplugin.progress import progress as progress_bar

logger = logging.getLogger("recplugin.index")
VERSION_TAG = "recplugin model version: "


class IndexIncomplete(RuntimeError):
    """A new collection did not end up holding every item; it was dropped and nothing was switched."""


@dataclass(frozen=True)
class IndexChoice:
    """The index a collection gets, with its build parameters."""

    index_type: str
    params: dict


def collection_name(config: IndexConfig, version: str) -> str:
    """A new, Milvus-safe collection name for one build of a model version (a rebuild never reuses the served name)."""
    safe = "".join(c if c.isalnum() else "_" for c in version)
    return f"{config.collection_prefix}_{safe}_{uuid.uuid4().hex[:8]}"


def ivf_lists(num_items: int) -> int:
    """IVF cluster count: about 4 x sqrt(items), between 64 and 16384."""
    return int(min(16384, max(64, 4 * round(num_items ** 0.5))))


def choose_index(config: IndexConfig, num_items: int, server: bool) -> IndexChoice:
    """`index.index_type`, or for `auto`: FLAT on Milvus Lite (it ignores nprobe, so its IVF recall is uncontrolled:
    0.67 at 100k, 0.44 at 1M); on a server FLAT below `flat_index_below` items, IVF_FLAT from there. Measured on the
    server (benchmarks/REPORT.md, Milvus server indexes, filtered top-100, 2 interests): IVF_FLAT nprobe 128 recall@100 0.9998 at
    100k and 0.972 at 1M, p50 6.6 / 9.6 ms; HNSW M16 needed ef 1024 for 0.969 at 1M, at twice the latency."""
    kind = config.index_type
    if kind == "auto":
        kind = "IVF_FLAT" if server and num_items >= config.flat_index_below else "FLAT"
    params = {"FLAT": {}, "IVF_FLAT": {"nlist": ivf_lists(num_items)},
              "HNSW": {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction}}[kind]
    return IndexChoice(kind, params)


def row_count(client: MilvusClient, name: str, timeout: float | None = None) -> int:
    """Rows in the collection, growing segments included (a server's collection stats count flushed segments only)."""
    result = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=timeout)
    return int(result[0]["count(*)"])


def build_collection(client: MilvusClient, config: IndexConfig, version: str, item_ids: np.ndarray, vectors: np.ndarray,
                     categories: list[str], scenarios: list[list[str]], progress: bool = True,
                     scenario_names: list[str] | None = None) -> str:
    """Create and fill a new collection for the version; drop it and raise IndexIncomplete unless every item is in it.

    Each scenario gets a BOOL field `in_<scenario>` (filtering on it costs half what array_contains does).
    """
    names = scenario_names or sorted({name for item in scenarios for name in item})
    name = collection_name(config, version)
    schema = client.create_schema(auto_id=False, description=VERSION_TAG + version)
    schema.add_field("item_id", DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    schema.add_field("category", DataType.VARCHAR, max_length=256)
    schema.add_field("scenarios", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=32, max_length=64)
    for scenario in names:
        schema.add_field(eligibility_field(scenario), DataType.BOOL)
    choice = choose_index(config, len(item_ids), server=supports_aliases(client))  # Milvus Lite has no aliases
    params = client.prepare_index_params()
    params.add_index(field_name=VECTOR_FIELD, index_type=choice.index_type, metric_type="IP", params=choice.params)
    client.create_collection(name, schema=schema, index_params=params)
    try:
        batch = config.insert_batch  # Milvus Lite 2.5 inserts 100k rows in ~8 s in 500-row batches, ~330 s in 20k-row ones
        for start in progress_bar(range(0, len(item_ids), batch), desc="index items", unit="batch", disable=not progress):
            stop = start + batch
            client.insert(name, item_rows(item_ids[start:stop], vectors[start:stop], categories[start:stop],
                                          scenarios[start:stop], names))
        client.flush(name)  # seal the segments so that the server builds the index over them
        wait_for_index(client, name, config.build_timeout_s)
        client.load_collection(name)
        stored = row_count(client, name)
        if stored != len(item_ids):
            raise IndexIncomplete(f"collection {name} holds {stored} of {len(item_ids)} items; nothing was switched")
    except BaseException:
        client.drop_collection(name)
        raise
    return name


def item_rows(item_ids, vectors: np.ndarray, categories: list[str], scenarios: list[list[str]], names: list[str]) -> list[dict]:
    """Collection rows: id, vector, category, scenarios and one `in_<scenario>` flag per scenario."""
    return [{"item_id": int(item_id), VECTOR_FIELD: vector.tolist(), "category": str(category)[:256],
             "scenarios": list(eligible), **{eligibility_field(scenario): scenario in eligible for scenario in names}}
            for item_id, vector, category, eligible in zip(item_ids, vectors, categories, scenarios)]


def upsert_items(client: MilvusClient, name: str, item_ids: list[int], vectors: np.ndarray, categories: list[str],
                 scenarios: list[list[str]], names: list[str], timeout: float | None = None) -> None:
    """Insert or replace items in a live collection (items added while serving); idempotent."""
    client.upsert(name, item_rows(item_ids, vectors, categories, scenarios, names), timeout=timeout)


def wait_for_index(client: MilvusClient, name: str, timeout_s: float) -> None:
    """Block until every row of the collection is indexed: a server builds the index in the background, and a collection
    served before that is searched by brute force over the unindexed segments (1M items: ~60 ms instead of ~10)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = client.describe_index(name, client.list_indexes(name)[0])
        pending = int(described.get("pending_index_rows", 0) or 0)
        if described.get("state", "Finished") == "Finished" and pending == 0:
            return
        if time.monotonic() > deadline:
            raise IndexIncomplete(f"collection {name}: the index was not built within {timeout_s:.0f} s "
                                  f"({pending} rows pending); nothing was switched")
        time.sleep(1.0)


def collection_version(client: MilvusClient, name: str, timeout: float | None = None) -> str:
    """The model version a collection was built for (kept in its description)."""
    description = client.describe_collection(name, timeout=timeout).get("description", "")
    if not description.startswith(VERSION_TAG):
        raise LookupError(f"collection {name!r} was not built by recplugin (description {description!r})")
    return description[len(VERSION_TAG):]


def collection_index(client: MilvusClient, name: str, timeout: float | None = None) -> str:
    """The vector index type of a collection (FLAT, IVF_FLAT, HNSW, ...)."""
    for index in client.list_indexes(name, timeout=timeout):
        described = client.describe_index(name, index, timeout=timeout)
        if described.get("field_name", VECTOR_FIELD) == VECTOR_FIELD:
            return str(described["index_type"])
    raise LookupError(f"collection {name!r} has no vector index")


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
    if alias in client.list_aliases().get("aliases", []):
        client.alter_alias(collection, alias)
    else:
        client.create_alias(collection, alias)


def alias_target(client: MilvusClient, alias: str, timeout: float | None = None) -> str | None:
    """The collection the alias names, or None."""
    if alias not in client.list_aliases(timeout=timeout).get("aliases", []):
        return None
    return client.describe_alias(alias, timeout=timeout)["collection_name"]


def drop_collection(client: MilvusClient, name: str) -> None:
    """Drop a collection and any alias on it first (a server keeps, hidden, the alias of a dropped collection)."""
    if supports_aliases(client):
        for alias in client.list_aliases(collection_name=name).get("aliases", []):
            client.drop_alias(alias)
    client.drop_collection(name)


def retire_collections(client: MilvusClient, config: IndexConfig, served: str, keep: set[str], grace_s: float) -> list[str]:
    """After a switch to `served`, wait `grace_s`, then drop this prefix's other collections except those in `keep`."""
    stale = [name for name in client.list_collections() if name.startswith(config.collection_prefix + "_")
             and name != served and name not in keep]
    if stale and grace_s > 0:
        logger.info("dropping %d replaced collection(s) in %.0f s", len(stale), grace_s)
        time.sleep(grace_s)
    for name in stale:
        drop_collection(client, name)
    return stale
