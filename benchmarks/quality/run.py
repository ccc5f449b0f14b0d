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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from benchmarks.quality.report import PROTOCOL, RESULTS, write_report  # noqa: E402
from recplugin.config import RecConfig, load_config, with_overrides  # noqa: E402

SCENARIOS = {"generated": ["search", "feed", "discovery"], "ml-1m": ["feed"], "amazon-food-kitchen": ["food", "kitchen"]}
VARIANTS = {  # name -> {config section: {field: value}}; "isolated" trains one model per scenario
    "unified": {},
    "isolated": {},
    "K=1": {"model": {"interests_per_scenario": 1}},
    "K=2": {"model": {"interests_per_scenario": 2}},  # explicit, whatever the default is
    "min_context 0": {"training": {"min_context": 0.0}},  # SASRec-style windows (default 0.5)
    "K=1, min_context 0": {"model": {"interests_per_scenario": 1}, "training": {"min_context": 0.0}},
    "no scenario queries": {"model": {"scenario_queries": False}},
    "sasrec-style": {"model": {"interests_per_scenario": 1, "scenario_queries": False}, "training": {"target_window": 1}},
    "no text": {"model": {"use_text": False, "use_item_ids": True}},
    "no ids": {"model": {"use_item_ids": False}},  # the default item tower has no ids: same as unified unless the config adds them
    "text + ids": {"model": {"use_text": True, "use_item_ids": True}},
    "ids, init std 1": {"model": {"use_text": False, "use_item_ids": True, "item_id_init_std": 1.0}},  # the old start
    "learning rate 0.002": {"training": {"learning_rate": 0.002}},  # twice the base configs' 0.001
    "patience 6": {"training": {"patience": 6}},  # twice the default's epochs without a better validation score
    "min_context 0, patience 6": {"training": {"min_context": 0.0, "patience": 6}},
    "scenario negatives": {"training": {"negatives": "scenario"}},
    "global negatives": {"training": {"negatives": "global"}},
    "window 1": {"training": {"target_window": 1}},
    "window 10": {"training": {"target_window": 10, "window_weights": "target"}},  # as measured before row weights
    "window 10, K=3": {"model": {"interests_per_scenario": 3},  # RED-Rec's pair
                       "training": {"target_window": 10, "window_weights": "target"}},
    "window 10, K=3, row weights": {"model": {"interests_per_scenario": 3},
                                    "training": {"target_window": 10, "window_weights": "row"}},  # each label weighs one
    "K=3": {"model": {"interests_per_scenario": 3}},
    "balanced sampling": {"training": {"sampling": "balanced"}},
    "bidirectional": {"model": {"user_attention": "bidirectional"}, "training": {"positions": "last"}},  # interleaved
    "blocks": {"model": {"user_attention": "bidirectional", "mixing": "blocks"}, "training": {"positions": "last"}},
    "unified, equal total budget": {},  # ", equal total budget": training.max_minutes times the scenarios (the isolated
    "balanced sampling, equal total budget": {"training": {"sampling": "balanced"}},  # models' minutes together)
}
EQUAL_BUDGET = ", equal total budget"
SAMPLED_DRAW = "each row's negatives from (seed, user, target)"  # earlier runs drew one sequence over the test split


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


def side_information(config: RecConfig) -> str:
    """What the item tower sees besides interactions (baselines such as SASRec see item ids only)."""
    parts = [name for name, used in (("item text", config.model.use_text), ("item ids", config.model.use_item_ids)) if used]
    return " + ".join(parts) + f" (base config; variants may change it), scenario and action embeddings, sequence length " \
        f"{config.model.max_sequence_length}"


def resumed(path: Path, config: RecConfig) -> tuple[list[dict], dict, dict, dict]:
    """An earlier run's rows, timings, curves and record, to add the (variant, seed) pairs it lacks; refused when its
    base config differs from this run's (its variants would not be comparable)."""
    earlier = json.loads(path.read_text())
    ours, theirs = json.loads(json.dumps(dataclasses.asdict(config), default=str)), earlier["meta"]["config"]
    changed = sorted(f"{section}.{name}" for section in ours for name in ours[section] if isinstance(ours[section], dict)
                     and ours[section][name] != theirs.get(section, {}).get(name))
    if changed or any(ours[k] != theirs.get(k) for k in ours if not isinstance(ours[k], dict)):
        raise SystemExit(f"--resume {path}: its base config differs from this run's ({', '.join(changed) or 'top-level fields'})")
    record = {k: earlier["meta"][k] for k in ("command", "git_commit", "machine", "date", "wall_s", "seeds")}
    rows = earlier["per_seed"]
    if earlier["meta"].get("sampled_draw") != SAMPLED_DRAW:  # kept apart: only rows of one draw are compared
        rows = [{**r, "model": r["model"].replace(" sampled)", " sampled, earlier draw)")} for r in rows]
    return rows, earlier["meta"]["seconds_per_variant"], earlier.get("curves", {}), record


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
    parser.add_argument("--resume", help="a results JSON of the same base config: keep its rows, run only the "
                        "(variant, seed) pairs it lacks and record both runs")
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
    rows, timings, curves, earlier = resumed(Path(args.resume), config) if args.resume else ([], {}, {}, None)
    snapshot_build = prepare(config, args.dataset, args.path)
    label = args.label or args.dataset
    command = "python benchmarks/quality/run.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(shlex.quote(str(x)) for x in (v if isinstance(v, list) else [v]))}"
        for k, v in vars(args).items() if v)
    for seed in args.seeds:
        seeded = with_overrides(config, training={"seed": seed})
        for name in args.variants:
            if f"{name}, seed {seed}" in timings:  # done in the resumed run
                continue
            begin = time.perf_counter()
            metrics, variant_curves = run_variant(seeded, name)
            curves.update({f"{model}, seed {seed}": curve for model, curve in variant_curves.items()})
            timings[f"{name}, seed {seed}"] = time.perf_counter() - begin
            for model, table in metrics.items():
                if model.startswith("popularity") and any(r["model"] == model and r["seed"] == seed for r in rows):
                    continue
                row_model = model if model.startswith(("popularity", "isolated")) else model.replace("two-tower", name)
                rows += [{"model": row_model, "scenario": scenario, "seed": seed, **values} for scenario, values in table.items()
                         if values["users"]]  # a scenario without test labels has no figures to report
            print(f"{name}, seed {seed}: {timings[f'{name}, seed {seed}']:.0f} s", flush=True)
        finished = args.seeds[:args.seeds.index(seed) + 1]  # the report so far: a cut-off run keeps its finished seeds
        meta = {**provenance(command, began, commit), "seeds": finished, "seconds_per_variant": timings,
                "snapshot_build": snapshot_build,
                "dataset": args.dataset, "sampled_draw": SAMPLED_DRAW, "protocol": PROTOCOL.get(args.dataset, "each user's last event"),
                "side_information": side_information(config), "config": dataclasses.asdict(config),
                "variant_overrides": {name: variant_overrides(config, name) for name in args.variants},
                **({"resumed_from": earlier} if earlier else {})}
        write_report(rows, meta, label, args.dataset, args.sampled, curves)
    print((RESULTS / f"quality_{label}.md").read_text())


if __name__ == "__main__":
    main()
