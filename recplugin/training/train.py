"""train(): a plain function from snapshot + catalogue to a model artifact (imports torch, transformers, numpy, pyarrow only)."""
from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recplugin.config import RecConfig
from recplugin.models.artifact import save_artifact
from recplugin.models.item_tower import TextEncoder, cached_encode
from recplugin.models.losses import LearnableTemperature, multi_positive_infonce
from recplugin.models.two_tower import TwoTower, max_interest_scores
from recplugin.training import evaluate as ev
from recplugin.training.dataset import Catalog, LabelledSplit, Snapshot, load_catalog, load_snapshot, target_windows
from recplugin.training.plots import plot_curves


@dataclass
class TrainResult:
    """Where the artifact went and what it scored."""

    version: str
    artifact_dir: Path
    metrics: dict
    curve: list[dict] = field(default_factory=list)
    table: str = ""


def pick_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def new_version() -> str:
    """A sortable, unique model version name."""
    return time.strftime("v%Y%m%d_%H%M%S_") + secrets.token_hex(2)


def model_ranks(model: TwoTower, split: LabelledSplit, query_vectors: torch.Tensor, device: torch.device) -> np.ndarray:
    """Full-ranking ranks of the split's targets under the model."""
    model.eval()
    with torch.no_grad(), autocast(device):
        items = model.all_item_vectors().float()

        def score(index: np.ndarray) -> torch.Tensor:
            users = model.user_vectors(split.inputs.take(index).to_torch(device), query_vectors).float()
            return max_interest_scores(users, items)

        return ev.ranks_for(score, split.target_rows, split.seen)


def popularity_ranks(popularity: torch.Tensor, split: LabelledSplit) -> np.ndarray:
    """Full-ranking ranks under per-scenario popularity."""
    return ev.ranks_for(lambda index: popularity[split.inputs.target_scenario[index]], split.target_rows, split.seen)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


@dataclass
class LossInputs:
    """What the loss needs besides the batch: target windows, item popularity for logQ, the temperature."""

    windows: np.ndarray
    log_popularity: torch.Tensor
    temperature: LearnableTemperature


def loss_inputs(split: LabelledSplit, config: RecConfig, num_items: int, device: torch.device) -> LossInputs:
    """Target windows of the training rows, log item popularity among training targets, a fresh temperature."""
    settings = config.training
    counts = np.bincount(split.target_rows, minlength=num_items) + 1.0
    return LossInputs(target_windows(split, settings.target_window),
                      torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=device),
                      LearnableTemperature(settings.temperature, settings.max_logit_scale, settings.learn_temperature).to(device))


def batch_loss(model: TwoTower, split: LabelledSplit, index: np.ndarray, extra: LossInputs, query_vectors: torch.Tensor,
               config: RecConfig, device: torch.device, generator: np.random.Generator) -> torch.Tensor:
    """Multi-positive InfoNCE for one batch: window targets, in-batch + shared random negatives, masks, logQ."""
    settings = config.training
    num_items = model.text_vectors.shape[0]
    rows = torch.as_tensor(extra.windows[index], device=device)
    valid = rows >= 0
    negatives = torch.as_tensor(generator.integers(0, num_items, settings.random_negatives), device=device)
    with autocast(device):
        users = model.user_vectors(split.inputs.take(index).to_torch(device), query_vectors).float()
        vectors = model.item_vectors(torch.cat([rows[valid], negatives])).float()
    count = int(valid.sum())
    targets = vectors.new_zeros(*rows.shape, vectors.shape[1]).masked_scatter(valid[..., None], vectors[:count])
    log_q = None
    if settings.logq_correction:  # in-batch targets are drawn by popularity, the shared pool uniformly
        log_q = torch.cat([math.log(count) + extra.log_popularity[rows[valid]],
                           torch.full((len(negatives),), math.log(len(negatives) / num_items), device=device)])
    return multi_positive_infonce(users, targets, rows, vectors[count:], negatives, extra.temperature(), log_q,
                                  settings.false_negative_cosine)


