"""Does a refresh's warm start reach the cold start's quality in fewer steps?

    python benchmarks/warm_start/run.py --seeds 0 --epochs 5

Generated data at the demo's size (default generator). Model A is trained cold on the events before the 90% time
quantile (yesterday's serving version); then, on all events (today's snapshot), model B is trained twice with the same
seed and number of epochs (no time budget: the steps do not depend on the machine's load): cold, and warm-started from A (`training.warm_start`, what `recplugin refresh` does). Per run: the
validation NDCG@10 after each epoch and the steps it took, the test NDCG@10, and for the warm run the steps it needed
to reach the cold run's best validation NDCG@10, as a fraction of the steps the cold run needed for it.
Writes benchmarks/results/warm_start.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import ROOT, git_commit, provenance  # noqa: E402
from recplugin import pipeline  # noqa: E402
from recplugin.config import load_config, to_dict, with_overrides  # noqa: E402
from recplugin.data.schema import write_events  # noqa: E402


def prepared(work: Path, cut: float, seed: int, epochs: int):
    """Yesterday's workdir (events before the cut) and today's (every event), each applied and snapshotted."""
    today = load_config(None, workdir=str(work / "today"), training={"seed": seed, "epochs": epochs, "patience": 0})
    yesterday = with_overrides(today)
    yesterday.workdir = str(work / "yesterday")
    for config in (today, yesterday):
        shutil.rmtree(config.path("."), ignore_errors=True)
    pipeline.generate(today, progress=False)
    yesterday.data_dir.mkdir(parents=True)
    shutil.copy(today.catalog_path, yesterday.catalog_path)
    events = pd.read_parquet(today.events_path)
    write_events(events[events["event_timestamp"] < events["event_timestamp"].quantile(cut)], yesterday.events_path)
    for config in (yesterday, today):
        pipeline.apply(config, progress=False)
        pipeline.build_training_set(config)
    return yesterday, today


def summary(result, seconds: float) -> dict:
    """A run's curve and results."""
    best = max(result.curve, key=lambda row: row["NDCG@10"])
    return {"version": result.version, "seconds": round(seconds, 1), "curve": result.curve, "best_validation_ndcg10": best["NDCG@10"],
            "steps_to_best": best["steps"], "steps": result.curve[-1]["steps"],
            "test_ndcg10": result.metrics["two-tower"]["overall"]["NDCG@10"],
            "popularity_test_ndcg10": result.metrics["popularity"]["overall"]["NDCG@10"]}


def run_seed(work: Path, cut: float, seed: int, epochs: int) -> dict:
    """Yesterday's cold model, then today's cold and warm runs."""
    yesterday, today = prepared(work / f"seed{seed}", cut, seed, epochs)
    runs = {}
    for name, config, warm in (("yesterday cold", yesterday, None), ("today cold", today, None), ("today warm", today, "A")):
        began = time.monotonic()
        source = Path(runs["yesterday cold"]["artifact"]) if warm else None
        result = pipeline.train(config, progress=False, warm_start_from=source)
        runs[name] = {**summary(result, time.monotonic() - began), "artifact": str(result.artifact_dir)}
        print(f"seed {seed}, {name}: best validation NDCG@10 {runs[name]['best_validation_ndcg10']:.4f} at step "
              f"{runs[name]['steps_to_best']}, test {runs[name]['test_ndcg10']:.4f}", flush=True)
    target = runs["today cold"]["best_validation_ndcg10"]
    reached = next((row["steps"] for row in runs["today warm"]["curve"] if row["NDCG@10"] >= target), None)
    return {"seed": seed, "runs": runs, "cold_best_validation_ndcg10": target, "warm_steps_to_cold_best": reached,
            "fraction_of_cold_steps": None if reached is None else round(reached / runs["today cold"]["steps_to_best"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=5, help="training.epochs of every run (no early stopping)")
    parser.add_argument("--cut", type=float, default=0.9, help="yesterday's events: those before this time quantile")
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    out = ROOT / "benchmarks" / "results" / "warm_start.json"
    seeds = []
    for seed in args.seeds:
        seeds.append(run_seed(ROOT / ".recplugin" / "warm-start", args.cut, seed, args.epochs))
        out.write_text(json.dumps({"meta": {**provenance(f"python {shlex.join(sys.argv)}", began, commit), "cut": args.cut,
                                            "epochs": args.epochs, "config": to_dict(load_config(None))},
                                   "seeds": seeds}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
