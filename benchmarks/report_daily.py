"""The report's day-to-day section: new items through the text tower (cold_items.json), warm start for a refresh
(warm_start.json) and a rollout under load (rollout.json)."""
from __future__ import annotations

from benchmarks.report_tables import RESULTS, load, mean_std, source, table

METHODS = ["text tower, all items", "text tower, new items only", "popularity, new items only"]


def cold_items_text() -> str:
    """Held-out items added through the served item tower, against popularity among the new items."""
    data = load("cold_items")
    runs = data["runs"]
    rows = []
    for method in METHODS:
        overall = [run["metrics"][method]["overall"] for run in runs]
        rows.append([method, mean_std([o["Recall@10"] for o in overall]), mean_std([o["NDCG@10"] for o in overall]),
                     mean_std([o["Recall@50"] for o in overall])])
    rows.append(["ids-only model", "0 (no vector for a new item)", "0", "0"])
    warm = [run["metrics"]["text tower, trained items' test rows"]["overall"]["NDCG@10"] for run in runs]
    paired = "; ".join(f"seed {run['seed']}: {d[0]:+.4f} ({d[1]:+.4f} .. {d[2]:+.4f})"
                       for run in runs for d in [run["text_minus_popularity_new_items_ndcg10"]])
    return (f"### New items through the text tower\n\nAmazon Food x Kitchen, default config, {data['meta']['minutes']:g} "
            f"minutes of training per seed. {data['meta']['share']:.0%} of the items (drawn per seed) are held out of "
            "the trainer's catalogue, so no event on them is ever trained on; then they are added as `POST /items` adds "
            "them (the served item tower on their text) and the test rows whose target is one of them are ranked "
            f"(seeds {', '.join(str(r['seed']) for r in runs)}; {', '.join(str(r['test_rows_on_new_items']) for r in runs)} "
            "test rows; mean ± std over seeds). Popularity among the new items knows that the target is new and counts "
            "the new items' train-split events, which the model never saw.\n\n"
            + table(["ranking", "Recall@10", "NDCG@10", "Recall@50"], rows)
            + f"\n\nText tower minus popularity, NDCG@10 on the same rows among the new items (95% interval over rows): "
              f"{paired}. The same models on the test rows of trained items: NDCG@10 {mean_std(warm)}.\n\n"
            + source("cold_items") + "\n")


def rollout_text() -> str:
    """A candidate at a share of users, promoted, rolled back, under load."""
    data = load("rollout")
    info = data["meta"]
    rows = [[p["phase"], p["requests"], p["failed_requests"], ", ".join(f"{v}: {n}" for v, n in sorted(p["answers_by_version"].items())),
             p["events"], p["failed_events"], f"{p['p50_ms']} / {p['p99_ms']}"] for p in data["phases"]]
    rollout = next(p for p in data["phases"] if p["phase"].startswith("rollout"))
    share = sum(n for v, n in rollout["settled_answers_by_version"].items() if v == info["candidate"]) / max(rollout["settled_answers"], 1)
    experiment = [[e["version"], e["answers"], e["attributed"], f"{e['ctr_at_10']:.4f}"] for e in data["experiments"]]
    return (f"### A rollout under load\n\nProduction stack (Redis, PostgreSQL, a Milvus standalone server, 2 workers), "
            f"{info['threads']} load threads; control {info['control']}, candidate {info['candidate']} at "
            f"{info['share']:g}% of users, then promoted, then rolled back, {info['phase_seconds']:g} s per phase. Once "
            f"every worker had looked again, {rollout['settled_answers_in_their_bucket']} of {rollout['settled_answers']} "
            f"rollout answers came from the version the user's bucket names, and the candidate answered {share:.1%} of "
            "them. Clicks are simulated and do not depend on the model: the per-version counts show the attribution, "
            "not which model is better.\n\n"
            + table(["phase", "requests", "failed", "answers by version", "events", "failed events", "p50 / p99 ms"], rows)
            + "\n\nPer version on /metrics (`recplugin experiments`):\n\n"
            + table(["version", "answers", "attributed events", "CTR@10"], experiment) + "\n\n" + source("rollout") + "\n")


def warm_start_text() -> str:
    """Today's model trained cold and warm-started from yesterday's, validation NDCG@10 per epoch."""
    data = load("warm_start")
    rows, notes = [], []
    for seed in data["seeds"]:
        for name, run in seed["runs"].items():
            rows.append([seed["seed"], name, " / ".join(f"{c['NDCG@10']:.4f}" for c in run["curve"]), run["steps"],
                         f"{run['test_ndcg10']:.4f}", f"{run['popularity_test_ndcg10']:.4f}"])
        notes.append(f"seed {seed['seed']}: the warm run reached the cold run's best validation NDCG@10 "
                     f"({seed['cold_best_validation_ndcg10']:.4f}) after {seed['warm_steps_to_cold_best']} steps, "
                     f"{seed['fraction_of_cold_steps']:.2f} of the cold run's {seed['runs']['today cold']['steps_to_best']}")
    return (f"### Warm start for a refresh\n\nGenerated data at the demo's size. Yesterday's model: events before the "
            f"{data['meta']['cut']:.0%} time quantile, trained cold; today's: every event, trained cold and warm-started "
            f"from yesterday's (`training.warm_start`, what `recplugin refresh` does), the same seed, {data['meta']['epochs']} "
            "epochs each without early stopping (validation is measured once per epoch, so steps are counted in whole "
            "epochs).\n\n" + table(["seed", "run", "validation NDCG@10 per epoch", "steps", "test NDCG@10", "popularity"], rows)
            + "\n\n" + "; ".join(notes) + ".\n\n" + source("warm_start") + "\n")


def daily_section() -> str:
    """Both parts that have result files."""
    parts = [text() for name, text in (("cold_items", cold_items_text), ("warm_start", warm_start_text), ("rollout", rollout_text))
             if (RESULTS / f"{name}.json").exists()]
    return "## Running it every day\n\n" + "\n".join(parts) if parts else ""
