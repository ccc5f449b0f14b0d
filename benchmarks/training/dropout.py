"""CPU dropout: PyTorch's Bernoulli mask vs recplugin's 16-bit mask (models/dropout.py), side by side in one run.

    python benchmarks/training/dropout.py --users 800 --steps 100 --seeds 0 1 2

Ops: each dropout on a tensor the size of a batch's feed-forward activations, and the event self-attention with
dropout (SDPA vs scores + softmax + the fast mask). Training: the ML-1M sample of benchmarks/training/run.py (ids
only, every position, causal, full softmax, length 200), two models from one seed stepping in turn (one step each,
so machine noise hits both alike), one with torch's dropout everywhere (the event attention as scores + softmax +
torch's mask, which the op table times against SDPA), one with the fast mask; then both are
evaluated on each sampled user's last rating (full ranking, fp32, ties against the target). Writes
benchmarks/results/training_dropout.{json,md}.
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.provenance import git_commit, provenance  # noqa: E402
from benchmarks.training.run import config_for, labelled, read_sequences, sample_arguments  # noqa: E402
from recplugin.models import cut_attention  # noqa: E402
from recplugin.models.dropout import Dropout, dropout  # noqa: E402
from recplugin.models.two_tower import TwoTower  # noqa: E402
from recplugin.training import distributed as dist_  # noqa: E402
from recplugin.training import evaluate as ev  # noqa: E402
from recplugin.training.assess import model_ranks  # noqa: E402
from recplugin.training.objective import batch_loss, loss_inputs  # noqa: E402
from recplugin.training.train import epoch_batches, make_optimizer, packed_split  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
SIDES = ("torch dropout", "fast dropout")


def timed(work, repeats: int) -> float:
    """Median milliseconds of `work()` after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def op_timings(rows: int, length: int, width: int, heads: int, p: float, repeats: int) -> list[dict]:
    """Milliseconds per call of each op with torch's mask and with the fast one."""
    x = torch.randn(rows, length, 4 * width)
    q, k, v = (torch.randn(rows, heads, length, width // heads) for _ in range(3))
    causal = torch.ones(length, length, dtype=torch.bool).tril()[None, None].expand(rows, 1, length, length)

    def attention(drop) -> torch.Tensor:  # what cut_attention runs for the events while training on CPU
        scores = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).masked_fill(~causal, float("-inf"))
        return drop(scores.softmax(dim=-1), p, True) @ v

    work = [("dropout on [B, L, 4W]", "torch F.dropout", lambda: F.dropout(x, p, True)),
            ("dropout on [B, L, 4W]", "fast", lambda: dropout(x, p, True)),
            ("event self-attention with dropout", "torch SDPA", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=p)),
            ("event self-attention with dropout", "scores + softmax + torch F.dropout", lambda: attention(F.dropout)),
            ("event self-attention with dropout", "scores + softmax + fast", lambda: attention(dropout))]
    return [{"op": op, "implementation": implementation, "ms": timed(call, repeats)} for op, implementation, call in work]


def torch_dropout(model: nn.Module) -> nn.Module:
    """Put torch's nn.Dropout back wherever the model holds recplugin's."""
    for name, child in model.named_children():
        if isinstance(child, Dropout):
            setattr(model, name, nn.Dropout(child.p))
        else:
            torch_dropout(child)
    return model


