"""Training beyond the defaults: exact resume from checkpoints, item-LLM fine-tuning, data-parallel with torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from recplugin.config import save_config, with_overrides
from recplugin.models.artifact import TEXT_ENCODER, RetrievalModel
from recplugin.training import train as train_module
from recplugin.training.checkpoint import checkpoint_path
from tests.conftest import tiny_qwen_folder

pytestmark = pytest.mark.integration


def _short(config, tmp_path: Path, **training):
    return with_overrides(config, training={"epochs": 3, "max_steps": 0, "checkpoint_dir": str(tmp_path / "ckpt"),
                                            "scenario_ranking": True, **training})


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(built_pipeline, tmp_path):
    config = built_pipeline.config
    straight = train_module.train(_short(config, tmp_path / "a"), config.snapshot_path, config.catalog_path, tmp_path / "a",
                                  progress=False)
    crashing = _short(config, tmp_path / "b")
    real_epoch, calls = train_module._train_epoch, []

    def crash_in_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("injected crash")
        return real_epoch(*args, **kwargs)

    with mock.patch.object(train_module, "_train_epoch", crash_in_third_epoch), pytest.raises(KeyboardInterrupt):
        train_module.train(crashing, config.snapshot_path, config.catalog_path, tmp_path / "b", progress=False)
    saved = torch.load(checkpoint_path(crashing, config.snapshot_path), weights_only=False)
    assert saved["run"]["epoch"] == 2
    resumed = train_module.train(with_overrides(crashing, training={"resume": True}), config.snapshot_path,
                                 config.catalog_path, tmp_path / "b", progress=False)
    assert [row["epoch"] for row in resumed.curve] == [1, 2, 3]
    assert resumed.curve[-1]["loss"] == pytest.approx(straight.curve[-1]["loss"], rel=1e-5)
    assert resumed.metrics["two-tower"]["overall"]["NDCG@10"] == pytest.approx(straight.metrics["two-tower"]["overall"]["NDCG@10"],
                                                                                  abs=1e-6)
    for scenario, full in straight.metrics["two-tower"].items():  # fewer candidates: never a worse rank
        assert straight.metrics["two-tower (in-scenario)"][scenario]["NDCG@10"] >= full["NDCG@10"]
        assert straight.metrics["popularity (in-scenario)"][scenario]["Recall@10"] >= straight.metrics["popularity"][scenario]["Recall@10"]


def test_lora_fine_tuning_of_a_decoder_item_llm_trains_and_serves(built_pipeline, tmp_path):
    pytest.importorskip("peft")
    qwen = tiny_qwen_folder(tmp_path / "qwen")
    config = with_overrides(built_pipeline.config, model={"text_encoder": qwen, "item_finetune": "lora", "lora_rank": 4,
                                                          "max_text_tokens": 12},
                            training={"epochs": 1, "max_steps": 4, "batch_size": 16, "checkpoint_dir": str(tmp_path / "c")})
    result = train_module.train(config, config.snapshot_path, config.catalog_path, tmp_path / "models", progress=False)
    assert (result.artifact_dir / TEXT_ENCODER / "item_token.pt").exists()
    model = RetrievalModel(result.artifact_dir)
    assert np.isfinite(model.item_vectors).all() and model.item_vectors.shape[1] == config.model.embedding_dim
    assert model.encoder.encode(["beach hotel"]).shape == (1, 32)


def test_torchrun_two_cpu_processes_train_with_gloo(built_pipeline, tmp_path):
    config = with_overrides(built_pipeline.config, training={"epochs": 2, "max_steps": 0, "device": "cpu",
                                                             "checkpoint_dir": str(tmp_path / "c")})
    path = save_config(config, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "recplugin.training", "-c", str(path), "--out", str(tmp_path / "models")],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = json.loads((Path(report["artifact"]) / "metrics.json").read_text())
    assert metrics["two-tower"]["overall"]["NDCG@10"] > metrics["popularity"]["overall"]["NDCG@10"]
    curve = json.loads((Path(report["artifact"]) / "training_curve.json").read_text())
    assert len(curve) == 2
    _register_back(config, Path(report["artifact"]), tmp_path)


def _register_back(config, artifact: Path, tmp_path: Path) -> None:
    """`recplugin register`: the GPU box's artifact joins the registry; one with other scenarios is refused."""
    from recplugin import pipeline
    from recplugin.registry.models import ModelRegistry

    local = with_overrides(config, training={})
    local.registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    local.artifact_root = str(tmp_path / "artifact-root")
    version = pipeline.register_artifact(local, artifact)  # copied under the artifact root, the only place loads read
    stored = (tmp_path / "artifact-root" / version).resolve()
    assert ModelRegistry(local.registry_sqlalchemy_url).get(version).artifact_uri == str(stored)
    assert (stored / "model.pt").read_bytes() == (artifact / "model.pt").read_bytes()
    other = with_overrides(local, training={})
    other.scenarios = ["feed"]
    with pytest.raises(ValueError, match="scenarios"):
        pipeline.register_artifact(other, artifact)
    with pytest.raises(FileNotFoundError, match="not a model artifact"):
        pipeline.register_artifact(local, tmp_path)


