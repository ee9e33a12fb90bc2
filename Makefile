# Two commands on a fresh machine:  make run  (chat on http://127.0.0.1:7860)  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install index run test test-fast lint bench browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a plain 'torch' would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

index: install
	$(PY) ingest.py

run: index
	$(PY) app.py

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium)

test: install browser
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not browser and not server"

lint: install
	$(PY) -m ruff check assistant tests benchmarks ingest.py app.py
	$(PY) -m ruff format --check assistant tests benchmarks ingest.py app.py

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf .index .data test-artifacts .pytest_cache
