PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU torch wheel lives here on our machines; torch is pinned so no install ever pulls a CUDA build.
TORCH_WHEELS ?= /opt/wheels
TORCH_SPEC ?= torch==2.13.0
UV := $(BIN)/uv
UV_INSTALL := $(UV) pip install --python $(BIN)/python $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS))

.PHONY: install demo test test-unit bench bench-serving bench-quality bench-quality-ml1m bench-quality-ml1m-gsasrec bench-quality-ml1m-gsasrec-gpu bench-quality-ml1m-gsasrec-sampled bench-quality-ml1m-ids-init bench-quality-amazon bench-quality-amazon-cpu bench-quality-amazon-seeds bench-quality-amazon-seeds-ids bench-quality-amazon-budget bench-quality-amazon-budget-ids bench-quality-amazon-ablations bench-quality-amazon-ablations-k1 bench-quality-amazon-ablations-k1-towers bench-quality-defaults bench-training-dropout bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV_INSTALL) "$(TORCH_SPEC)"
	$(UV_INSTALL) "$(TORCH_SPEC)" -e ".[dev,llm,spark]"
	touch $@

install: $(VENV)/.installed

demo: install
	PYTHONWARNINGS=ignore $(BIN)/recplugin demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python benchmarks/generator/run.py

bench-serving: install
	$(BIN)/python benchmarks/serving/run.py --workdir .recplugin/demo --items 100000 1000000 --label embedded

bench-quality: install
	$(BIN)/python benchmarks/quality/run.py --dataset generated

# Real data (../shared/data) and the configs of the committed results; best on a GPU box (see benchmarks/README.md).
bench-quality-ml1m: install
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m.yaml --variants unified --label ml-1m-gpu

bench-quality-ml1m-gsasrec: install
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants unified --set training.softmax=full --label ml-1m-gsasrec-ids-full
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full --label ml-1m-gsasrec-text-ids-full
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full --seeds 1 --label ml-1m-gsasrec-text-ids-full-seed1
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full --seeds 2 --label ml-1m-gsasrec-text-ids-full-seed2
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full --seeds 0 1 2 --label ml-1m-gsasrec-text-ids-full-fast-dropout
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full training.min_context=0 model.interests_per_scenario=1 --seeds 2 0 1 --label ml-1m-gsasrec-text-ids-k1-context0
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "K=1, min_context 0" --set training.softmax=full --seeds 0 1 2 --label ml-1m-gsasrec-ids-k1-context0
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants K=1 --set training.softmax=full --seeds 0 1 2 --label ml-1m-gsasrec-ids-k1
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full model.interests_per_scenario=1 --seeds 0 1 2 --label ml-1m-gsasrec-text-ids-k1

# The same protocol on a GPU box, to convergence (20 epochs at most, early stopping on validation), K=1: ids only and
# text + ids; carry the workdir's snapshot (benchmarks/README.md), one process per variant.
bench-quality-ml1m-gsasrec-gpu:
	python3 benchmarks/quality/run.py --dataset ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants K=1 --set training.softmax=full --seeds 0 1 2 --label ml-1m-gsasrec-ids-k1-gpu & ids=$$!;\
	python3 benchmarks/quality/run.py --dataset ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --set training.softmax=full model.interests_per_scenario=1 --seeds 0 1 2 --label ml-1m-gsasrec-text-ids-k1-gpu; text=$$?;\
	wait $$ids && test $$text = 0

# Ids only, side by side at 8 minutes each: the id vectors' start, 0.02 (the default) vs 1.0 (before); the learning rate; K=1 and min_context 0 apart and together.
bench-quality-ml1m-ids-init: install
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants unified "ids, init std 1" --set training.softmax=full --minutes 8 --label ml-1m-gsasrec-ids-init-8min
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants unified "learning rate 0.002" --set training.softmax=full --minutes 8 --label ml-1m-gsasrec-lr-8min
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants unified K=1 "min_context 0" "K=1, min_context 0" --set training.softmax=full --minutes 8 --label ml-1m-gsasrec-ids-k1-context0-8min

