"""GPU throughput of the item tower and of training with a 0.5B-parameter Qwen2-shaped item LLM (random weights).

    python benchmarks/gpu/run.py                  # on a CUDA machine
    python benchmarks/gpu/run.py --smoke          # tiny sizes on CPU: checks the script, measures nothing useful

Measured side by side in one run: an 8192^3 bf16 matmul (the machine's ceiling), the bare backbone forward at 64
tokens (the reference path), our item-tower encode path (left-padded text + the learnable item token = 64 positions,
bf16, [ITEM]-token state), the same with tokenisation, and training steps (user tower + item LLM fine-tuned fully or
with LoRA, real `batch_loss`). FLOPs count 2*N*T per token forward (N = non-embedding parameters) plus attention;
training counts 3x the forward. Writes benchmarks/results/gpu_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recplugin.config import RecConfig, with_overrides
from recplugin.models.inputs import ScenarioEvents, build_batch
from recplugin.models.text_model import ItemTextModel
from recplugin.models.two_tower import TwoTower
from recplugin.training import distributed as dist_
from recplugin.training.dataset import LabelledSplit
from recplugin.training.objective import batch_loss, loss_inputs
from recplugin.training.train import make_optimizer

RESULTS = Path(__file__).resolve().parents[1] / "results"
QWEN2_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True)
SMOKE = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, tie_word_embeddings=True)
H200_PEAK_BF16 = 989.4e12  # dense bf16, vendor datasheet (same as H100 SXM)
TOKENS = 64


def make_llm_folder(folder: Path, shape: dict) -> int:
    """A random-weight Qwen2 model and a word-level tokenizer saved as a local model folder; returns non-embedding params."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(shape["vocab_size"] - 2)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    model = transformers.Qwen2Model(transformers.Qwen2Config(**shape)).to(torch.bfloat16)
    model.save_pretrained(folder)
    return sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)


def forward_flops(params: int, shape: dict, tokens: int) -> float:
    """Forward FLOPs of one sequence: 2*N per token plus QK^T and AV (4*T^2*d per layer)."""
    return 2 * params * tokens + 4 * shape["num_hidden_layers"] * tokens * tokens * shape["hidden_size"]


