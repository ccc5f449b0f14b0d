"""Training throughput and quality: one forward per label against every label of a user's sequence in one forward.

    python benchmarks/training/run.py --users 300 --budget-s 180 --seeds 0 1 2                       # equal wall clock
    python benchmarks/training/run.py --users 300 --length 50 --epochs 2 --budget-s 0 --label epochs  # equal epochs
    python benchmarks/training/run.py --users 2000 --batch 2048 --budget-s 300 --seeds 0 1 --label softmax \
        --modes "every position, causal" "every position, causal, full softmax"    # sampled vs full softmax

Data: ML-1M sequences (gSASRec's ml-1m.txt, one `user item` line per rating in time order) for a random sample of
users, built into the trainer's per-label inputs directly (the label at position i sees the i earlier ratings, at most
`--length`; what the point-in-time snapshot holds), one scenario, no text (ids only). Test: each sampled user's last
rating, full ranking over all items in fp32, every earlier item filtered, ties counted against the target; the
validation label (second to last) is not trained on. Each mode trains for the same wall-clock budget (or the same
number of epochs) on the same machine in one run, so the ratios compare like with like. Writes
benchmarks/results/training[_<label>].{json,md}.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from recplugin.config import RecConfig, from_dict  # noqa: E402
from recplugin.models.inputs import ScenarioEvents, build_batch  # noqa: E402
from recplugin.models.two_tower import TwoTower  # noqa: E402
from recplugin.training import distributed as dist_  # noqa: E402
from recplugin.training import evaluate as ev  # noqa: E402
from recplugin.training.assess import model_ranks, popularity_ranks  # noqa: E402
from recplugin.training.dataset import LabelledSplit  # noqa: E402
from recplugin.training.objective import batch_loss, loss_inputs  # noqa: E402
from recplugin.training.train import epoch_batches, make_optimizer, packed_split  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODES = {  # name -> (model.user_attention, training.positions, training.softmax)
    "per label, bidirectional": ("bidirectional", "last", "sampled"),
    "per label, causal": ("causal", "last", "sampled"),
    "every position, causal": ("causal", "all", "sampled"),
    "every position, causal, full softmax": ("causal", "all", "full"),
}


def read_sequences(path: Path, users: int, seed: int) -> tuple[list[list[int]], int]:
    """A random sample of users' item sequences (item ids as rows 0..N-1) and the catalogue size."""
    pairs = np.loadtxt(path / "ml-1m.txt", dtype=np.int64)
    sequences: dict[int, list[int]] = {}
    for user, item in pairs:
        sequences.setdefault(int(user), []).append(int(item) - 1)
    chosen = np.random.default_rng(seed).choice(sorted(sequences), size=min(users, len(sequences)), replace=False)
    return [sequences[int(u)] for u in sorted(chosen)], int(pairs[:, 1].max())


def labelled(sequences: list[list[int]], positions: list[range], length: int) -> LabelledSplit:
    """Per-label inputs: label i of a sequence sees its i earlier items (the last `length`), one minute apart."""
    histories, targets, owners, seen = [], [], [], []
    for user, (items, wanted) in enumerate(zip(sequences, positions)):
        for position in wanted:
            earlier = items[:position]
            histories.append([ScenarioEvents(earlier, [0] * len(earlier), [60 * (i + 1) for i in range(len(earlier))])])
            targets.append(items[position]), owners.append(user), seen.append(np.unique(np.asarray(earlier, dtype=np.int64)))
    inputs = build_batch(histories, [0] * len(targets), [-1] * len(targets), length, {i: i for i in range(4000)})
    return LabelledSplit(inputs, np.asarray(targets, dtype=np.int64), np.asarray(owners, dtype=np.int64), seen)


def config_for(mode: str, args: argparse.Namespace, seed: int) -> RecConfig:
    """The ML-1M benchmark config (ids only) with the mode's attention and positions."""
    attention, positions, softmax = MODES[mode]
    return from_dict({"scenarios": ["feed"], "model": {
        "max_sequence_length": args.length, "use_text": False, "use_item_ids": True, "user_dim": 128, "user_heads": 4,
        "user_layers": 2, "dropout": 0.2, "user_attention": attention}, "training": {
        "batch_size": args.batch, "learning_rate": 1e-3, "random_negatives": 4096, "positions": positions, "softmax": softmax, "seed": seed,
        "epochs": 1000, "device": "cpu"}})


