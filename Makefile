# Every install pins the tested versions with constraints.txt (torch==2.13.0; its CPU wheel: README, Install).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/casting
PIP_FLAGS ?=  # e.g. --extra-index-url https://download.pytorch.org/whl/cpu where torch's CPU wheel is not served
SERVE ?= 127.0.0.1:8080
CAMERA_PORT ?= 8091
STAMP := $(VENV)/.installed

.PHONY: setup test test-runtime test-faults demo default-model clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt $(PIP_FLAGS) -e '.[train,dev,station]'
	touch $(STAMP)

setup: $(STAMP)

## The whole test suite, with the linter.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## The install an edge device uses: a fresh venv with only the runtime (pip install -c constraints.txt .) plus
## pytest and hypothesis -- no torch, no onnx -- running the runtime and benchmark tests.
RUNTIME_VENV ?= .venv-runtime
test-runtime:
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install -q -c constraints.txt . pytest hypothesis
	$(RUNTIME_VENV)/bin/python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'onnx') if u.find_spec(m)]; sys.exit(f'not a runtime-only install: {bad}' if bad else 0)"
	$(RUNTIME_VENV)/bin/python -m pytest tests/edge_runtime tests/benchmarks

## The fault suite alone (bad images, files, models, metadata, options, outputs, signals; property tests).
test-faults: setup
	$(BIN)/python -m pytest tests/edge_runtime/test_faults*.py tests/edge_runtime/test_properties.py

## The runtime on the bundled INT8 model: verdicts for the sample images shipped in the package, then for a
## short video made from them (annotated copy and a CSV in runs/demo/); each run ends with its summary.
demo: setup
	rm -rf runs/demo
	$(BIN)/edge-infer --source edge_runtime/samples
	$(BIN)/python -m edge_runtime.demo runs/demo/samples.avi
	$(BIN)/edge-infer --source runs/demo/samples.avi --save runs/demo/annotated.avi --output runs/demo/verdicts.csv

## Rebuild the committed default model (train/default_model) from the full casting dataset.
default-model: setup
	rm -rf runs/default
	$(BIN)/train-model --data $(DATA) --out runs/default --seed 1 --quiet
	mkdir -p train/default_model
	cp runs/default/best.pt runs/default/report.json runs/default/metrics.jsonl \
	   runs/default/curves.png runs/default/confusion.png train/default_model/

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) runs .pytest_cache .ruff_cache

.PHONY: models
## Rebuild the ONNX models shipped in edge_runtime/models (FP32, INT8, MODEL_CARD.md) from train/default_model/best.pt.
models: setup
	$(BIN)/python -m export.ship

.PHONY: station-demo
## The station: the bundled sample video looped as a network camera, inspected live with --log and --serve;
## prints the URL of the station page (http://127.0.0.1:8080/). Ctrl-C stops it.
station-demo: setup
	$(BIN)/python -m edge_runtime.station.demo --serve $(SERVE) --camera-port $(CAMERA_PORT) --log runs/station-demo/station.db
