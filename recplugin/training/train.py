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

from recplugin.config import RecConfig, TrainingConfig
from recplugin.models.artifact import save_artifact
from recplugin.models.item_tower import TextEncoder, cached_encode, resolve_encoder_path
from recplugin.models.text_model import ItemTextModel
from recplugin.models.two_tower import TwoTower
from recplugin.progress import progress as progress_bar
from recplugin.training import distributed as dist_
from recplugin.training import evaluate as ev
from recplugin.training.assess import evaluate_model, model_ranks
from recplugin.training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from recplugin.training.dataset import Catalog, LabelledSplit, Snapshot, load_catalog, load_snapshot
from recplugin.training.objective import LossInputs, autocast, batch_loss, loss_inputs
from recplugin.training.packing import PackedSplit, pack_split, packed_batches, scenario_balanced_rows
from recplugin.training.plots import plot_curves
from recplugin.training.verdict import Verdict, popularity_validation_ndcg, stop_reason
from recplugin.training.warm_start import warm_start


@dataclass
class TrainResult:
    """Where the artifact went and what it scored."""

    version: str
    artifact_dir: Path
    metrics: dict
    curve: list[dict] = field(default_factory=list)
    table: str = ""
    verdict: Verdict | None = None


def new_version() -> str:
    """A sortable, unique model version name."""
    return time.strftime("v%Y%m%d_%H%M%S_") + secrets.token_hex(2)


def packed_split(split: LabelledSplit, config: RecConfig) -> PackedSplit | None:
    """The split packed for every-position training, each point keeping `training.min_context` of the window (None
    with `training.positions: last`)."""
    if config.training.positions != "all":
        return None
    return pack_split(split, int(config.training.min_context * config.model.max_sequence_length))


def epoch_batches(split: LabelledSplit, packed: PackedSplit | None, settings: TrainingConfig,
                  generator: np.random.Generator) -> list[np.ndarray]:
    """One epoch's shuffled batches: label rows, or packed rows holding about `batch_size` labels; with
    `training.sampling: balanced`, rows drawn so that every scenario's labels weigh equally."""
    batch_size, balanced = settings.batch_size, settings.sampling == "balanced"
    if packed is not None:
        rows = scenario_balanced_rows(packed.cut_scenario, packed.cut_row, len(packed.events), generator) if balanced else None
        return packed_batches(packed, batch_size, generator, rows=rows)
    order = (scenario_balanced_rows(split.inputs.target_scenario, np.arange(len(split)), len(split), generator) if balanced
             else generator.permutation(len(split)))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class RunState:
    """What an epoch loop carries and a checkpoint keeps."""

    epoch: int = 0
    steps_done: int = 0
    curve: list[dict] = field(default_factory=list)
    best_state: dict | None = None
    best_ndcg: float = -1.0
    best_epoch: int = 0
    planned_steps: int = 0  # the steps the LR schedule spans (fitted to training.max_minutes at FIT_AT_STEPS)
    step_cap: int = 0  # the most steps the epochs allow: a refit never plans more
    seconds: float = 0.0  # time spent in training steps