def test_every_position_training_learns_from_packed_sequences_and_serves(built_pipeline, tmp_path):
    """training.positions: all on a causal tower: several labels per forward, a model as good as per-label training
    for the same epochs (mean of 3 seeds: one seed's ratio ranged 0.85-1.14 here), and an artifact whose served
    vectors are the causal tower's."""
    from recplugin.training.dataset import load_catalog, load_snapshot

    config = built_pipeline.config
    causal = {"user_attention": "causal"}
    runs = {(mode, seed): train_module.train(
        with_overrides(config, model=causal, training={"epochs": 3, "max_steps": 0, "positions": mode, "seed": seed,
                                                       "checkpoint_dir": str(tmp_path / f"{mode}{seed}")}),
        config.snapshot_path, config.catalog_path, tmp_path / f"{mode}{seed}", progress=False)
        for mode in ("last", "all") for seed in range(3)}
    every, last = (np.mean([runs[m, s].metrics["two-tower"]["overall"]["NDCG@10"] for s in range(3)]) for m in ("all", "last"))
    popular = runs["all", 0].metrics["popularity"]["overall"]["NDCG@10"]
    assert every > 2 * popular and every >= 0.9 * last, (every, last, popular)
    catalog = load_catalog(config.catalog_path)
    train_split = load_snapshot(config.snapshot_path, config.scenarios, catalog.id_to_row,
                                config.model.max_sequence_length).splits["train"]
    packed = train_module.packed_split(train_split, with_overrides(config, model=causal))
    assert packed.rows_per_point() < 0.2 and packed.exact.mean() > 0.9  # several labels share a forward, most exactly
    served = RetrievalModel(runs["all", 0].artifact_dir)
    assert served.config.model.user_attention == "causal" and served.user_tower.causal


def test_training_packs_with_the_configured_minimum_context(built_pipeline, tmp_path):
    """training.min_context reaches the packer as a number of events (a fraction of the window)."""
    config = _short(built_pipeline.config, tmp_path, epochs=1, max_steps=2, min_context=0.25)
    with mock.patch.object(train_module, "pack_split", wraps=train_module.pack_split) as packer:
        train_module.train(config, config.snapshot_path, config.catalog_path, tmp_path / "out", progress=False)
    assert packer.call_args.args[1] == config.model.max_sequence_length // 4


def test_a_wall_clock_budget_fits_the_schedule_to_the_pace_of_the_first_steps(built_pipeline, tmp_path):
    """Each step takes 1 s on a fake clock; a 0.5-minute budget leaves 30 steps, and the cosine schedule ends there."""
    ticks = iter(range(10**6))
    clock = type("Clock", (), {"perf_counter": staticmethod(lambda: float(next(ticks))),  # a step reads it twice: 1 s
                               "strftime": staticmethod(__import__("time").strftime)})
    config = _short(built_pipeline.config, tmp_path, epochs=50, batch_size=16, max_minutes=0.5)
    with mock.patch.object(train_module, "time", clock):
        result = train_module.train(config, config.snapshot_path, config.catalog_path, tmp_path / "out", progress=False)
    saved = torch.load(checkpoint_path(config, config.snapshot_path), weights_only=False)
    assert saved["run"]["steps_done"] == saved["run"]["planned_steps"] == 30
    assert saved["scheduler"]["lr_lambdas"][0]["total"] == 30
    assert saved["scheduler"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-4 * config.training.learning_rate)
    assert len(result.curve) < 50 and result.metrics["two-tower"]["overall"]["users"] > 0


def _train_on_a_clock(built_pipeline, tmp_path, later_step_s: float):
    """Train with a 2-minute budget on a fake clock: the first 20 steps take 1 s, later ones `later_step_s`."""
    reads, elapsed = iter(range(10**6)), [0.0]

    def perf_counter() -> float:  # a step reads the clock twice: when it begins and when it ends
        read = next(reads)
        if read % 2:
            elapsed[0] += 1.0 if read // 2 < 20 else later_step_s
        return elapsed[0]

    clock = type("Clock", (), {"perf_counter": staticmethod(perf_counter), "strftime": staticmethod(__import__("time").strftime)})
    config = _short(built_pipeline.config, tmp_path, epochs=50, batch_size=128, max_minutes=2, patience=0)
    with mock.patch.object(train_module, "time", clock):
        result = train_module.train(config, config.snapshot_path, config.catalog_path, tmp_path / "out", progress=False)
    return result, torch.load(checkpoint_path(config, config.snapshot_path), weights_only=False), config


def test_an_epoch_end_refit_cuts_a_plan_the_first_fast_steps_made_too_long(built_pipeline, tmp_path):
    """Later steps take 3 s: the 120 steps planned for 2 minutes are cut back after an epoch, so training overruns its
    budget by at most one epoch's steps (without the refit: 20 + 100 x 3 = 320 s)."""
    result, _, _ = _train_on_a_clock(built_pipeline, tmp_path, 3.0)
    per_epoch = result.curve[0]["steps"]
    assert per_epoch < 40, per_epoch  # an epoch ends well before the first plan would
    last = result.curve[-1]
    assert last["train_s"] <= 120 + 3 * per_epoch and last["steps"] < 120
    assert [point["train_s"] for point in result.curve] == sorted(point["train_s"] for point in result.curve)


def test_a_plan_that_ends_inside_an_epoch_is_not_extended_by_a_later_faster_pace(built_pipeline, tmp_path):
    """Later steps take 0.5 s: each epoch-end refit grows the plan, until an epoch is cut by the plan. Training stops
    there: without the guard the faster pace would plan a few more steps at an LR near zero."""
    result, saved, config = _train_on_a_clock(built_pipeline, tmp_path, 0.5)
    steps = [point["steps"] for point in result.curve]
    per_epoch = np.diff([0, *steps])  # the shuffled packing varies an epoch's batch count by one
    assert min(per_epoch[:-1]) >= per_epoch[0] - 1 > per_epoch[-1], steps  # only the last epoch is cut by the plan
    assert steps[-1] == saved["run"]["planned_steps"] and len(steps) < 50, steps
    assert saved["scheduler"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-4 * config.training.learning_rate)