def _step(model: TwoTower, train: LabelledSplit, index: np.ndarray, parts: tuple, config: RecConfig, packed) -> int:
    """One optimiser step; the labels it trained on."""
    extra, optimizer, scheduler, context, generator, num_items = parts
    loss = batch_loss(model, train, index, extra, torch.zeros(0, 1), config, context, generator, num_items, packed)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return len(index) if packed is None else int(np.isin(packed.cut_row, index).sum())


def planned_steps(train: LabelledSplit, packed, config: RecConfig, num_items: int, args: argparse.Namespace) -> int:
    """The steps this mode will take: its epochs' batches, or what the budget allows at the speed of two timed steps
    (on a throwaway model), so that every mode gets a whole warm-up + cosine schedule."""
    batches = epoch_batches(train, packed, config.training, np.random.default_rng(0))
    if args.budget_s <= 0:
        return len(batches) * args.epochs
    model = TwoTower(config.model, torch.zeros(num_items, 1), 1, len(config.actions))
    extra = loss_inputs(train, config, num_items, torch.device("cpu"))
    parts = (extra, *make_optimizer(model, extra, config, 100), dist_.setup("cpu"), np.random.default_rng(0), num_items)
    _step(model, train, batches[0], parts, config, packed)
    began = time.monotonic()
    _step(model, train, batches[1 % len(batches)], parts, config, packed)
    steps = max(1, int(args.budget_s / (time.monotonic() - began)))
    return min(steps, len(batches) * args.epochs) if args.epochs > 0 else steps


def run_mode(mode: str, train: LabelledSplit, test: LabelledSplit, num_items: int, args: argparse.Namespace,
             seed: int) -> dict:
    """Train for the budget (or epochs); labels/s, steps, and the test metrics of the model it reached."""
    config = config_for(mode, args, seed)
    began = time.monotonic()
    packed = packed_split(train, config)
    pack_s = time.monotonic() - began
    steps_planned = planned_steps(train, packed, config, num_items, args)
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    model = TwoTower(config.model, torch.zeros(num_items, 1), 1, len(config.actions))
    extra = loss_inputs(train, config, num_items, torch.device("cpu"))
    parts = (extra, *make_optimizer(model, extra, config, steps_planned), dist_.setup("cpu"), generator, num_items)
    labels = steps = 0
    model.train()
    started = time.monotonic()
    while steps < steps_planned and not (args.budget_s > 0 and time.monotonic() - started >= args.budget_s):
        for index in epoch_batches(train, packed, config.training, generator):
            labels += _step(model, train, index, parts, config, packed)
            steps += 1
            if steps >= steps_planned or (args.budget_s > 0 and time.monotonic() - started >= args.budget_s):
                break
    trained_s = time.monotonic() - started
    metrics = ev.metrics_from_ranks(model_ranks(model, test, torch.zeros(0, 1), torch.device("cpu")))
    row = {"mode": mode, "seed": seed, "steps": steps, "steps_planned": steps_planned, "labels": labels,
           "train_s": round(trained_s, 1), "labels_per_s": round(labels / trained_s, 1), "epochs": round(labels / len(train), 3),
           "pack_s": round(pack_s, 2), **{k: metrics[k] for k in ("NDCG@10", "Recall@10", "MRR")}}
    if packed is not None:
        row.update(rows_per_label=round(packed.rows_per_point(), 4), exact_share=round(float(packed.exact.mean()), 4))
    print(json.dumps(row), flush=True)
    return row


