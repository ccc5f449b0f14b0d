"""What a team meets with its own log and the default config: a public log exported under a team's column names, then
only `recplugin` commands (load events -> apply -> materialize -> build-training-set -> train -> evaluate), with a
config that sets the mapping, the scenarios, the training budget and the seed, nothing else.

    python benchmarks/out_of_box/run.py --datasets ml-1m amazon-food-kitchen --seeds 0 1 2 --minutes 15

Writes benchmarks/results/out_of_box.json (out_of_box_<label>.json with --label: more seeds beside it): per dataset, seed and scenario, test NDCG@10 of the model and of
popularity (leave-last-out per scenario, full ranking over all items, seen items excluded) and their ratio.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import ROOT, git_commit, provenance  # noqa: E402
from recplugin.data import loaders  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def export_ml1m(folder: Path, out: Path) -> dict:
    """MovieLens-1M as a team would export it: string user ids, unix times, a titles table with a genres column."""
    data = loaders.load_movielens(folder)
    events = data.events
    pd.DataFrame({"uid": "u" + events["user_id"].astype(str), "movie_id": events["item_id"],
                  "ts": events["event_timestamp"].astype("int64") // 10**9}).to_csv(out / "events.csv", index=False)
    titles = pd.read_csv(folder / "sas_item_titles.tsv", sep="\t")
    pd.DataFrame({"movie_id": titles["sas_item_id"], "title": titles["title"], "genres": titles["genres"]}).to_csv(
        out / "items.csv", index=False)
    return {"scenarios": ["feed"],
            "source": {"events": {"user": "uid", "item": "movie_id", "timestamp": "ts", "timestamp_format": "unix_s",
                                  "scenario": "", "action": "", "action_constant": "click"},
                       "items": {"item": "movie_id", "title": "title", "text": ["genres"]}, "string_ids": True}}


def export_amazon(folder: Path, out: Path) -> dict:
    """Amazon Food x Kitchen as a team would export it: one event table with a domain column, items with titles."""
    data = loaders.load_amazon_food_kitchen(folder)
    events = data.events
    pd.DataFrame({"uid": events["user_id"], "asin": events["item_id"], "domain": events["scenario"],
                  "ts": events["event_timestamp"].astype("int64") // 10**9}).to_parquet(out / "events.parquet", index=False)
    items = data.items
    pd.DataFrame({"asin": items["item_id"], "title": items["title"],
                  "domain": [",".join(s) for s in items["scenarios"]]}).to_parquet(out / "items.parquet", index=False)
    return {"scenarios": ["food", "kitchen"],
            "source": {"events": {"user": "uid", "item": "asin", "timestamp": "ts", "timestamp_format": "unix_s",
                                  "scenario": "domain", "action": "", "action_constant": "click"},
                       "items": {"item": "asin", "title": "title", "scenarios": "domain"}}}


DATASETS = {"ml-1m": (export_ml1m, "events.csv", "items.csv"),
            "amazon-food-kitchen": (export_amazon, "events.parquet", "items.parquet")}


def recplugin(*args: str) -> tuple[str, float]:
    """One `recplugin` command as a team runs it; its output and seconds."""
    began = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).with_name("recplugin")), *args], cwd=ROOT, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"recplugin {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else f"recplugin {args[0]} done", flush=True)
    return run.stdout, time.monotonic() - began


def run_dataset(name: str, seeds: list[int], minutes: float) -> tuple[list[dict], dict]:
    """Load and prepare once, then train and evaluate once per seed."""
    export, events_file, items_file = DATASETS[name]
    work = ROOT / ".recplugin" / f"out-of-box-{name}"
    tables = work / "team_tables"
    tables.mkdir(parents=True, exist_ok=True)
    mapping = export(SHARED / name, tables)
    stages = {}
    rows = []
    for index, seed in enumerate(seeds):
        config = {"workdir": str(work / "workdir"), **mapping, "training": {"max_minutes": minutes, "seed": seed}}
        path = work / f"recplugin-seed{seed}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        if index == 0:
            for stage in (("load", "events", str(tables / events_file), "--items", str(tables / items_file)),
                          ("apply",), ("materialize",), ("build-training-set",)):
                stages[stage[0]] = round(recplugin(stage[0], "-c", str(path), *stage[1:])[1], 1)
        output, seconds = recplugin("train", "-c", str(path))
        verdict = next((line for line in output.splitlines() if "popularity on validation" in line), "")
        metrics = json.loads(recplugin("evaluate", "-c", str(path), "--json")[0].split("\n", 2)[2])
        for scenario, values in metrics["two-tower"].items():
            baseline = metrics["popularity"][scenario]
            if not values["users"]:
                rows.append({"dataset": name, "seed": seed, "scenario": scenario, "users": 0})
                continue
            rows.append({"dataset": name, "seed": seed, "scenario": scenario, "users": int(values["users"]),
                         "NDCG@10": values["NDCG@10"], "popularity NDCG@10": baseline["NDCG@10"],
                         "ratio": values["NDCG@10"] / max(baseline["NDCG@10"], 1e-12), "train_seconds": round(seconds, 1),
                         "verdict": verdict})
        print(f"{name} seed {seed}: " + ", ".join(f"{r['scenario']} {r.get('ratio', 0):.1f}x" for r in rows if r["seed"] == seed),
              flush=True)
    return rows, {"stages_s": stages, "mapping": mapping}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=15.0, help="training.max_minutes (the default config has none)")
    parser.add_argument("--label", default="", help="write out_of_box_<label>.json")
    args = parser.parse_args()
    result_path = ROOT / "benchmarks" / "results" / f"out_of_box{'_' + args.label if args.label else ''}.json"
    began, commit = time.monotonic(), git_commit()
    rows, setups, skipped = [], {}, []
    for name in args.datasets:
        if not (SHARED / name).is_dir():
            skipped.append(name)
            continue
        found, setups[name] = run_dataset(name, args.seeds, args.minutes)
        rows += found
        result = {"meta": {**provenance(f"python {shlex.join(sys.argv)}", began, commit), "minutes": args.minutes,
                           "seeds": args.seeds, "skipped": skipped, "setups": setups}, "rows": rows}
        result_path.write_text(json.dumps(result, indent=2) + "\n")  # after every dataset: a cut-off run keeps what it has
    print(f"wrote {result_path}")


if __name__ == "__main__":
    main()
