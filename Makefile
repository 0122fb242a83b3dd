# One-command set-up: every target bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.chargen-installed
# torch is pinned here, not in pyproject.toml: an unpinned torch pulls the CUDA build.
TORCH := torch==2.13.0
CORPORA ?= $(abspath ../shared/corpora)

.PHONY: install demo test lint bench clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chargen demo

test: $(STAMP) browser
	CHARGEN_CORPORA=$(CORPORA) $(PY) -m pytest -q
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	CHARGEN_CORPORA=$(CORPORA) $(PY) benchmarks/training.py
	CHARGEN_CORPORA=$(CORPORA) $(PY) benchmarks/generation.py
	CHARGEN_CORPORA=$(CORPORA) $(PY) benchmarks/scale.py

# The playground's browser test needs Debian's chromium and its driver. Best effort: without
# root or apt-get, or when the install fails, that test skips and says why.
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			chromium-driver) >/dev/null 2>&1 \
		|| echo "could not install chromium: the playground browser test will be skipped" >&2; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