def _train_epoch(model: torch.nn.Module, split: LabelledSplit, packed: PackedSplit | None, extra: LossInputs,
                 query_vectors: torch.Tensor, optimizer, scheduler, config: RecConfig, context: dist_.Context,
                 generator: np.random.Generator, run: RunState, num_items: int, bar) -> float:
    """One pass over shuffled training rows (this rank's share of each batch); returns the mean loss."""
    model.train()
    losses = []
    for batch in epoch_batches(split, packed, config.training, generator):
        if run.steps_done >= run.planned_steps:
            break
        began = time.perf_counter()
        index = context.shard(batch)
        if len(index) < (2 if packed is None else 1):
            continue
        loss = batch_loss(model, split, index, extra, query_vectors, config, context, generator, num_items, packed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        run.steps_done += 1
        run.seconds += time.perf_counter() - began
        if run.steps_done in FIT_AT_STEPS and config.training.max_minutes > 0:
            fit_to_budget(run, scheduler, config.training.max_minutes * 60, context)
            bar.total = run.planned_steps
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{extra.temperature().item():.1f}")
    return float(np.mean(losses)) if losses else math.nan


FIT_AT_STEPS = (20, 200)  # an early plan, one on a pace over more batches (lengths vary); train() refits every epoch


def fit_to_budget(run: RunState, scheduler, budget_s: float, context: dist_.Context) -> None:
    """Plan the steps (and the LR schedule with them) that fit the wall-clock budget at the pace of the steps so far,
    never more than the epochs allow (`run.step_cap`); every rank takes the slowest rank's figure so they stop together."""
    pace = dist_.max_over_ranks(run.seconds / run.steps_done, context)
    run.planned_steps = max(run.steps_done, min(run.step_cap, int(budget_s / pace)))
    for schedule in scheduler.lr_lambdas:
        schedule.total = run.planned_steps


def build_model(config: RecConfig, catalog: Catalog, snapshot: Snapshot, device: torch.device,
                progress: bool) -> tuple[TwoTower, torch.Tensor]:
    """The two towers over cached frozen text vectors, or over a text model to fine-tune; and the query vectors."""
    settings = config.model
    if settings.item_finetune == "frozen":
        encoder = TextEncoder(settings.text_encoder, settings.max_text_tokens, device=str(device))
        cache = config.path("cache")
        text_vectors = torch.as_tensor(cached_encode(encoder, catalog.texts, cache, progress, "encode items"))
        query_vectors = torch.as_tensor(cached_encode(encoder, snapshot.queries, cache, progress, "encode queries")
                                        if snapshot.queries else np.zeros((0, text_vectors.shape[1]), np.float32))
        model = TwoTower(settings, text_vectors, len(config.scenarios), len(config.actions))
        return model.to(device), query_vectors.to(device)
    text_model = ItemTextModel(resolve_encoder_path(settings.text_encoder), settings.max_text_tokens, settings.item_finetune,
                               settings.lora_rank, checkpointing=settings.item_checkpointing).to(device)
    model = TwoTower(settings, None, len(config.scenarios), len(config.actions), text_model, text_model.tokenize(catalog.texts))
    query_vectors = torch.zeros(0, text_model.dim)
    if snapshot.queries:  # queries are encoded once by the starting text model; only item texts fine-tune it
        encoder = TextEncoder(settings.text_encoder, settings.max_text_tokens, device=str(device), model=text_model.eval())
        with autocast(device):
            query_vectors = torch.as_tensor(encoder.encode(snapshot.queries, progress=progress, desc="encode queries"))
    return model.to(device), query_vectors.to(device)


def make_optimizer(model: TwoTower, extra: LossInputs, config: RecConfig, total_steps: int):
    """AdamW (the text model at its own learning rate), cosine schedule with a 5% linear warm-up."""
    settings = config.training
    text_params = [p for p in model.text_model.parameters() if p.requires_grad] if model.text_model is not None else []
    text_ids = {id(p) for p in text_params}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]},
              {"params": extra.temperature.parameters(), "weight_decay": 0.0}]
    if text_params:
        groups.append({"params": text_params, "lr": settings.llm_learning_rate})
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps))


@dataclass
class WarmupCosine:
    """LR factor: linear warm-up over the first 5% of `total` steps, then cosine to zero at `total` (a callable object,
    so LambdaLR checkpoints `total` and a budget can shorten it)."""

    total: int

    def __call__(self, step: int) -> float:
        warmup = max(1, self.total // 20)
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, self.total) / self.total))


