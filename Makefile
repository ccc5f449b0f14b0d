PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU torch wheel lives here on our machines; torch is pinned so no install ever pulls a CUDA build.
TORCH_WHEELS ?= /opt/wheels
TORCH_SPEC ?= torch==2.13.0
UV := $(BIN)/uv
UV_INSTALL := $(UV) pip install --python $(BIN)/python $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS))

.PHONY: install demo test test-unit bench-demo bench-quality bench-serving bench-generator report clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI) every process would compile its imports
# again, ~4 s of each service worker's start.
$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV_INSTALL) --compile-bytecode "$(TORCH_SPEC)"
	$(UV_INSTALL) --compile-bytecode "$(TORCH_SPEC)" -e ".[dev,llm,spark]"
	touch $@

install: $(VENV)/.installed

demo: install
	PYTHONWARNINGS=ignore $(BIN)/recplugin demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

# Benchmarks write JSON into benchmarks/results/; `make report` turns them into benchmarks/REPORT.md and README's table.
bench-demo: install
	$(BIN)/python benchmarks/demo/run.py

# A quality suite (benchmarks/quality/suites/SUITE.yaml: defaults, decisions, amazon-food-kitchen, ml-1m); hours on 2 cores.
SUITE ?= defaults
bench-quality: install
	$(BIN)/python benchmarks/quality/suite.py benchmarks/quality/suites/$(SUITE).yaml

# Both stacks after `make demo`: c=1, c=32, c=1 beside a no-op BentoML service, py-spy profile (from PyPI, bench only).
bench-serving: install
	$(BIN)/pip install -q py-spy
	$(BIN)/python benchmarks/serving/run.py --workdir .recplugin/demo --items 0 100000 --label embedded --profile
	$(BIN)/python benchmarks/serving/production.py
	$(BIN)/python benchmarks/serving/run.py --workdir .recplugin/production --milvus standalone --items 0 100000 \
		--label production_server --profile

bench-generator: install
	$(BIN)/python benchmarks/generator/run.py

report: install
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf .recplugin