def popularity(train: LabelledSplit, test: LabelledSplit, num_items: int) -> dict:
    """The popularity baseline's test metrics under the same protocol."""
    scores = ev.popularity_scores(train.target_rows, train.inputs.target_scenario, num_items, 1)
    metrics = ev.metrics_from_ranks(popularity_ranks(scores, test))
    return {k: metrics[k] for k in ("NDCG@10", "Recall@10", "MRR")}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per mode, and each mode's labels/s relative to the first one run."""
    table = []
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        stat = lambda key: (float(np.mean([r[key] for r in mine])), float(np.std([r[key] for r in mine])))  # noqa: E731
        table.append({"mode": mode, "seeds": len(mine), **{key: stat(key) for key in ("labels_per_s", "epochs", "NDCG@10", "Recall@10")}})
    base = table[0]["labels_per_s"][0]
    for entry in table:
        entry["speedup"] = round(entry["labels_per_s"][0] / base, 2)
    return table


def markdown(report: dict) -> str:
    """The results table with the run's record."""
    lines = [f"# Training throughput and quality ({report['data']})", "", f"`{report['provenance']['command']}`", "",
             f"commit {report['provenance']['git_commit']}, {report['provenance']['machine']}, {report['provenance']['date']}, "
             f"wall {report['provenance']['wall_s']} s, peak RSS {report['peak_rss_mib']} MiB", "", report["protocol"], "",
             "| mode | seeds | labels/s | speed-up | epochs trained | NDCG@10 | Recall@10 |", "|---|---|---|---|---|---|---|"]
    for row in report["summary"]:
        pm = lambda key, digits: f"{row[key][0]:.{digits}f} ± {row[key][1]:.{digits}f}"  # noqa: E731
        lines.append(f"| {row['mode']} | {row['seeds']} | {pm('labels_per_s', 0)} | {row['speedup']}x | {pm('epochs', 2)} | "
                     f"{pm('NDCG@10', 4)} | {pm('Recall@10', 4)} |")
    pop = report["popularity"]
    lines.append(f"| popularity (train targets) | - | - | - | - | {pop['NDCG@10']:.4f} | {pop['Recall@10']:.4f} |")
    lines += ["", "Each mode's learning-rate schedule (5% warm-up, cosine) spans the steps it takes: its epochs, or what "
              "its budget allows at the speed of two timed steps on a throwaway model."]
    return "\n".join(lines) + "\n"


def sample_arguments(description: str, batch: int) -> argparse.ArgumentParser:
    """The arguments of an ML-1M user sample run: data, users, length, batch, seeds, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--path", default="../shared/data/ml-1m")
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    return parser


def main() -> None:
    parser = sample_arguments(__doc__.splitlines()[0], 512)
    parser.add_argument("--budget-s", type=float, default=180.0, help="training seconds per mode (0: no limit)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per mode (0: as many as the budget allows)")
    parser.add_argument("--label", default="", help="results go to training_<label>.{json,md}")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    torch.set_num_threads(args.threads)
    sequences, num_items = read_sequences(Path(args.path), args.users, 0)
    train = labelled(sequences, [range(0, len(s) - 2) for s in sequences], args.length)
    test = labelled(sequences, [range(len(s) - 1, len(s)) for s in sequences], args.length)
    print(f"{len(sequences)} users, {len(train)} training labels, {num_items} items", flush=True)
    baseline = popularity(train, test, num_items)
    print(f"popularity: {baseline}", flush=True)
    rows = [run_mode(mode, train, test, num_items, args, seed) for seed in args.seeds for mode in args.modes]
    report = {"provenance": provenance(" ".join(["python", *sys.argv]), began, commit), "arguments": vars(args),
              "configs": {mode: json.loads(json.dumps(config_for(mode, args, 0), default=lambda o: o.__dict__))
                          for mode in args.modes},
              "data": f"ML-1M, {len(sequences)} sampled users, {len(train)} training labels, length {args.length}",
              "protocol": ("Each mode trains for the same wall-clock budget (--budget-s) or number of epochs (--epochs) on "
                           "the same labels; test = each "
                           "sampled user's last rating, full ranking over all items in fp32, earlier items filtered, ties "
                           "against the target. Not the gSASRec protocol (a user sample, no validation-based stopping)."),
              "rows": rows, "summary": summarise(rows), "popularity": baseline,
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    RESULTS.mkdir(exist_ok=True)
    name = f"training_{args.label}" if args.label else "training"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
