"""The default config, untuned, on every dataset here: does it beat popularity by >= 2x NDCG@10 within a training
budget on this machine (training stops on validation NDCG@10: `training.patience`, not a fixed epoch count)?

    python benchmarks/quality/defaults.py --minutes 30 --seeds 0
    python benchmarks/quality/defaults.py --variants K=1 K=2   # candidate defaults side by side, same run

Each dataset goes through the real pipeline (load or generate -> `feast apply` -> point-in-time snapshot) in its own
workdir, then one `train()` per variant (`unified`: the built-in defaults; another name from run.py's VARIANTS changes a few
fields on top); only the dataset's scenarios, the budget, the seed and the evaluation protocol are set (Amazon: also the
domain-restricted full ranking and 999 sampled same-domain negatives).
A dataset whose folder is missing is reported as skipped. Writes benchmarks/results/quality_defaults.{json,md}
(quality_defaults_<label>.* with --label).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from benchmarks.quality.report import PROTOCOL, RESULTS, protocol_name  # noqa: E402
from benchmarks.quality.run import SCENARIOS, VARIANTS, prepare  # noqa: E402
from recplugin.config import RecConfig, load_config, with_overrides  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FOLDERS = {"generated": None, "ml-1m": SHARED / "ml-1m", "amazon-food-kitchen": SHARED / "amazon-food-kitchen"}
AMAZON_PROTOCOL = {"scenario_ranking": True, "sampled_negatives": 999}  # LLMCDSR's: ranked within the target domain


def dataset_config(dataset: str, minutes: float, seed: int) -> RecConfig:
    """The built-in defaults with only the dataset's scenarios, the budget, the seed and its evaluation protocol set."""
    config = load_config(None, workdir=f".recplugin/defaults-{dataset}")
    evaluation = {"max_minutes": minutes, "seed": seed, **(AMAZON_PROTOCOL if dataset == "amazon-food-kitchen" else {})}
    config = with_overrides(config, training=evaluation)
    config.scenarios = SCENARIOS[dataset]
    return config.validate()


def stopped_by(curve: list[dict], best: int, config: RecConfig) -> str:
    """Why training ended: validation (no better NDCG@10 for `patience` epochs after `best`), the time budget, or the epoch cap."""
    if len(curve) < config.training.epochs and len(curve) - best >= config.training.patience:
        return "validation"
    return "time budget" if len(curve) < config.training.epochs else "epoch cap"


def run_dataset(dataset: str, variant: str, minutes: float, seed: int) -> tuple[list[dict], list[dict], dict | None]:
    """Train one variant of the defaults on one dataset: rows of (protocol, scenario) vs popularity, the curve, the
    snapshot build."""
    from recplugin.training.train import train

    config = dataset_config(dataset, minutes, seed)
    build = prepare(config, dataset, str(FOLDERS[dataset]) if FOLDERS[dataset] else None)
    model_config = with_overrides(config, **VARIANTS[variant]) if VARIANTS[variant] else config
    began = time.perf_counter()
    result = train(model_config, config.snapshot_path, config.catalog_path, config.path("quality_models"))
    seconds = time.perf_counter() - began
    best = 1 + int(np.argmax([point["NDCG@10"] for point in result.curve]))
    run = {"epochs": len(result.curve), "best_epoch": best, "stopped_by": stopped_by(result.curve, best, model_config),
           "train_seconds": round(seconds, 1)}
    rows = []
    for model, table in result.metrics.items():
        twin = model.replace("two-tower", "popularity")
        if not model.startswith("two-tower") or twin not in result.metrics:
            continue
        for scenario, values in table.items():
            if not values["users"]:  # a scenario without test labels
                continue
            baseline = result.metrics[twin][scenario]["NDCG@10"]
            rows.append({"dataset": dataset, "variant": variant, "seed": seed, "protocol": protocol_name(model),
                         "scenario": scenario, "users": int(values["users"]), "NDCG@10": values["NDCG@10"],
                         "popularity NDCG@10": baseline, "ratio": values["NDCG@10"] / max(baseline, 1e-12), **run})
    return rows, result.curve, build


def side_by_side(rows: list[dict], variants: list[str]) -> list[str]:
    """Markdown lines: each variant's NDCG@10 and its ratio to the first variant's, per dataset, seed, protocol, scenario."""
    if len(variants) < 2:
        return []
    table: dict[tuple, dict[str, float]] = {}
    for r in rows:
        table.setdefault((r["dataset"], r["seed"], r["protocol"], r["scenario"]), {})[r["variant"]] = r["NDCG@10"]
    lines = ["", f"NDCG@10 side by side (ratio to `{variants[0]}`):\n",
             "| dataset | seed | protocol | scenario | " + " | ".join(variants) + " | "
             + " | ".join(f"{v} / {variants[0]}" for v in variants[1:]) + " |", "|---" * (4 + 2 * len(variants) - 1) + "|"]
    for key, values in table.items():
        if len(values) < len(variants):
            continue
        base = max(values[variants[0]], 1e-12)
        lines.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(f"{values[v]:.4f}" for v in variants) + " | "
                     + " | ".join(f"{values[v] / base:.2f}x" for v in variants[1:]) + " |")
    return lines