# The same with the sampled softmax (2,048 in-batch + 4,096 random candidates, logQ): the earlier committed ML-1M rows.
bench-training-dropout: install
	$(BIN)/python benchmarks/training/dropout.py --users 800 --steps 100 --seeds 0 1 2

bench-quality-ml1m-gsasrec-sampled: install
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants unified --label ml-1m-gsasrec-ids
	$(BIN)/python benchmarks/quality/run.py --dataset ml-1m --path ../shared/data/ml-1m --config benchmarks/quality/configs/ml-1m-gsasrec.yaml --workdir .recplugin/quality-ml-1m-gsasrec --variants "text + ids" --label ml-1m-gsasrec-text-ids

bench-quality-amazon: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen.yaml --variants unified isolated --sampled 999

bench-quality-amazon-cpu: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --variants unified isolated "unified, equal total budget" "global negatives" "window 10" --sampled 999 --seeds 0 --label amazon-food-kitchen-cpu

# Target 2 over 3 seeds: isolated models (4 minutes each) vs unified ones at their total budget, natural vs scenario-balanced sampling.
bench-quality-amazon-seeds: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --variants isolated "unified, equal total budget" "balanced sampling, equal total budget" --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-seeds

# Target 2 with item ids next to the text (the ablations' strongest item tower), 3 seeds, 4 minutes per isolated model.
bench-quality-amazon-seeds-ids: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set model.use_item_ids=true --variants isolated "balanced sampling, equal total budget" --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-seeds-text-ids

# Target 2 at twice the budget, seed 0: isolated models with 8 minutes each vs a balanced unified model with their 16.
bench-quality-amazon-budget: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --variants isolated "balanced sampling, equal total budget" --minutes 8 --sampled 999 --seeds 0 --label amazon-food-kitchen-budget-16

# Target 2 with text + ids at twice the budget, K=1 (the default since the defaults table), seeds 0-2: isolated models
# with 8 minutes each vs a balanced unified model with their 16. About 1 h 45 min on 2 cores.
bench-quality-amazon-budget-ids: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set model.use_item_ids=true model.interests_per_scenario=1 --variants isolated "balanced sampling, equal total budget" --minutes 8 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-budget-16-text-ids-k1

# Target 3, ablations on Amazon (unified models, scenario-balanced sampling, 4 minutes each, 3 seeds): K = 1 / 2 / 3,
# per-scenario vs shared queries, text / ids / both, window 1 vs 10, in-domain vs whole-catalogue negatives, scenario
# blocks vs interleaved (both on the bidirectional tower, one forward per label). About 2.5 hours on 2 cores; a cut-off
# run continues with `--resume benchmarks/results/quality_amazon-food-kitchen-ablations.json` (as the committed one did).
bench-quality-amazon-ablations: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set training.sampling=balanced --variants unified K=1 K=3 "no scenario queries" "no text" "text + ids" "window 10" "global negatives" bidirectional blocks --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-ablations

# Target 3 again with the current defaults (K=1, the packed every-position training with min_context 0.5, ids starting
# at std 0.02): K = 1 / 2 / 3, shared queries, text + ids, window 10, whole-catalogue negatives; balanced sampling,
# 4 minutes each, 3 seeds. About 2 hours on 2 cores.
bench-quality-amazon-ablations-k1: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set training.sampling=balanced model.interests_per_scenario=1 --variants unified K=2 K=3 "no scenario queries" "text + ids" "window 10" "global negatives" --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-ablations-k1

