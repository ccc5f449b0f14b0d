"""benchmarks/REPORT.md and README's "Results at a glance" table, generated from the result files alone (`make report`).

    python benchmarks/report.py           # rewrite both
    python benchmarks/report.py --check   # exit 1 when either differs from what the files give (a test runs this)

Every figure in either comes from a JSON file in benchmarks/results/, named beside its table with the command, commit,
machine and date that produced it; the files are written by their scripts only. Files the report does not cite do not
belong in benchmarks/results/ (git keeps them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report_daily import daily_section  # noqa: E402
from benchmarks.report_serving import serving_section  # noqa: E402
from benchmarks.report_tables import RESULTS, ROOT, load, mean_std, source, table  # noqa: E402

REPORT = ROOT / "benchmarks" / "REPORT.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin (make report writes this table) -->", "<!-- results:end -->"
FULL = "full ranking, all items"
# The defaults table: each dataset's default config (`unified`) against text + ids, 3 seeds, 20 minutes each.
DEFAULTS_FILES = ["quality_defaults_amazon-text-ids-seeds01", "quality_defaults_amazon-text-ids-seed2", "quality_defaults_seed2",
                  "quality_defaults_ml-1m-text-ids", "quality_defaults_ml-1m-text-ids-seed1", "quality_defaults_ml-1m-seed1",
                  "quality_defaults_generated-ids-balanced", "quality_defaults_generated-text-ids-seeds12"]
# Decisions on the defaults: each file puts candidate variants beside the base one in the same run.
DECISION_FILES = {"K (interests per scenario)": ["quality_defaults", "quality_defaults_amazon-seed1"],
                  "min_context": ["quality_defaults_min-context"],
                  "patience": ["quality_defaults_amazon-patience", "quality_defaults_amazon-min-context-patience6"],
                  "target window": ["quality_defaults_generated-window10", "quality_defaults_generated-window10-seed2",
                                    "quality_defaults_amazon-request-windows", "quality_defaults_generated-request-windows",
                                    "quality_defaults_generated-window-row-weights",
                                    "quality_defaults_generated-window-row-weights-seeds12"]}
BASES = {"quality_defaults_amazon-min-context-patience6": "patience 6"}  # a run whose base is not `unified` or `K=1`
UNIFIED_VS_ISOLATED = "quality_amazon-food-kitchen-budget-16-text-ids-k1"
ML1M_PROTOCOL = ["quality_ml-1m-gsasrec-ids-k1", "quality_ml-1m-gsasrec-text-ids-k1"]


def defaults_rows(names: list[str]) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """(dataset, variant) -> seed -> (model, popularity) overall NDCG@10, full ranking over all items."""
    cells: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for name in names:
        for row in load(name)["rows"]:
            if row["protocol"] == FULL and row["scenario"] == "overall":
                cells.setdefault((row["dataset"], row["variant"]), {})[row["seed"]] = (row["NDCG@10"], row["popularity NDCG@10"])
    return cells


def defaults_section() -> tuple[str, dict]:
    """Default config vs text + ids vs popularity on every dataset; also the glance rows."""
    cells = defaults_rows(DEFAULTS_FILES)
    rows, glance = [], {}
    for (dataset, variant), seeds in sorted(cells.items()):
        model = [seeds[s][0] for s in sorted(seeds)]
        popularity = [seeds[s][1] for s in sorted(seeds)]
        ratio = np.mean(model) / np.mean(popularity)
        rows.append([dataset, "defaults" if variant == "unified" else variant, ", ".join(map(str, sorted(seeds))),
                     mean_std(model), mean_std(popularity), f"{ratio:.1f}x"])
        glance[(dataset, variant)] = (np.mean(model), np.mean(popularity), ratio, len(seeds))
    text = table(["dataset", "config", "seeds", "NDCG@10", "popularity NDCG@10", "vs popularity"], rows)
    return (f"## The built-in defaults on real logs\n\nTest split, leave-last-out, full ranking over all items, seen items "
            f"excluded, overall; 20 minutes of CPU training at most (early stopping on validation), mean ± std over seeds.\n\n"
            f"{text}\n\n{source(*DEFAULTS_FILES)}\n"), glance


def decisions_section() -> str:
    """Each candidate default beside the base variant of its own run (overall NDCG@10, ratio to that base)."""
    parts = ["## Decisions on the defaults\n\nEach candidate against the base of the same run (overall NDCG@10, full "
             "ranking; the ratio is candidate / base, averaged over the seeds both ran). The decisions: docs/experiments.md.\n"]
    for question, names in DECISION_FILES.items():
        rows = []
        for name in names:
            cells = defaults_rows([name])
            for dataset in sorted({d for d, _ in cells}):
                variants = {v: s for (d, v), s in cells.items() if d == dataset}
                base = BASES.get(name, "unified" if "unified" in variants else "K=1")
                for variant, seeds in variants.items():
                    if variant == base:
                        continue
                    common = sorted(set(seeds) & set(variants[base]))
                    ratio = np.mean([seeds[s][0] / variants[base][s][0] for s in common])
                    rows.append([dataset, variant, base, ", ".join(map(str, common)),
                                 f"{np.mean([variants[base][s][0] for s in common]):.4f}",
                                 f"{np.mean([seeds[s][0] for s in common]):.4f}", f"{ratio:.2f}x"])
        parts.append(f"### {question}\n\n" + table(["dataset", "candidate", "base", "seeds", "base NDCG@10",
                                                      "candidate NDCG@10", "candidate / base"], rows) + f"\n\n{source(*names)}\n")
    return "\n".join(parts)


def model_table_section(title: str, intro: str, names: list[str]) -> str:
    """Rows of quality/run.py files: model, scenario, NDCG@10 and Recall@10 with their std over seeds."""
    rows = []
    for name in names:
        for row in load(name)["rows"]:
            if "NDCG@10" in row and "sampled" not in row["model"]:
                rows.append([row["model"], row["scenario"], row.get("seeds", 1),
                             f"{row['NDCG@10']:.4f} ± {row.get('NDCG@10_std', 0):.4f}",
                             f"{row['Recall@10']:.4f} ± {row.get('Recall@10_std', 0):.4f}"])
    return f"## {title}\n\n{intro}\n\n" + table(["model", "scenario", "seeds", "NDCG@10", "Recall@10"], rows) + \
        f"\n\n{source(*names)}\n"


def demo_section() -> tuple[str, dict]:
    """`make demo`: wall time per stage and the model against popularity."""
    data = load("demo")
    stages = [[stage, f"{seconds:.1f}"] for stage, seconds in data["stages_s"].items()]
    text = (f"## The first hour: `make demo`\n\n{data['wall_s']:.0f} s wall in all (target {data['meta']['target_s']:.0f} s; "
            f"load average before {data['meta']['load_average_before'][0]}), venv installed. Test NDCG@10 "
            f"{data['test_ndcg10']:.4f} against popularity {data['popularity_test_ndcg10']:.4f} ({data['ratio']:.1f}x); "
            f"training stopped by {data['verdict']['stopped_by']}.\n\n" + table(["stage", "seconds"], stages) +
            f"\n\n{source('demo')}\n")
    return text, data


def out_of_box_section() -> tuple[str, list[list[object]]]:
    """The default config through the team path on public logs (benchmarks/out_of_box/run.py, every out_of_box*.json)."""
    names = sorted(path.stem for path in RESULTS.glob("out_of_box*.json"))
    runs_of = [load(name) for name in names]
    newest: dict[tuple[str, int], dict] = {}  # a dataset and seed run again: its newest run counts
    for data in runs_of:
        for row in data["rows"]:
            held = newest.get((row["dataset"], row["seed"]))
            if held is None or data["meta"]["date"] > held["meta"]["date"]:
                newest[(row["dataset"], row["seed"])] = data
    rows, glance = [], []
    groups: dict[tuple[str, str], list[dict]] = {}
    for data in runs_of:
        for row in data["rows"]:
            if newest[(row["dataset"], row["seed"])] is data:
                groups.setdefault((row["dataset"], row["scenario"]), []).append({**row, "commit": data["meta"]["git_commit"][:7]})
    for (dataset, scenario), runs in groups.items():
        scored = [run for run in runs if run.get("users")]
        if not scored:
            rows.append([dataset, scenario, "-", "no test labels", "-", "-", "-"])
            continue
        model, popularity = [r["NDCG@10"] for r in scored], [r["popularity NDCG@10"] for r in scored]
        ratio = np.mean(model) / np.mean(popularity)
        seeds = ", ".join(f"{r['seed']} ({r['commit']})" for r in sorted(scored, key=lambda r: r["seed"]))
        worst = min(r["NDCG@10"] / r["popularity NDCG@10"] for r in scored)
        rows.append([dataset, scenario, seeds, mean_std(model), mean_std(popularity), f"{ratio:.1f}x", f"{worst:.1f}x"])
        if scenario != "overall":
            glance.append([f"your data, default config: {dataset} {scenario} NDCG@10 vs popularity ({len(scored)} seed(s))",
                           f"{np.mean(model):.4f} vs {np.mean(popularity):.4f} ({ratio:.1f}x; worst seed {worst:.1f}x)",
                           "out of the box"])
    text = (f"## Out of the box: your data, the default config\n\nA public log exported under a team's column names, "
            f"then only `recplugin` commands (load events, apply, materialize, build-training-set, train, evaluate) with "
            f"the mapping, the scenarios, the seed and a {runs_of[0]['meta']['minutes']:g}-minute training budget set; test split "
            f"leave-last-out per scenario, full ranking over all items, seen items excluded. A dataset and seed measured "
            f"again counts with its newest run only.\n\n"
            + table(["dataset", "scenario", "seeds (commit)", "NDCG@10", "popularity NDCG@10", "vs popularity", "worst seed"], rows)
            + f"\n\n{source(*names)}\n")
    return text, glance


def operations_section() -> str:
    """Faults, soak, Milvus server indexes, user-state engines and the generator."""
    faults = load("faults")
    fault_rows = [[f["fault"], max(f["longest_answer_s"].values()), f["within_bound"], f["recovered"], f.get("recovery_s")]
                  for f in faults["faults"]]
    events = faults["events"]
    soak = load("soak")
    milvus = [[r["items"], r["index"], json.dumps(r.get("search") or {}), f"{r['p50_ms']:.1f}", f"{r['recall_at_100']:.3f}"]
              for r in load("milvus_server")["rows"]]
    state = [[f"{r['events']:,}", r["stage"], r["engine"], f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:.0f}"]
             for r in load("state")["rows"]]
    generator = [[f"{r['events']:,}", f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:.0f}"] for r in load("generator")["rows"]]
    lite = [[r["milvus_lite"], f"{r['items']:,}", r["index"], f"{r['p50_ms']:.1f}", f"{r['recall_at_100']:.3f}"]
            for r in load("milvus_lite")["rows"] if "error" not in r]
    training = [[r["mode"], r["seeds"], f"{r['labels_per_s'][0]:.1f}", f"{r['speedup']:.1f}x", f"{r['NDCG@10'][0]:.4f} ± {r['NDCG@10'][1]:.4f}"]
                for r in load("training")["summary"]]
    dropout = [[r["side"], r["seed"], f"{r['s_per_step']:.3f}", f"{r['NDCG@10']:.4f}"] for r in load("training_dropout")["rows"]]
    return "\n".join([
        "## Training throughput\n\nThe same wall-clock budget per mode on sampled ML-1M users (sequence length 200).\n",
        table(["mode", "seeds", "labels/s", "speed-up", "test NDCG@10"], training), f"\n{source('training')}\n",
        "## Dropout on CPU\n", table(["dropout", "seed", "s/step", "test NDCG@10"], dropout), f"\n{source('training_dropout')}\n",
        "## Milvus Lite versions\n", table(["milvus-lite", "items", "index", "p50 ms", "recall@100"], lite),
        f"\n{source('milvus_lite')}\n",
        "## Faults\n", table(["fault", "longest answer s", "within bound", "recovered", "recovery s"], fault_rows),
        f"\nEvents: {events['acknowledged']:,} acknowledged, {events['acknowledged_but_missing_online']} of them missing online, "
        f"{events['acknowledged_but_missing_in_log']} missing in the log.\n\n{source('faults')}\n",
        f"## Soak\n\n{soak['requests']:,} requests of mixed valid and invalid input at concurrency 32: statuses "
        f"{soak['statuses']}, p50 {soak['p50_ms']:.0f} ms, p99 {soak['p99_ms']:.0f} ms, service RSS "
        f"{soak['meta']['rss_first_tenth_mib']:.0f} MiB over the first tenth and {soak['meta']['rss_last_tenth_mib']:.0f} MiB "
        f"over the last.\n\n{source('soak')}\n",
        "## Milvus server indexes\n", table(["items", "index", "search params", "p50 ms", "recall@100"], milvus),
        f"\n{source('milvus_server')}\n",
        "## User state and snapshot\n", table(["events", "stage", "engine", "seconds", "peak RSS MiB"], state),
        f"\n{source('state')}\n",
        "## Generator\n", table(["events", "seconds", "peak RSS MiB"], generator), f"\n{source('generator')}\n",
    ])


def glance_table(demo: dict, defaults: dict, serving: list[dict], out_of_box: list[list[object]]) -> str:
    """README's one table (<= 15 rows), every figure from the files above."""
    rows = [["`make demo` wall time, 2 CPU cores", f"{demo['wall_s']:.0f} s", "demo.json"],
            ["demo model vs popularity, test NDCG@10", f"{demo['test_ndcg10']:.4f} vs {demo['popularity_test_ndcg10']:.4f} "
             f"({demo['ratio']:.1f}x)", "demo.json"], *out_of_box]
    names = {"ml-1m": "ML-1M", "amazon-food-kitchen": "Amazon Food x Kitchen", "generated": "generated data"}
    for (dataset, variant), (model, popularity, ratio, seeds) in sorted(defaults.items()):
        if variant not in ("unified", "text + ids"):
            continue
        config = "defaults" if variant == "unified" else variant
        rows.append([f"{names[dataset]}, {config}: NDCG@10 vs popularity ({seeds} seeds)",
                     f"{model:.4f} vs {popularity:.4f} ({ratio:.1f}x)", "defaults table"])
    for record in serving:
        rows.append([f"{record['stack']}, {record['items']:,} items: c=1 p99 / c=32 req/s (of BentoML's no-op ceiling)",
                     f"{record['p99']:.1f} ms / {record['rps']:.0f} ({record['ratio']:.2f}x)", "serving"])
    return table(["what", "measured", "REPORT.md section"], rows)