def results_stem(label: str) -> str:
    """The results files' name: quality_defaults, or quality_defaults_<label>."""
    return "quality_defaults" + (f"_{label}" if label else "")


def write_report(rows: list[dict], meta: dict, curves: dict[str, list[dict]]) -> None:
    """benchmarks/results/quality_defaults[_<label>].{json,md}."""
    stem = results_stem(meta["label"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "curves": curves}, indent=2))
    lines = ["# The default config on every dataset here\n",
             f"`{meta['command']}` at commit {meta['git_commit']} on {meta['machine']}, {meta['date']}, {meta['wall_s']:.0f} s.\n",
             f"Built-in defaults, untuned; set per dataset: its scenarios, `training.max_minutes: {meta['minutes']:g}` "
             "(the training steps' budget), the seed, and the evaluation protocol. NDCG@10 in fp32, ties counted against "
             "the target, the user's earlier items filtered. Target: >= 2x popularity on every row. Variants (same run, "
             f"one after another): {', '.join(f'`{v}` {json.dumps(changes)}' for v, changes in meta['variants'].items())}.\n",
             *[f"- {name}: {text}" for name, text in meta["protocols"].items()],
             *[f"- {name}: skipped ({why})" for name, why in meta["skipped"].items()], "",
             "| dataset | variant | seed | protocol | scenario | users | popularity | model | ratio | >= 2x | epochs (best) "
             "| stopped by | train() s |", "|---" * 13 + "|"]
    lines += [f"| {r['dataset']} | {r['variant']} | {r['seed']} | {r['protocol']} | {r['scenario']} | {r['users']} | "
              f"{r['popularity NDCG@10']:.4f} | {r['NDCG@10']:.4f} | {r['ratio']:.2f}x | {'yes' if r['ratio'] >= 2 else 'no'} | "
              f"{r['epochs']} ({r['best_epoch']}) | {r['stopped_by']} | {r['train_seconds']:.0f} |" for r in rows]
    lines += side_by_side(rows, list(meta["variants"]))
    lines += ["", "Validation NDCG@10 after each epoch (loss and logit scale in the JSON file):\n"]
    lines += [f"- {name}: " + ", ".join(f"{point['NDCG@10']:.4f}" for point in curve) for name, curve in curves.items()]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--minutes", type=float, default=30.0, help="training.max_minutes for each model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=["unified"], choices=list(VARIANTS),
                        help="unified = the built-in defaults; others change a few fields on top (run.py's VARIANTS)")
    parser.add_argument("--label", default="", help="write quality_defaults_<label>.* (more seeds beside the main table)")
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    command = f"python benchmarks/quality/defaults.py --datasets {' '.join(args.datasets)} --minutes {args.minutes:g} " \
              f"--seeds {' '.join(map(str, args.seeds))} --variants {shlex.join(args.variants)}" \
              + (f" --label {args.label}" if args.label else "")
    rows, curves, builds, skipped = [], {}, {}, {}
    for dataset in args.datasets:
        folder = FOLDERS[dataset]
        if folder is not None and not folder.exists():
            skipped[dataset] = f"{folder} not found"
            continue
        for seed, variant in itertools.product(args.seeds, args.variants):
            dataset_rows, curve, build = run_dataset(dataset, variant, args.minutes, seed)
            rows += dataset_rows
            curves[f"{dataset}, {variant}, seed {seed}"] = curve
            builds[dataset] = build or builds.get(dataset)
            print(f"{dataset}, {variant}, seed {seed}: {dataset_rows[0]['epochs']} epochs, stopped by "
                  f"{dataset_rows[0]['stopped_by']}", flush=True)
            done = [d for d in args.datasets if d in builds]  # the report so far, rewritten after every model
            meta = {**provenance(command, began, commit), "minutes": args.minutes, "seeds": args.seeds,
                    "variants": {v: VARIANTS[v] for v in args.variants}, "label": args.label, "skipped": skipped, "finished": done,
                    "protocols": {d: PROTOCOL.get(d, "each user's last event, full ranking over all items")
                    + (" Also ranked within the target's domain and against 999 sampled same-domain negatives."
                       if d == "amazon-food-kitchen" else "") for d in done},
                    "default_config": dataclasses.asdict(load_config(None)), "amazon_overrides": AMAZON_PROTOCOL,
                    "snapshot_builds": builds}
            write_report(rows, meta, curves)
    if rows:
        print((RESULTS / f"{results_stem(args.label)}.md").read_text())


if __name__ == "__main__":
    main()