def timed(step, repeats: int, device: torch.device) -> float:
    """Mean seconds per call after warm-up calls."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - begin) / repeats


def matmul_ceiling(device: torch.device, size: int) -> float:
    """bf16 matmul FLOP/s on random data (the machine's practical ceiling)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    return 2 * size ** 3 / timed(lambda: a @ b, 10, device)


def random_texts(count: int, words: int, vocab: int, rng: np.random.Generator) -> list[str]:
    """Texts of `words` known words each, so each tokenises to exactly `words` tokens."""
    return [" ".join(f"w{w}" for w in rng.integers(0, vocab - 2, words)) for _ in range(count)]


def encode_rows(folder: Path, shape: dict, params: int, batch: int, repeats: int, device: torch.device,
                rng: np.random.Generator) -> list[dict]:
    """Items/s of the bare forward, our encode path, and our encode path with tokenisation."""
    from transformers import PreTrainedTokenizerFast

    text_model = ItemTextModel(str(folder), TOKENS - 1, dtype=torch.bfloat16).to(device).eval()
    text_model.tokenizer = PreTrainedTokenizerFast.from_pretrained(folder, padding_side="left")  # AutoTokenizer would pick
    # Qwen2's BPE class for this folder (config model_type), which knows nothing of the word-level vocabulary
    texts = random_texts(batch, TOKENS - 1, shape["vocab_size"], rng)
    ids, mask = (torch.as_tensor(a, device=device) for a in text_model.tokenize(texts))
    assert ids.shape == (batch, TOKENS - 1), f"texts must tokenise to {TOKENS - 1} tokens, got {tuple(ids.shape)}"
    bare_ids = torch.as_tensor(rng.integers(2, shape["vocab_size"], (batch, TOKENS)), device=device)
    flops = forward_flops(params, shape, TOKENS)
    rows = []
    with torch.no_grad():
        for name, step in [("bare Qwen2 forward, 64 tokens (reference path)", lambda: text_model.backbone(input_ids=bare_ids)),
                           ("item tower encode: 63 text tokens + item token", lambda: text_model(ids, mask)),
                           ("item tower encode incl. tokenisation",
                            lambda: text_model(*(torch.as_tensor(a, device=device) for a in text_model.tokenize(texts))))]:
            seconds = timed(step, repeats, device)
            rows.append({"path": name, "batch": batch, "items_per_s": batch / seconds, "tflops": batch * flops / seconds / 1e12})
    return rows


def synthetic_split(num_users: int, history: int, num_items: int, rng: np.random.Generator) -> LabelledSplit:
    """Users with `history` feed events each and a next-item target."""
    users = [[ScenarioEvents(list(rng.integers(0, num_items, history)), [0] * history, list(range(history)))]
             for _ in range(num_users)]
    inputs = build_batch(users, [0] * num_users, [-1] * num_users, history, {i: i for i in range(num_items)})
    return LabelledSplit(inputs, rng.integers(0, num_items, num_users), np.arange(num_users), [np.zeros(0, np.int64)] * num_users)


def training_rows(folder: Path, shape: dict, params: int, args: argparse.Namespace, device: torch.device,
                  rng: np.random.Generator) -> list[dict]:
    """Users/s and item encodings/s of full training steps with the item LLM fine-tuned (full, LoRA) or frozen-cached."""
    rows = []
    base = RecConfig(scenarios=["feed"])
    for mode in ("full", "lora", "frozen (cached vectors)"):
        config = with_overrides(base, model={"item_finetune": "frozen" if mode.startswith("frozen") else mode,
                                             "max_text_tokens": TOKENS - 1, "max_sequence_length": args.history},
                                training={"batch_size": args.train_users, "random_negatives": args.negatives})
        split = synthetic_split(args.train_users * 4, args.history, args.catalogue, rng)
        torch.manual_seed(0)
        if mode.startswith("frozen"):
            model = TwoTower(config.model, torch.randn(args.catalogue, shape["hidden_size"]), 1, 4)
        else:
            text_model = ItemTextModel(str(folder), TOKENS - 1, mode, 16)
            ids = rng.integers(2, shape["vocab_size"], (args.catalogue, TOKENS - 1))
            model = TwoTower(config.model, None, 1, 4, text_model, (ids, np.ones_like(ids)))
        model = model.to(device)
        extra = loss_inputs(split, config, args.catalogue, device)
        optimizer, scheduler = make_optimizer(model, extra, config, 1000)
        context = dist_.Context(0, 1, device)
        generator = np.random.default_rng(0)
        encoded = []

        def step() -> None:
            index = generator.choice(len(split), args.train_users, replace=False)
            unique = np.unique(np.concatenate([split.inputs.item_rows[index].ravel(), extra.windows[index].ravel()]))
            encoded.append(len(unique) + args.negatives)
            loss = batch_loss(model, split, index, extra, torch.zeros(0, 1, device=device), config, context, generator,
                              args.catalogue)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

        model.train()
        seconds = timed(step, args.repeats, device)
        items = float(np.mean(encoded[3:]))
        factor = 0 if mode.startswith("frozen") else 3  # forward + backward through the LLM
        rows.append({"mode": mode, "users_per_step": args.train_users, "history": args.history,
                     "item_encodings_per_step": items, "seconds_per_step": seconds, "users_per_s": args.train_users / seconds,
                     "item_encodings_per_s": items / seconds if factor else 0.0,
                     "tflops": factor * items * forward_flops(params, shape, TOKENS) / seconds / 1e12,
                     "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else 0.0})
        model = optimizer = extra = None  # free the GPU before the next mode
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return rows


def markdown(report: dict) -> str:
    """The results as tables."""
    meta = report["meta"]
    lines = [f"# GPU throughput: item LLM {meta['shape_name']} ({meta['params_non_embedding'] / 1e6:.0f}M non-embedding params, "
             "random weights)\n", f"`{meta['command']}` on {meta['device']}, {meta['date']}.\n",
             f"bf16 matmul ceiling measured in the same run: {meta['matmul_tflops']:.0f} TFLOP/s "
             f"(datasheet dense bf16 peak {H200_PEAK_BF16 / 1e12:.0f}). MFU = achieved / datasheet peak.\n",
             "| encode path | batch | items/s | TFLOP/s | MFU | vs bare forward |", "|---|---|---|---|---|---|"]
    bare = report["encode"][0]["items_per_s"] if report["encode"] else 1.0
    lines += [f"| {r['path']} | {r['batch']} | {r['items_per_s']:,.0f} | {r['tflops']:.0f} | "
              f"{r['tflops'] * 1e12 / H200_PEAK_BF16:.1%} | {r['items_per_s'] / bare:.2f}x |" for r in report["encode"]]
    lines += ["", "Reference (issue 3): ~5,700 items/s (~263 TFLOP/s) for the bare forward on one H100; target >= 80% "
                  "(4,560 items/s) for the encode path.\n",
              "| training (item LLM) | users/step | history | item encodings/step | s/step | users/s | item encodings/s | TFLOP/s | MFU | peak GiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['users_per_step']} | {r['history']} | {r['item_encodings_per_step']:.0f} | "
              f"{r['seconds_per_step']:.3f} | {r['users_per_s']:,.0f} | {r['item_encodings_per_s']:,.0f} | {r['tflops']:.0f} | "
              f"{r['tflops'] * 1e12 / H200_PEAK_BF16:.1%} | {r['peak_memory_gib']:.1f} |" for r in report["training"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU (a check of the script)")
    parser.add_argument("--encode-batch", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--train-users", type=int, default=32)
    parser.add_argument("--history", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--catalogue", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sections", nargs="+", default=["encode", "training"], choices=["encode", "training"])
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    shape = SMOKE if args.smoke else QWEN2_05B
    if args.smoke:
        args.encode_batch, args.train_users, args.history, args.catalogue, args.repeats = [16], 4, 8, 200, 2
    torch.backends.cuda.matmul.allow_tf32 = True
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        params = make_llm_folder(Path(folder), shape)
        report = {"meta": {"command": "python benchmarks/gpu/run.py" + (" --smoke" if args.smoke else ""),
                           "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
                           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "shape_name": "smoke" if args.smoke else "Qwen2-0.5B",
                           "params_non_embedding": params, "tokens": TOKENS,
                           "matmul_tflops": matmul_ceiling(device, 512 if args.smoke else 8192) / 1e12},
                  "encode": [row for batch in args.encode_batch for row in encode_rows(Path(folder), shape, params, batch,
                                                                                        args.repeats, device, rng)]
                  if "encode" in args.sections else [],
                  "training": training_rows(Path(folder), shape, params, args, device, rng) if "training" in args.sections else []}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_throughput_smoke" if args.smoke else "gpu_throughput"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
