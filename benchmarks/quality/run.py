"""Offline quality: the unified cross-scenario model against baselines and ablations, in one run and one table.

    python benchmarks/quality/run.py --dataset generated --events 1000000
    python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --variants unified sasrec-style
    python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --sampled 999

The committed results used the configs in benchmarks/quality/configs/ (e.g. --config benchmarks/quality/configs/ml-1m.yaml).

The data goes through the real pipeline first (load or generate -> Feast apply -> point-in-time snapshot), once per
workdir; every variant is then a `train()` call on the same snapshot with a few config fields changed.
Test protocol: each user's last event, full ranking over all items, the user's earlier items excluded (and, with
--sampled N, also N random unseen items of the target's own scenario). Writes
benchmarks/results/quality_<label>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from recplugin.config import RecConfig, load_config, with_overrides  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
SCENARIOS = {"generated": ["search", "feed", "discovery"], "ml-1m": ["feed"], "amazon-food-kitchen": ["food", "kitchen"]}
PROTOCOL = {  # where a dataset's own split replaces "each user's last event" as the test label
    "ml-1m": "gSASRec's split (gsasrec_split/): test = every user's last item, validation = the second-to-last item of its "
             "512 validation users (the other users' second-to-last item is neither trained on nor evaluated); every "
             "other rating is a training label; every item the user rated before the target is filtered.",
    "amazon-food-kitchen": "Test users: the 937 mixed-sequence (food + kitchen) users of test.txt, their last item the target, "
                           "reported per target domain; validation: valid.txt's 960 users; every other event is a training label.",
}
PUBLISHED = {  # ../shared/data/README.md: same data and split, full ranking, seen items filtered, test = last item
    "ml-1m": [("SASRec (published, gSASRec README)", {"Recall@10": 0.2392, "NDCG@10": 0.1259}),
              ("gSASRec (published, gSASRec README)", {"Recall@10": 0.3003, "NDCG@10": 0.1726})],
}
VARIANTS = {  # name -> {config section: {field: value}}; "isolated" trains one model per scenario
    "unified": {},
    "isolated": {},
    "K=1": {"model": {"interests_per_scenario": 1}},
    "no scenario queries": {"model": {"scenario_queries": False}},
    "sasrec-style": {"model": {"interests_per_scenario": 1, "scenario_queries": False}, "training": {"target_window": 1}},
    "no text": {"model": {"use_text": False, "use_item_ids": True}},
    "no ids": {"model": {"use_item_ids": False}},  # the default item tower has no ids: same as unified unless the config adds them
    "text + ids": {"model": {"use_text": True, "use_item_ids": True}},
    "scenario negatives": {"training": {"negatives": "scenario"}},
    "global negatives": {"training": {"negatives": "global"}},
    "window 1": {"training": {"target_window": 1}},
    "window 10": {"training": {"target_window": 10}},
    "K=3": {"model": {"interests_per_scenario": 3}},
    "balanced sampling": {"training": {"sampling": "balanced"}},
    "unified, equal total budget": {},  # ", equal total budget": training.max_minutes times the scenarios (the isolated
    "balanced sampling, equal total budget": {"training": {"sampling": "balanced"}},  # models' minutes together)
}
EQUAL_BUDGET = ", equal total budget"


def prepare(config: RecConfig, dataset: str, path: str | None) -> dict | None:
    """Data -> Feast -> point-in-time snapshot, unless the workdir already has the snapshot; its seconds and the peak
    RSS of this process so far (None when the snapshot was there already)."""
    if config.snapshot_path.exists():
        return None
    began = time.perf_counter()
    from recplugin import pipeline  # Feast: only where the snapshot is built (a GPU box gets the snapshot carried over)

    if dataset == "generated":
        pipeline.generate(config)
    else:
        pipeline.load_dataset(config, dataset, Path(path))
    pipeline.apply(config)
    pipeline.build_training_set(config)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": time.perf_counter() - began, "peak_rss_mib": peak_mib,
            "duckdb_memory_limit": config.feast.duckdb_memory_limit}


def variant_overrides(config: RecConfig, name: str) -> dict:
    """The config fields a variant changes (the equal-budget unified model: the isolated models' minutes together)."""
    if name.endswith(EQUAL_BUDGET):
        training = VARIANTS[name].get("training", {}) | {"max_minutes": config.training.max_minutes * len(config.scenarios)}
        return VARIANTS[name] | {"training": training}
    return VARIANTS[name]


def run_variant(config: RecConfig, name: str) -> tuple[dict, dict]:
    """Train one variant (one model per scenario for `isolated`): its test metrics per scenario, and each model's
    per-epoch training curve (loss, logit scale, validation metrics)."""
    from recplugin.training.train import train

    out = config.path("quality_models")
    if name == "isolated":
        merged: dict = {}
        curves = {}
        for scenario in config.scenarios:
            single = with_overrides(config, training={"only_scenario": scenario})
            result = train(single, config.snapshot_path, config.catalog_path, out)
            curves[f"isolated {scenario}"] = result.curve
            for model, table in result.metrics.items():
                merged.setdefault(model.replace("two-tower", "isolated"), {})[scenario] = table[scenario]
        return merged, curves
    overrides = variant_overrides(config, name)
    variant = with_overrides(config, **overrides) if overrides else config
    result = train(variant, config.snapshot_path, config.catalog_path, out)
    return result.metrics, {name: result.curve}


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: NDCG@10 per scenario for every variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({r["scenario"] for r in rows}, key=lambda s: (s == "overall", s))
    models = list(dict.fromkeys(r["model"] for r in rows if "sampled" not in r["model"]))
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(scenarios) * len(models) / 3), 3.8))
    width = 0.8 / len(models)
    for offset, model in enumerate(models):
        values = [next((r["NDCG@10"] for r in rows if r["model"] == model and r["scenario"] == s), 0.0) for s in scenarios]
        axis.bar([i + offset * width for i in range(len(scenarios))], values, width, label=model)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(scenarios))], scenarios)
    axis.set(ylabel="NDCG@10 (full ranking)", title=path.stem)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _cell(row: dict, metric: str) -> str:
    """A metric's mean, with its std over seeds when there was more than one."""
    return f"{row[metric]:.4f}" + (f" +- {row[metric + '_std']:.4f}" if row.get("seeds", 1) > 1 else "")


