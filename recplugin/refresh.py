"""`recplugin refresh`: the daily retrain with a gate. Fold live events and items, materialise, snapshot, train from the
serving version's weights, judge the candidate and the serving version on the same newest test split, and serve the
candidate only if it is not worse by more than `training.refresh_tolerance`; one refresh at a time (a registry lock)."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from recplugin import pipeline
from recplugin.config import RecConfig
from recplugin.registry.models import ModelRegistry, UnknownVersion, confined_artifact

LOCK = "refresh"


class RefreshBusy(RuntimeError):
    """Another refresh holds the registry lock."""


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did and why."""

    candidate: str
    serving: str | None
    candidate_ndcg: float
    serving_ndcg: float | None
    promoted: bool
    reason: str


def refresh(config: RecConfig, progress: bool = True) -> RefreshOutcome:
    """One gated retrain; raises RefreshBusy when another one runs."""
    registry = ModelRegistry(config.registry_sqlalchemy_url)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    held_by = registry.try_lock(LOCK, holder, config.training.refresh_lock_ttl_h * 3600)
    if held_by is not None:
        raise RefreshBusy(f"another refresh is running ({held_by}); nothing was done")
    try:
        return _refresh(config, registry, progress)
    finally:
        registry.unlock(LOCK, holder)


def _refresh(config: RecConfig, registry: ModelRegistry, progress: bool) -> RefreshOutcome:
    from recplugin.training.compare import judged_metrics
    from recplugin.training.dataset import load_catalog

    pipeline.apply(config, progress=progress)
    pipeline.materialize(config)
    pipeline.build_training_set(config)
    try:
        serving = registry.latest(status="serving")
        serving_dir = confined_artifact(config.models_dir, serving.artifact_uri)
    except UnknownVersion:
        serving = serving_dir = None
    warm = serving_dir if config.training.warm_start else None
    candidate = pipeline.train(config, progress=progress, warm_start_from=warm)
    catalog = load_catalog(config.catalog_path)
    judge = lambda artifact: judged_metrics(artifact, catalog, config.snapshot_path, config.scenarios,  # noqa: E731
                                            config.serving.exclude_seen)["overall"]["NDCG@10"]
    candidate_ndcg = judge(candidate.artifact_dir)
    if serving_dir is None:
        pipeline.index(config, candidate.version, progress=progress)
        return RefreshOutcome(candidate.version, None, candidate_ndcg, None, True, "nothing was serving")
    serving_ndcg = judge(serving_dir)
    bar = serving_ndcg * (1 - config.training.refresh_tolerance)
    if candidate_ndcg < bar:
        return RefreshOutcome(candidate.version, serving.version, candidate_ndcg, serving_ndcg, False,
                              f"test NDCG@10 {candidate_ndcg:.4f} is below {bar:.4f} (the serving version's {serving_ndcg:.4f} "
                              f"less training.refresh_tolerance {config.training.refresh_tolerance:g}); still serving "
                              f"{serving.version}")
    try:
        pipeline.index(config, candidate.version, progress=progress)
    except pipeline.WorseThanPopularity as error:
        return RefreshOutcome(candidate.version, serving.version, candidate_ndcg, serving_ndcg, False, str(error))
    return RefreshOutcome(candidate.version, serving.version, candidate_ndcg, serving_ndcg, True,
                          f"test NDCG@10 {candidate_ndcg:.4f} vs the serving version's {serving_ndcg:.4f} on the same split")
