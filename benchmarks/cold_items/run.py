"""The point of a text item tower: items the model never saw, added while serving, ranked for the users who pick them.

    python benchmarks/cold_items/run.py --seeds 0 1 --minutes 10

Amazon Food x Kitchen, default config. 10% of the items (drawn with the seed) are held out: the trainer's catalogue
lacks them, so every event on them is out of its histories and labels (strictly cold: no event on them is ever
trained on). After training, they are added the way `POST /items` adds them (`RetrievalModel.cold_item_vectors` from
their text, then `add_items`: the served model's item tower). The test split is the usual one (leave-last-out per user
and scenario, from the snapshot of all events); the rows whose target is a held-out item are ranked:
- text tower, full ranking over every item (trained and new), seen items excluded, ties against the target;
- text tower among the new items only, and popularity among the new items (their counts in the train split, which the
  model never saw: a baseline that knows the target is new and how popular it became);
- an ids-only model cannot rank them: it has no vector for an item it was not trained on (the same call raises).
Writes benchmarks/results/cold_items.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import ROOT, git_commit, provenance  # noqa: E402
from recplugin import pipeline  # noqa: E402
from recplugin.config import load_config, to_dict, with_overrides  # noqa: E402
from recplugin.data.schema import write_items  # noqa: E402
from recplugin.models.artifact import NoTextTower, RetrievalModel  # noqa: E402
from recplugin.training import evaluate as ev  # noqa: E402
from recplugin.training.compare import split_ranks  # noqa: E402
from recplugin.training.dataset import load_snapshot  # noqa: E402
from recplugin.training.train import train  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "amazon-food-kitchen"
KS = (10, 50)


def prepare(work: Path) -> tuple:
    """Load the dataset and build the point-in-time snapshot of all events once."""
    config = load_config(None, workdir=str(work), scenarios=["food", "kitchen"], registry_url=f"sqlite:///{work}/registry.db")
    if not config.snapshot_path.exists():
        pipeline.load_dataset(config, "amazon-food-kitchen", SHARED)
        pipeline.apply(config, progress=False)
        pipeline.build_training_set(config)
    return config, pd.read_parquet(config.catalog_path)


def held_out(catalog: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """A random `share` of the item ids."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(catalog["item_id"].to_numpy(), size=int(round(share * len(catalog))), replace=False))


def ndcg10(found: np.ndarray) -> np.ndarray:
    """Each row's NDCG@10 from its 0-based rank."""
    return np.where(found < 10, 1.0 / np.log2(found + 2.0), 0.0)


def interval(values: np.ndarray) -> list[float]:
    """Mean and its 95% interval (normal approximation over rows)."""
    mean, half = float(values.mean()), 1.959964 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return [round(mean, 5), round(mean - half, 5), round(mean + half, 5)]


def run_seed(config, catalog: pd.DataFrame, seed: int, minutes: float, share: float) -> dict:
    """Train without the held-out items, add them through the item tower, rank the test rows that pick them."""
    new_ids = held_out(catalog, share, seed)
    work = Path(config.workdir).resolve() / f"cold-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    reduced = work / "items_without_held_out.parquet"
    write_items(catalog[~catalog["item_id"].isin(new_ids)].reset_index(drop=True), reduced)
    seeded = with_overrides(config, training={"seed": seed, "max_minutes": minutes})
    began = time.monotonic()
    result = train(seeded, config.snapshot_path, reduced, work / "models", progress=True)
    train_s = time.monotonic() - began
    model = RetrievalModel(result.artifact_dir)
    texts = catalog.set_index("item_id").loc[new_ids, "text"].tolist()
    model.add_items(new_ids.tolist(), model.cold_item_vectors(texts))  # what POST /items does with the served model
    snapshot = load_snapshot(config.snapshot_path, config.scenarios, model.id_to_row, config.model.max_sequence_length,
                             config.serving.exclude_seen)
    test, train_split = snapshot.splits["test"], snapshot.splits["train"]
    new_rows = np.arange(len(model.item_ids), len(model.item_table))
    is_new = np.isin(test.target_rows, new_rows)
    cold, warm = np.flatnonzero(is_new), np.flatnonzero(~is_new)
    only_new = torch.zeros(1, len(model.item_table), dtype=torch.bool)
    only_new[0, torch.as_tensor(new_rows)] = True
    popularity = ev.popularity_scores(train_split.target_rows, train_split.inputs.target_scenario, len(model.item_table),
                                      len(config.scenarios))
    popular_new = ev.ranks_for(lambda index: popularity[test.inputs.target_scenario[cold[index]]], test.target_rows[cold],
                               [test.seen[r] for r in cold], allowed_fn=lambda index: only_new.expand(len(index), -1))
    scenario_of = test.inputs.target_scenario
    by_method = {"text tower, all items": split_ranks(model, test, cold),
                 "text tower, new items only": split_ranks(model, test, cold, only_new),
                 "popularity, new items only": popular_new}
    table = {name: ev.per_scenario(found, scenario_of[cold], config.scenarios, KS) for name, found in by_method.items()}
    table["text tower, trained items' test rows"] = ev.per_scenario(split_ranks(model, test, warm), scenario_of[warm],
                                                                     config.scenarios, KS)
    paired = ndcg10(by_method["text tower, new items only"]) - ndcg10(popular_new)  # the same rows under both
    ids_only = with_overrides(config, model={"use_text": False, "use_item_ids": True})
    try:
        model.config = ids_only
        model.cold_item_vectors(texts[:1])
        ids_note = "unexpected: an ids-only model gave a vector"
    except NoTextTower as error:
        ids_note = str(error)
    print(f"seed {seed}: {len(new_ids)} new items, {len(cold)} test rows pick one; "
          + ", ".join(f"{name} NDCG@10 {values['overall']['NDCG@10']:.4f}" for name, values in table.items()), flush=True)
    return {"seed": seed, "held_out_items": int(len(new_ids)), "catalogue_items": int(len(catalog)),
            "test_rows_on_new_items": int(len(cold)), "test_rows_on_trained_items": int(len(warm)),
            "train_seconds": round(train_s, 1), "model_version": result.version, "metrics": table,
            "ndcg10_ci95": {name: interval(ndcg10(found)) for name, found in by_method.items()},
            "text_minus_popularity_new_items_ndcg10": interval(paired),
            "ids_only": {"Recall@10": 0.0, "NDCG@10": 0.0, "why": ids_note}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--minutes", type=float, default=10.0, help="training.max_minutes per seed")
    parser.add_argument("--share", type=float, default=0.1, help="share of the items held out")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the Amazon Food x Kitchen data")
    began, commit = time.monotonic(), git_commit()
    config, catalog = prepare(ROOT / ".recplugin" / "cold-items")
    runs = []
    out = ROOT / "benchmarks" / "results" / "cold_items.json"
    for seed in args.seeds:
        runs.append(run_seed(config, catalog, seed, args.minutes, args.share))
        out.write_text(json.dumps({"meta": {**provenance(f"python {shlex.join(sys.argv)}", began, commit),
                                            "minutes": args.minutes, "share": args.share, "config": to_dict(config)},
                                   "runs": runs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