def mean_over_seeds(rows: list[dict]) -> list[dict]:
    """One row per (model, scenario): every metric's mean and std over the seeds' rows."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["scenario"]), []).append(row)
    merged = []
    for (model, scenario), runs in groups.items():
        metrics = [k for k, v in runs[0].items() if isinstance(v, float) and k != "users"]
        merged.append({"model": model, "scenario": scenario, "seeds": len(runs), "users": runs[0]["users"],
                       **{k: float(np.mean([r[k] for r in runs])) for k in metrics},
                       **{k + "_std": float(np.std([r[k] for r in runs])) for k in metrics}})
    return merged


def side_information(config: RecConfig) -> str:
    """What the item tower sees besides interactions (baselines such as SASRec see item ids only)."""
    parts = [name for name, used in (("item text", config.model.use_text), ("item ids", config.model.use_item_ids)) if used]
    return " + ".join(parts) + f" (base config; variants may change it), scenario and action embeddings, sequence length " \
        f"{config.model.max_sequence_length}"


def _snapshot_line(build: dict) -> str:
    """How long data -> Feast -> snapshot took in this run, and its peak memory."""
    return (f"Snapshot built in this run (load, `feast apply`, Feast's point-in-time join): {build['seconds']:.0f} s, peak "
            f"RSS {build['peak_rss_mib']:.0f} MiB (DuckDB limited to {build['duckdb_memory_limit']}).\n")


def write_report(per_seed: list[dict], meta: dict, label: str, dataset: str, sampled_negatives: int,
                 curves: dict[str, list[dict]]) -> None:
    """benchmarks/results/quality_<label>.{json,md,png}: means over seeds, and every seed's rows in the JSON."""
    rows = mean_over_seeds(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"quality_{label}.json").write_text(json.dumps({"meta": meta, "rows": rows, "per_seed": per_seed, "curves": curves}, indent=2))
    full = [m for m in ("Recall@10", "NDCG@10", "Recall@50", "NDCG@50", "Recall@200", "NDCG@200", "MRR")]
    sampled = [m for m in ("Recall@1", "Recall@5", "Recall@10", "NDCG@5", "NDCG@10", "MRR")]
    lines = [f"# Offline quality: {label}\n", f"`{meta['command']}` at commit {meta['git_commit']} on {meta['machine']}, "
             f"{meta['date']}, {meta['wall_s']:.0f} s, seeds {meta['seeds']} (mean +- std over seeds where more than one)"
             + (f"; report re-rendered from the recorded rows at commit {meta['rendered']['git_commit']}, {meta['rendered']['date']}"
                if meta.get("rendered") else "") + ".\n",
             "Full ranking over all items in fp32, ties counted against the target, the user's earlier items excluded, "
             "test = each user's last event.\n", *([PROTOCOL[dataset] + "\n"] if dataset in PROTOCOL else []),
             f"Side information: {meta['side_information']}. The full base config and each variant's overrides "
             f"({json.dumps(meta.get('variant_overrides', {}))}) are in the JSON file.\n",
             *([_snapshot_line(meta["snapshot_build"])] if meta.get("snapshot_build") else []),
             "| model | scenario | users | " + " | ".join(full) + " |", "|---|---|---|" + "---|" * len(full)]
    lines += [f"| {r['model']} | {r['scenario']} | {int(r['users'])} | " + " | ".join(_cell(r, m) for m in full) + " |"
              for r in rows if "sampled" not in r["model"] and "merge)" not in r["model"]]
    if dataset in PUBLISHED:
        lines += ["", "Published on the same data and test protocol (sequence length 200, embedding 128), for reference:\n",
                  "| model | Recall@10 | NDCG@10 |", "|---|---|---|"]
        lines += [f"| {name} | {values['Recall@10']:.4f} | {values['NDCG@10']:.4f} |" for name, values in PUBLISHED[dataset]]
    if any("sampled" in r["model"] for r in rows):
        lines += ["", f"Sampled protocol: the target against {sampled_negatives} random unseen items of its own scenario (HR = Recall).\n",
                  "| model | scenario | users | " + " | ".join(sampled) + " |", "|---|---|---|" + "---|" * len(sampled)]
        lines += [f"| {r['model']} | {r['scenario']} | {int(r['users'])} | " + " | ".join(_cell(r, m) for m in sampled) + " |"
                  for r in rows if "sampled" in r["model"]]
    lines += unified_vs_isolated(rows) + merge_coverage(rows)
    lines += ["", "Training curves (validation NDCG@10 after each epoch; loss and logit scale in the JSON file):\n",
              "| model | " + " | ".join(f"epoch {i + 1}" for i in range(max(map(len, curves.values()), default=0))) + " |",
              "|---|" + "---|" * max(map(len, curves.values()), default=0)]
    lines += [f"| {model} | " + " | ".join(f"{row['NDCG@10']:.4f}" for row in curve) + " |" for model, curve in curves.items()]
    (RESULTS / f"quality_{label}.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / f"quality_{label}.png")


def protocol_name(model: str) -> str:
    """The evaluation a model's row stands for, from the suffix of its name ("unified (in-scenario)" -> own domain)."""
    suffix = model.partition(" (")[2].rstrip(")")
    return {"": "full ranking, all items", "in-scenario": "full ranking, own domain"}.get(suffix, suffix)


def unified_vs_isolated(rows: list[dict]) -> list[str]:
    """Per unified model (every variant but the isolated one), scenario and protocol: NDCG@10 of the unified model, the isolated ones, the relative difference
    (the merge comparisons are left out: they are not a protocol)."""
    pairs = []
    for row in rows:
        name, _, suffix = row["model"].partition(" (")
        suffix = suffix.rstrip(")")
        if name.startswith(("isolated", "popularity")) or row["scenario"] == "overall" or "merge" in suffix:
            continue
        twin = next((r for r in rows if r["model"] == "isolated" + (f" ({suffix})" if suffix else "")
                     and r["scenario"] == row["scenario"]), None)
        if twin:
            pairs.append(f"| {name} | {row['scenario']} | {protocol_name(row['model'])} | {_cell(row, 'NDCG@10')} | "
                         f"{_cell(twin, 'NDCG@10')} | {row['NDCG@10'] / max(twin['NDCG@10'], 1e-12) - 1:+.1%} |")
    if not pairs:
        return []
    return ["", "Unified cross-scenario models vs isolated per-scenario models, NDCG@10:\n",
            "| model | scenario | protocol | unified | isolated | unified vs isolated |", "|---|---|---|---|---|---|", *pairs]


def merge_coverage(rows: list[dict]) -> list[str]:
    """Max-score vs interleaved merging of the K interests at equal k: NDCG@10 next to how many answers draw on more
    than one interest and how many distinct categories the top 10 holds."""
    merged = [r for r in rows if "merge)" in r["model"]]
    if not merged:
        return []
    lines = ["", "Merging the K interest vectors into one answer at equal k (full ranking, all items): max score vs "
             "interleaved (each interest in turn adds its best item not taken). multi-interest@10: the share of top-10 "
             "answers holding items from more than one interest; categories@10: distinct item categories in the top 10.\n",
             "| model | scenario | merge | NDCG@10 | Recall@10 | multi-interest@10 | categories@10 |", "|---|---|---|---|---|---|---|"]
    for row in merged:
        name, _, merge = row["model"].partition(" (")
        lines.append(f"| {name} | {row['scenario']} | {merge.removesuffix(' merge)')} | {_cell(row, 'NDCG@10')} | "
                     f"{_cell(row, 'Recall@10')} | {_cell(row, 'multi_interest@10')} | "
                     + (_cell(row, "categories@10") if "categories@10" in row else "-") + " |")
    return lines


def render(path: Path) -> None:
    """A results file's report again from its recorded rows (after a fix to the report); the JSON notes the re-render."""
    recorded = json.loads(path.read_text())
    meta = {**recorded["meta"], "rendered": {"git_commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M")}}
    write_report(recorded["per_seed"], meta, path.stem.removeprefix("quality_"), meta["dataset"],
                 meta["config"]["training"]["sampled_negatives"], recorded.get("curves", {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(SCENARIOS), default="generated")
    parser.add_argument("--path", help="the dataset folder (ml-1m, amazon-food-kitchen)")
    parser.add_argument("--config", help="base YAML config (its scenarios must match the dataset)")
    parser.add_argument("--workdir", help="default: .recplugin/quality-<dataset>")
    parser.add_argument("--events", type=int, default=0, help="generated data: about this many events")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=0, help="override training.epochs")
    parser.add_argument("--max-steps", type=int, default=0, help="override training.max_steps")
    parser.add_argument("--minutes", type=float, default=0, help="override training.max_minutes (each isolated model's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.FIELD=VALUE", help="override base config fields")
    parser.add_argument("--sampled", type=int, default=0, help="also rank against N sampled same-scenario negatives")
    parser.add_argument("--label", help="default: the dataset name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (results: mean +- std)")
    parser.add_argument("--render", help="rewrite the markdown (and PNG) of this results JSON with this script's report; no training")
    args = parser.parse_args()
    if args.render:
        render(Path(args.render))
        return
    workdir = args.workdir or f".recplugin/quality-{args.dataset}"
    config = load_config(args.config, workdir=workdir) if args.config else load_config(None, workdir=workdir)
    overrides = {"epochs": args.epochs, "max_steps": args.max_steps, "max_minutes": args.minutes, "sampled_negatives": args.sampled}
    config = with_overrides(config, training={k: v for k, v in overrides.items() if v})
    for path, value in (item.split("=", 1) for item in args.set):  # section.field=YAML value
        config = with_overrides(config, **{path.split(".")[0]: {path.split(".")[1]: yaml.safe_load(value)}})
    config.scenarios = SCENARIOS[args.dataset]
    if args.dataset == "generated" and args.events:
        users = max(100, args.events // config.generator.events_per_user)
        config = with_overrides(config, generator={"num_users": users})
    config.validate()
    began, commit = time.monotonic(), git_commit()
    snapshot_build = prepare(config, args.dataset, args.path)
    rows, timings, curves = [], {}, {}
    label = args.label or args.dataset
    command = "python benchmarks/quality/run.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(shlex.quote(str(x)) for x in (v if isinstance(v, list) else [v]))}"
        for k, v in vars(args).items() if v)
    for seed in args.seeds:
        seeded = with_overrides(config, training={"seed": seed})
        for name in args.variants:
            begin = time.perf_counter()
            metrics, variant_curves = run_variant(seeded, name)
            curves.update({f"{model}, seed {seed}": curve for model, curve in variant_curves.items()})
            timings[f"{name}, seed {seed}"] = time.perf_counter() - begin
            for model, table in metrics.items():
                if model.startswith("popularity") and any(r["model"] == model and r["seed"] == seed for r in rows):
                    continue
                row_model = model if model.startswith(("popularity", "isolated")) else model.replace("two-tower", name)
                rows += [{"model": row_model, "scenario": scenario, "seed": seed, **values} for scenario, values in table.items()]
            print(f"{name}, seed {seed}: {timings[f'{name}, seed {seed}']:.0f} s", flush=True)
        finished = args.seeds[:args.seeds.index(seed) + 1]  # the report so far: a cut-off run keeps its finished seeds
        meta = {**provenance(command, began, commit), "seeds": finished, "seconds_per_variant": timings,
                "snapshot_build": snapshot_build,
                "dataset": args.dataset, "protocol": PROTOCOL.get(args.dataset, "each user's last event"),
                "side_information": side_information(config), "config": dataclasses.asdict(config),
                "variant_overrides": {name: variant_overrides(config, name) for name in args.variants}}
        write_report(rows, meta, label, args.dataset, args.sampled, curves)
    print((RESULTS / f"quality_{label}.md").read_text())


if __name__ == "__main__":
    main()