def _train_epoch(model: TwoTower, split: LabelledSplit, extra: LossInputs, query_vectors: torch.Tensor, optimizer, scheduler,
                 config: RecConfig, device: torch.device, generator: np.random.Generator, steps_left: int, bar) -> tuple[float, int]:
    """One pass over shuffled training rows; returns mean loss and steps taken."""
    model.train()
    settings = config.training
    order = generator.permutation(len(split))
    losses = []
    for start in range(0, len(order), settings.batch_size):
        if steps_left <= 0:
            break
        index = order[start:start + settings.batch_size]
        if len(index) < 2:
            continue
        loss = batch_loss(model, split, index, extra, query_vectors, config, device, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        steps_left -= 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{extra.temperature().item():.1f}")
    return (float(np.mean(losses)) if losses else math.nan), len(losses)


def train(config: RecConfig, snapshot_path: Path, catalog_path: Path, out_dir: Path, progress: bool = True) -> TrainResult:
    """Train both towers, keep the epoch with the best validation NDCG@10, evaluate on test, write the artifact."""
    settings = config.training
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    device = pick_device(settings.device)
    catalog = load_catalog(catalog_path)
    snapshot: Snapshot = load_snapshot(snapshot_path, config.scenarios, catalog.id_to_row, config.model.max_sequence_length)
    if settings.only_scenario:  # an isolated single-scenario model (a baseline for the unified one)
        snapshot = snapshot.only_scenario(config.scenarios.index(settings.only_scenario))
    encoder = TextEncoder(config.model.text_encoder, config.model.max_text_tokens, device=str(device))
    cache = config.path("cache")
    text_vectors = torch.as_tensor(cached_encode(encoder, catalog.texts, cache, progress, "encode items"))
    query_vectors = torch.as_tensor(cached_encode(encoder, snapshot.queries, cache, progress, "encode queries")
                                    if snapshot.queries else np.zeros((0, encoder.dim), np.float32)).to(device)
    del encoder
    model = TwoTower(config.model, text_vectors, len(config.scenarios), len(config.actions)).to(device)
    train_split, validation = snapshot.splits["train"], snapshot.splits["validation"]
    steps_per_epoch = math.ceil(len(train_split) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs if settings.max_steps <= 0 else min(settings.max_steps, steps_per_epoch * settings.epochs)
    extra = loss_inputs(train_split, config, len(catalog.item_ids), device)
    optimizer = torch.optim.AdamW([{"params": model.parameters()}, {"params": extra.temperature.parameters(), "weight_decay": 0.0}],
                                  lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup = max(1, total_steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    curve, best_state, best_ndcg, best_epoch, steps_left = [], None, -1.0, 0, total_steps
    bar = tqdm(total=total_steps, desc="train", unit="step", disable=not progress)
    for epoch in range(settings.epochs):
        if steps_left <= 0:
            break
        loss, steps = _train_epoch(model, train_split, extra, query_vectors, optimizer, scheduler, config, device, generator,
                                   steps_left, bar)
        steps_left -= steps
        validation_metrics = ev.metrics_from_ranks(model_ranks(model, validation, query_vectors, device))
        curve.append({"epoch": epoch + 1, "loss": loss, "logit_scale": extra.temperature().item(),
                      **{k: v for k, v in validation_metrics.items() if k != "users"}})
        if validation_metrics["NDCG@10"] > best_ndcg:
            best_ndcg, best_epoch = validation_metrics["NDCG@10"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif settings.patience and epoch - best_epoch >= settings.patience:
            break  # early stopping: validation NDCG@10 has not improved for `patience` epochs
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    result, popularity = evaluate_model(model, snapshot, query_vectors, config, device, catalog)
    version = new_version()
    popular = {name: [[int(catalog.item_ids[r]), float(popularity[index, r])]
                      for r in np.argsort(-popularity[index].numpy(), kind="stable")[:config.serving.max_k]]
               for index, name in enumerate(config.scenarios)}
    artifact_dir = out_dir / version
    save_artifact(artifact_dir, model, config, catalog.item_ids, text_vectors.shape[1], popular, result, version)
    (artifact_dir / "training_curve.json").write_text(json.dumps(curve, indent=2))
    if curve:
        plot_curves(curve, artifact_dir / "training_curve.png")
    table = ev.markdown_table(result)
    (artifact_dir / "metrics.md").write_text(table + "\n")
    return TrainResult(version, artifact_dir, result, curve, table)


def evaluate_model(model: TwoTower, snapshot: Snapshot, query_vectors: torch.Tensor, config: RecConfig,
                   device: torch.device, catalog: Catalog) -> tuple[dict, torch.Tensor]:
    """Test-split metrics for the model and the popularity baseline (per scenario and overall), and the popularity table.

    With `training.sampled_negatives` > 0, also the sampled protocol: each target against that many random unseen
    items of its own scenario (domain), as in papers that report it.
    """
    train_split, test = snapshot.splits["train"], snapshot.splits["test"]
    num_items = model.text_vectors.shape[0]
    popularity = ev.popularity_scores(train_split.target_rows, train_split.inputs.target_scenario, num_items, len(config.scenarios))
    scenario_ids = test.inputs.target_scenario
    results = {
        "two-tower": ev.per_scenario(model_ranks(model, test, query_vectors, device), scenario_ids, config.scenarios),
        "popularity": ev.per_scenario(popularity_ranks(popularity, test), scenario_ids, config.scenarios),
    }
    negatives = config.training.sampled_negatives
    if negatives:
        pools = {index: catalog.rows_in(name) for index, name in enumerate(config.scenarios)}
        row_pools = [pools[int(s)] for s in scenario_ids]
        model.eval()
        with torch.no_grad(), autocast(device):
            items = model.all_item_vectors().float()
            model_scores = lambda index: max_interest_scores(  # noqa: E731
                model.user_vectors(test.inputs.take(index).to_torch(device), query_vectors).float(), items)
            sampled = ev.sampled_ranks(model_scores, test.target_rows, test.seen, row_pools, negatives)
        popular_sampled = ev.sampled_ranks(lambda index: popularity[scenario_ids[index]], test.target_rows, test.seen, row_pools, negatives)
        results[f"two-tower ({negatives} sampled)"] = ev.per_scenario(sampled, scenario_ids, config.scenarios, ev.SAMPLED_KS)
        results[f"popularity ({negatives} sampled)"] = ev.per_scenario(popular_sampled, scenario_ids, config.scenarios, ev.SAMPLED_KS)
    return results, popularity