def side_by_side(train, test, num_items: int, args: argparse.Namespace, seed: int) -> list[dict]:
    """Two models from one seed, stepping in turn; seconds per step and test metrics of each."""
    config = config_for("every position, causal, full softmax", args, seed)
    packed = packed_split(train, config)
    runs = []
    for side in SIDES:
        torch.manual_seed(seed)
        model = TwoTower(config.model, torch.zeros(num_items, 1), 1, len(config.actions))
        if side == "torch dropout":
            torch_dropout(model)
        extra = loss_inputs(train, config, num_items, torch.device("cpu"))
        runs.append({"side": side, "model": model.train(), "extra": extra, "optimizer": make_optimizer(model, extra, config, args.steps),
                     "generator": np.random.default_rng(seed), "times": []})
    batches = epoch_batches(train, packed, config.training, np.random.default_rng(seed))
    context = dist_.setup("cpu")
    for step in range(args.steps):
        index = batches[step % len(batches)]
        for run in runs:
            patch = mock.patch.object(cut_attention, "fast_dropout", F.dropout) if run["side"] == "torch dropout" else nullcontext()
            with patch:
                began = time.perf_counter()
                loss = batch_loss(run["model"], train, index, run["extra"], torch.zeros(0, 1), config, context, run["generator"],
                                  num_items, packed)
                optimizer, scheduler = run["optimizer"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                run["times"].append(time.perf_counter() - began)
        if (step + 1) % 25 == 0:
            print(f"seed {seed} step {step + 1}/{args.steps}: " + ", ".join(f"{r['side']} {np.median(r['times']):.3f} s/step" for r in runs), flush=True)
    rows = []
    for run in runs:
        metrics = ev.metrics_from_ranks(model_ranks(run["model"], test, torch.zeros(0, 1), torch.device("cpu")))
        rows.append({"side": run["side"], "seed": seed, "steps": args.steps, "s_per_step": round(float(np.median(run["times"][1:])), 4),
                     **{k: metrics[k] for k in ("NDCG@10", "Recall@10")}})
    return rows


def markdown(report: dict) -> str:
    """The op table and the training table with the run's record."""
    record = report["provenance"]
    lines = ["# CPU dropout: torch's Bernoulli mask vs the fast 16-bit mask", "", f"`{record['command']}`", "",
             f"commit {record['git_commit']}, {record['machine']}, {record['date']}, wall {record['wall_s']} s, "
             f"{report['arguments']['threads']} threads", "", "| op | implementation | ms per call (median) |", "|---|---|---|"]
    lines += [f"| {row['op']} | {row['implementation']} | {row['ms']:.2f} |" for row in report["ops"]]
    lines += ["", report["data"], "", "| side | seeds | s/step (median) | NDCG@10 | Recall@10 |", "|---|---|---|---|---|"]
    for side in SIDES:
        mine = [row for row in report["rows"] if row["side"] == side]
        pm = lambda key, digits: f"{np.mean([r[key] for r in mine]):.{digits}f} ± {np.std([r[key] for r in mine]):.{digits}f}"  # noqa: E731
        lines.append(f"| {side} | {len(mine)} | {pm('s_per_step', 3)} | {pm('NDCG@10', 4)} | {pm('Recall@10', 4)} |")
    ratios = [torch_row["s_per_step"] / fast_row["s_per_step"]
              for torch_row, fast_row in zip(report["rows"][::2], report["rows"][1::2])]
    lines += ["", f"Step time ratio (torch / fast), per seed: {', '.join(f'{r:.2f}x' for r in ratios)}. Same seed, same "
              "batches, same initial weights on both sides; the masks differ, so the metrics differ by the run-to-run spread."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = sample_arguments(__doc__.splitlines()[0], 2048)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    began, commit = time.monotonic(), git_commit()
    torch.set_num_threads(args.threads)
    ops = op_timings(22, args.length, 128, 2, 0.2, args.repeats)
    print(json.dumps(ops), flush=True)
    sequences, num_items = read_sequences(Path(args.path), args.users, 0)
    train = labelled(sequences, [range(0, len(s) - 2) for s in sequences], args.length)
    test = labelled(sequences, [range(len(s) - 1, len(s)) for s in sequences], args.length)
    rows = [row for seed in args.seeds for row in side_by_side(train, test, num_items, args, seed)]
    report = {"provenance": provenance(" ".join(["python", *sys.argv]), began, commit), "arguments": vars(args),
              "config": json.loads(json.dumps(config_for("every position, causal, full softmax", args, 0), default=lambda o: o.__dict__)),
              "data": f"ML-1M, {len(sequences)} sampled users, {len(train)} training labels, length {args.length}, "
                      f"{args.steps} steps of about {args.batch} labels per side and seed",
              "ops": ops, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training_dropout.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "training_dropout.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