# The same K=1 base beside what that run left out: ids only and the bidirectional towers, scenario blocks vs interleaved; then (--resume, the same file) text + ids, so text / ids / both meet one base.
bench-quality-amazon-ablations-k1-towers: install
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set training.sampling=balanced model.interests_per_scenario=1 --variants unified "no text" bidirectional blocks --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-ablations-k1-towers
	$(BIN)/python benchmarks/quality/run.py --dataset amazon-food-kitchen --path ../shared/data/amazon-food-kitchen --config benchmarks/quality/configs/amazon-food-kitchen-cpu.yaml --workdir .recplugin/quality-amazon-cpu --set training.sampling=balanced model.interests_per_scenario=1 --variants unified "no text" bidirectional blocks "text + ids" --minutes 4 --sampled 999 --seeds 0 1 2 --label amazon-food-kitchen-ablations-k1-towers --resume benchmarks/results/quality_amazon-food-kitchen-ablations-k1-towers.json

# The built-in defaults, untuned, on every dataset here (generated; ML-1M and Amazon when ../shared/data has them), 20 minutes of training each at most (the target: within 30); K=2 vs K=1 side by side (and a second Amazon seed); on Amazon, patience 3 (the default) vs 6 on the noisy 960-user validation; min_context 0.5 (the default) vs 0 everywhere, and on Amazon again with patience 6 on both sides; window 1 vs 10 on the generated data (seeds 0 1, then 2 in its own file: the committed first run named 0 1 2 and was stopped after seed 1); text + ids and balanced sampling on the generated data; the defaults on ML-1M, seed 1; the defaults on Amazon and ML-1M, seed 2 (the generated data has the defaults in 3 seeds in the window lines); text + ids on Amazon with seed 2, beside the previous line's Amazon row; then, side by side in one run each, the defaults vs text + ids on Amazon with seeds 0 1, on ML-1M with seed 0 and on the generated data with seeds 1 2; text + ids on ML-1M with seed 1, beside the ML-1M seed-1 line's defaults.
bench-quality-defaults: install
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen ml-1m generated --minutes 20 --seeds 0 --variants K=2 K=1
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 1 --variants K=2 K=1 --label amazon-seed1
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 0 --variants K=1 "patience 6" --label amazon-patience
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated amazon-food-kitchen ml-1m --minutes 20 --seeds 0 --variants unified "min_context 0" --label min-context
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 0 --variants "patience 6" "min_context 0, patience 6" --label amazon-min-context-patience6
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 0 1 --variants unified "window 10" --label generated-window10
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 2 --variants unified "window 10" --label generated-window10-seed2
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 0 --variants unified "text + ids" "balanced sampling" --label generated-ids-balanced
	$(BIN)/python benchmarks/quality/defaults.py --datasets ml-1m --minutes 20 --seeds 1 --variants unified --label ml-1m-seed1
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen ml-1m --minutes 20 --seeds 2 --variants unified --label seed2
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 2 --variants "text + ids" --label amazon-text-ids-seed2
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 0 1 --variants unified "text + ids" --label amazon-text-ids-seeds01
	$(BIN)/python benchmarks/quality/defaults.py --datasets ml-1m --minutes 20 --seeds 0 --variants unified "text + ids" --label ml-1m-text-ids
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 1 2 --variants unified "text + ids" --label generated-text-ids-seeds12
	$(BIN)/python benchmarks/quality/defaults.py --datasets ml-1m --minutes 20 --seeds 1 --variants "text + ids" --label ml-1m-text-ids-seed1
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 0 --variants unified "window 10" "window 10, K=3" --label generated-request-windows
	$(BIN)/python benchmarks/quality/defaults.py --datasets amazon-food-kitchen --minutes 20 --seeds 0 --variants unified "window 10" "window 10, K=3" --label amazon-request-windows
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 0 --variants unified "window 10, K=3" "window 10, K=3, row weights" --label generated-window-row-weights
	$(BIN)/python benchmarks/quality/defaults.py --datasets generated --minutes 20 --seeds 1 2 --variants unified "window 10, K=3, row weights" --label generated-window-row-weights-seeds12

bench-gpu: install
	$(BIN)/python benchmarks/gpu/run.py

clean:
	rm -rf .recplugin