def _checkpoint_state(model: TwoTower, extra: LossInputs, optimizer, scheduler, generator: np.random.Generator,
                      run: RunState) -> dict:
    """Everything an exact resume needs."""
    return {"model": model.state_dict(), "temperature": extra.temperature.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": generator.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None, "run": run.__dict__}


def _restore(state: dict, model: TwoTower, extra: LossInputs, optimizer, scheduler, generator: np.random.Generator) -> RunState:
    """Put a checkpoint back into the live objects."""
    model.load_state_dict(state["model"], strict=False)
    extra.temperature.load_state_dict(state["temperature"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.bit_generator.state = state["generator"]
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return RunState(**state["run"])


def train(config: RecConfig, snapshot_path: Path, catalog_path: Path, out_dir: Path, progress: bool = True,
          warm_start_from: Path | None = None) -> TrainResult | None:
    """Train both towers (from a trained artifact's weights with `warm_start_from`), keep the epoch with the best
    validation NDCG@10, evaluate on test, write the artifact.

    Under torchrun (WORLD_SIZE > 1) every rank trains on its share of each batch with all ranks' targets as negatives;
    rank 0 evaluates and writes the artifact, the other ranks return None.
    """
    settings = config.training
    context = dist_.setup(settings.device)
    device = context.device
    torch.manual_seed(settings.seed)
    generator = np.random.default_rng(settings.seed)
    catalog = load_catalog(catalog_path)
    snapshot: Snapshot = load_snapshot(snapshot_path, config.scenarios, catalog.id_to_row, config.model.max_sequence_length,
                                       config.serving.exclude_seen)
    if settings.only_scenario:  # an isolated single-scenario model (a baseline for the unified one)
        snapshot = snapshot.only_scenario(config.scenarios.index(settings.only_scenario))
    model, query_vectors = build_model(config, catalog, snapshot, device, progress and context.is_main)
    if warm_start_from is not None:
        copied = warm_start(model, warm_start_from, catalog.item_ids)
        if progress and context.is_main:
            print(f"warm start from {warm_start_from}: {copied['tensors']} tensors, {copied['item_embeddings']} item embeddings")
    train_split = snapshot.splits["train"]
    validation = snapshot.splits["validation"].sample(settings.max_validation_labels, settings.seed)
    packed = packed_split(train_split, config)
    steps_per_epoch = math.ceil(len(train_split) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs if settings.max_steps <= 0 else min(settings.max_steps, steps_per_epoch * settings.epochs)
    extra = loss_inputs(train_split, config, model.num_items, device, catalog.scenarios)
    optimizer, scheduler = make_optimizer(model, extra, config, total_steps)
    run = RunState()
    checkpoint = checkpoint_path(config, snapshot_path)
    if settings.resume and (saved := load_checkpoint(checkpoint)) is not None:
        run = _restore(saved, model, extra, optimizer, scheduler, generator)
    trained = dist_.wrap(model, context)
    if not (run.planned_steps and settings.max_minutes):  # a resume may change epochs; a fitted budget plan stays
        run.planned_steps = total_steps
    run.step_cap = total_steps
    for schedule in scheduler.lr_lambdas:
        schedule.total = run.planned_steps
    bar = progress_bar(total=run.planned_steps, initial=run.steps_done, desc="train", unit="step",
                       disable=not (progress and context.is_main))
    while run.epoch < settings.epochs and run.steps_done < run.planned_steps:
        loss = _train_epoch(trained, train_split, packed, extra, query_vectors, optimizer, scheduler, config, context, generator, run,
                            model.num_items, bar)
        validation_metrics = ev.metrics_from_ranks(model_ranks(model, validation, query_vectors, device))
        run.curve.append({"epoch": run.epoch + 1, "loss": loss, "logit_scale": extra.temperature().item(),
                          "steps": run.steps_done, "train_s": round(run.seconds, 1),
                          **{k: v for k, v in validation_metrics.items() if k != "users"}})
        # refit on the pace so far: a plan that overran stops here; one that ended in this epoch stays ended (its LR
        # has reached zero, so a later, faster pace would only add a sliver of an epoch at LR ~0)
        if settings.max_minutes > 0 and 0 < run.steps_done < run.planned_steps:
            fit_to_budget(run, scheduler, settings.max_minutes * 60, context)
            bar.total = run.planned_steps
        if validation_metrics["NDCG@10"] > run.best_ndcg:
            run.best_ndcg, run.best_epoch = validation_metrics["NDCG@10"], run.epoch
            run.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        run.epoch += 1
        if progress and context.is_main:
            bar.write(f"epoch {run.epoch}: loss {loss:.4f}, validation NDCG@10 {validation_metrics['NDCG@10']:.4f}, "
                      f"Recall@10 {validation_metrics['Recall@10']:.4f}")
        if context.is_main:
            save_checkpoint(checkpoint, _checkpoint_state(model, extra, optimizer, scheduler, generator, run))
        if settings.patience and run.epoch - 1 - run.best_epoch >= settings.patience:
            break  # early stopping: validation NDCG@10 has not improved for `patience` epochs
    bar.close()
    dist_.teardown(context)
    if not context.is_main:
        return None
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    best_epoch = run.best_epoch + 1
    reason = stop_reason(settings, run.epoch, best_epoch, run.steps_done, run.planned_steps)
    verdict = Verdict(run.epoch, best_epoch, reason, max(run.best_ndcg, 0.0),
                      popularity_validation_ndcg(train_split, validation, model.num_items, len(config.scenarios)))
    return _finish(model, snapshot, catalog, query_vectors, config, device, out_dir, run.curve, verdict)


def _finish(model: TwoTower, snapshot: Snapshot, catalog: Catalog, query_vectors: torch.Tensor, config: RecConfig,
            device: torch.device, out_dir: Path, curve: list[dict], verdict: Verdict) -> TrainResult:
    """Test metrics, the artifact (weights, item vectors, a fine-tuned text model, the verdict), the curve plot (with
    popularity's validation NDCG@10 as a line) and the table."""
    result, popularity = evaluate_model(model, snapshot, query_vectors, config, device, catalog)
    version = new_version()
    popular = {name: [[int(catalog.item_ids[r]), float(popularity[index, r])]
                      for r in np.argsort(-popularity[index].numpy(), kind="stable")[:config.serving.max_k]]
               for index, name in enumerate(config.scenarios)}
    artifact_dir = out_dir / version
    save_artifact(artifact_dir, model, config, catalog.item_ids, model.text_dim, popular, result, version)
    (artifact_dir / "training_curve.json").write_text(json.dumps(curve, indent=2))
    if curve:
        verdict.curve_path = str(plot_curves(curve, artifact_dir / "training_curve.png", verdict.popularity_ndcg))
    verdict.save(artifact_dir)
    table = ev.markdown_table(result)
    (artifact_dir / "metrics.md").write_text(table + "\n")
    return TrainResult(version, artifact_dir, result, curve, table, verdict)
