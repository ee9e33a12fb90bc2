# Two commands on a fresh machine:  make run  (chat on http://127.0.0.1:7860)  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install index run test test-fast lint quality bench browser servers screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a plain 'torch' would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

index: install
	$(PY) ingest.py

run: index
	$(PY) app.py

# axe-core, the accessibility checker the browser tests inject into the chat: fetched once, at install time.
AXE_VERSION := 4.14.1
AXE := .cache/axe-core-$(AXE_VERSION)/axe.min.js

browser: $(AXE)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium)

$(AXE):
	@command -v npm >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q npm)
	mkdir -p $(@D)
	cd $(@D) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
		&& tar -xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js \
		&& rm axe-core-$(AXE_VERSION).tgz

# Debian's nginx and PostgreSQL for the replica and database tests (nothing is started here: the tests start them).
servers:
	@command -v nginx >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q nginx-light)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q postgresql)

test: install browser servers
	$(PY) -m pytest

# The pure core without a model or a store: seconds.
test-fast: install
	$(PY) -m pytest tests/unit -q

lint: install
	$(PY) -m ruff check assistant tests benchmarks ingest.py app.py
	$(PY) -m ruff format --check assistant tests benchmarks ingest.py app.py
	$(PY) -m mypy

# The pictures in README and docs/screenshots/: answer, urgent and not covered, on a phone and a desktop.
screenshots: install browser
	$(PY) -m pytest tests/test_browser.py -k screenshots
	mkdir -p docs/screenshots
	cp test-artifacts/screenshots/*.png docs/screenshots/

# Answer quality on the patient sets (dev and dev-b tuned on, test never) and K-QA: writes docs/quality.md.
QUALITY_SETS := $(foreach name,dev dev-b dev-d dev-e dev-f dev-g test,--set tests/data/patient-$(name).yaml)
quality: index
	$(PY) -m assistant quality $(QUALITY_SETS) --out docs/quality.md

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf .index .data test-artifacts .pytest_cache
