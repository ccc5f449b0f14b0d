"""The quality benchmark's report: means over seeds, the markdown tables, the bar chart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"
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

def plot(rows: list[dict], path: Path) -> None:
    """NDCG@10 (full ranking) per model as horizontal bars, one panel per scenario, names on the axis, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if "sampled" not in r["model"] and "merge)" not in r["model"]]
    scenarios = sorted({r["scenario"] for r in shown}, key=lambda s: (s == "overall", s))
    models = list(dict.fromkeys(r["model"] for r in shown))
    figure, axes = plt.subplots(1, len(scenarios), sharey=True, squeeze=False,
                                figsize=(2.2 + 3.2 * len(scenarios), 0.8 + 0.28 * len(models)))
    for axis, scenario in zip(axes[0], scenarios):
        cells = [next((r for r in shown if r["model"] == m and r["scenario"] == scenario), None) for m in models]
        values = [c["NDCG@10"] if c else 0.0 for c in cells]
        errors = [c.get("NDCG@10_std", 0.0) if c else 0.0 for c in cells]
        axis.barh(range(len(models)), values, xerr=errors, color=["tab:gray" if m.startswith("popularity") else
                  "tab:orange" if m.startswith("isolated") else "tab:blue" for m in models], capsize=2)
        axis.set(title=scenario, xlabel="NDCG@10")
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(models)), models, fontsize=8)
    axes[0][0].invert_yaxis()
    figure.suptitle(f"{path.stem} (error bars: std over seeds)", fontsize=10)
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
                if meta.get("rendered") else "") + (
                 f"; the (variant, seed) pairs of seeds {meta['resumed_from']['seeds']} it did not run come from "
                 f"`{meta['resumed_from']['command']}` at commit {meta['resumed_from']['git_commit']}, "
                 f"{meta['resumed_from']['date']} (`--resume`)" if meta.get("resumed_from") else "") + ".\n",
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
    lines += comparisons(rows, per_seed) + merge_coverage(rows)
    epochs = max(map(len, curves.values()), default=0)
    lines += ["", "Training curves (validation NDCG@10 after each epoch; loss, logit scale and steps in the JSON file; minutes "
              "of training steps, without evaluation, where the run recorded them):\n",
              "| model | minutes | " + " | ".join(f"epoch {i + 1}" for i in range(epochs)) + " |",
              "|---|---|" + "---|" * epochs]
    minutes = lambda curve: f"{curve[-1]['train_s'] / 60:.1f}" if curve and "train_s" in curve[-1] else "-"  # noqa: E731
    lines += [f"| {model} | {minutes(curve)} | " + " | ".join([f"{row['NDCG@10']:.4f}" for row in curve] + [""] * (epochs - len(curve)))
              + " |" for model, curve in curves.items()]
    (RESULTS / f"quality_{label}.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / f"quality_{label}.png")


def protocol_name(model: str) -> str:
    """The evaluation a model's row stands for, from the suffix of its name ("unified (in-scenario)" -> own domain)."""
    suffix = model.partition(" (")[2].rstrip(")")
    return {"": "full ranking, all items", "in-scenario": "full ranking, own domain"}.get(suffix, suffix)


def versus(rows: list[dict], per_seed: list[dict], reference: str, only: tuple[str, ...] = ()) -> list[str]:
    """Per model (not popularity, not the reference; only those named in `only` when given), scenario and protocol: its
    NDCG@10, the reference model's, the relative difference and in how many seeds it was ahead (the merge comparisons
    are left out: they are not a protocol)."""
    pairs = []
    for row in rows:
        name, _, suffix = row["model"].partition(" (")
        suffix = suffix.rstrip(")")
        if name == reference or name.startswith(("isolated", "popularity")) or row["scenario"] == "overall" or "merge" in suffix:
            continue
        if only and name not in only:
            continue
        twin_name = reference + (f" ({suffix})" if suffix else "")
        ours = {r.get("seed", 0): r["NDCG@10"] for r in per_seed if r["model"] == row["model"] and r["scenario"] == row["scenario"]}
        theirs = {r.get("seed", 0): r["NDCG@10"] for r in per_seed if r["model"] == twin_name and r["scenario"] == row["scenario"]}
        common = sorted(ours.keys() & theirs.keys())  # both means over the seeds both models ran
        if common:
            first, second = np.array([ours[seed] for seed in common]), np.array([theirs[seed] for seed in common])
            pairs.append(f"| {name} | {row['scenario']} | {protocol_name(row['model'])} | {_spread(first)} | {_spread(second)} | "
                         f"{_relative(first.mean(), second.mean())} | {int((first > second).sum())}/{len(common)} |")
    return pairs


def _relative(value: float, reference: float) -> str:
    """The relative difference, or n/a where the reference scored zero (no ratio exists)."""
    return f"{value / reference - 1:+.1%}" if reference > 0 else "n/a (reference 0)"


def _spread(values: np.ndarray) -> str:
    """Mean, with the std when there is more than one value."""
    return f"{values.mean():.4f}" + (f" +- {values.std():.4f}" if len(values) > 1 else "")


def comparisons(rows: list[dict], per_seed: list[dict]) -> list[str]:
    """Unified models against the isolated ones, variants against the base unified model, and scenario blocks against
    interleaved mixing, where the run has them."""
    lines = []
    for reference, only, title, header in (
            ("isolated", (), "Unified cross-scenario models vs isolated per-scenario models", "unified | isolated | unified vs isolated"),
            ("unified", (), "Variants vs the base unified model (ablations)", "variant | unified | variant vs unified"),
            ("bidirectional", ("blocks",), "Scenario blocks vs interleaved mixing, both on the bidirectional tower (one "
             "forward per label)", "blocks | interleaved | blocks vs interleaved")):
        pairs = versus(rows, per_seed, reference, only)
        if pairs:
            lines += ["", f"{title}, NDCG@10 (means over the seeds both models ran; seeds ahead: in how many of them the "
                      "first model scored higher):\n",
                      f"| model | scenario | protocol | {header} | seeds ahead |", "|---|---|---|---|---|---|---|", *pairs]
    return lines


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