def render() -> tuple[str, str]:
    """The report and the README glance table."""
    demo_text, demo = demo_section()
    defaults_text, defaults = defaults_section()
    serving_text, serving = serving_section()
    out_of_box_text, out_of_box = out_of_box_section() if list(RESULTS.glob("out_of_box*.json")) else ("", [])
    glance = glance_table(demo, defaults, serving, out_of_box)
    report = "\n".join(part for part in [
        "# Benchmark report\n\nGenerated by `make report` (benchmarks/report.py) from benchmarks/results/*.json; do not edit. "
        "Each table names the files, commands, commits, machines and dates behind it.\n",
        "## Results at a glance\n", glance + "\n", demo_text, out_of_box_text, defaults_text, decisions_section(),
        model_table_section("Unified vs isolated models (Amazon Food x Kitchen)",
                            "Isolated: one model per domain with 8 minutes each; unified: one model over both domains with "
                            "their 16 minutes, scenario-balanced sampling; text + ids, K=1; test split, full ranking.",
                            [UNIFIED_VS_ISOLATED]),
        model_table_section("ML-1M under the gSASRec protocol",
                            "ML-1M with gSASRec's split and full ranking (ids only, and text + ids), K=1, 3 seeds.",
                            ML1M_PROTOCOL),
        serving_text, daily_section(), operations_section()] if part)
    return report.rstrip() + "\n", glance


def readme_with(glance: str) -> str:
    """README.md with the glance table between its markers."""
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{glance}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    args = parser.parse_args()
    report, glance = render()
    readme = readme_with(glance)
    if args.check:
        stale = [path.name for path, text in ((REPORT, report), (README, readme)) if path.read_text() != text]
        if stale:
            sys.exit(f"{', '.join(stale)} differ from what benchmarks/report.py writes: run `make report`")
        print("REPORT.md and README.md match the result files")
        return
    REPORT.write_text(report)
    README.write_text(readme)
    print(f"wrote {REPORT} and README's results table")


if __name__ == "__main__":
    main()
