# `make demo` and `make test` set everything up on a fresh clone (a .venv with pinned torch) and run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=... to another 3.11+)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev,onnx]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/okspose demo --out work/demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check okspose tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_pose.py
	$(PY) benchmarks/bench_oks_nms.py
	$(PY) benchmarks/bench_search.py

clean:
	rm -rf $(VENV) work runs .pytest_cache
