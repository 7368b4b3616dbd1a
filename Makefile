# The commands the README names. `make demo` and `make test` set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser demo test bench tutorials docs lint clean

install: $(STAMP)

# The exact torch pin lives here alone (pyproject.toml declares a range): the CPU build, installed
# first and held by a constraints file, since a plain `torch` pulls several GB of CUDA packages.
# TSInterpret with --no-deps: its own pins clash with aeon, SHAP and scikit-learn.
TORCH_PIN := torch==2.13.0
CONSTRAINTS := $(VENV)/constraints.txt

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	echo "$(TORCH_PIN)" > $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) torch
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[all]"
	$(BIN)/python -m pip install --quiet --no-deps TSInterpret==0.4.7
	touch $(STAMP)

demo: install
	$(BIN)/xai-suite demo

# Debian's Chromium for the browser tests (tests/conftest.py's `chromium` fixture), when it is missing
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends chromium; }; }

# one pytest-xdist worker per core; a test file runs whole on one worker (its module fixtures
# are built once, and the tests that count leftover processes see only their own)
test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile

bench: install
	$(BIN)/python benchmarks/perf_gradients.py
	$(BIN)/python benchmarks/perf_timeseries.py
	$(BIN)/python benchmarks/counterfactuals_ts.py
	$(BIN)/python benchmarks/perf_tabular.py
	$(BIN)/python benchmarks/concepts.py
	$(BIN)/python benchmarks/image_baselines.py
	$(BIN)/python benchmarks/perf_llm.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python -m pytest -m slow

# every tutorial with its full settings (the tests run them with XAI_SUITE_TUTORIAL_FAST=1)
tutorials: install
	mkdir -p tutorial_output
	@for t in tutorials/*.py; do \
		start=$$(date +%s); \
		XAI_SUITE_TUTORIAL_OUT=tutorial_output MPLBACKEND=Agg $(BIN)/python $$t > tutorial_output/$$(basename $$t .py).log 2>&1 \
			|| { echo "$$t failed: see tutorial_output/$$(basename $$t .py).log"; exit 1; }; \
		echo "$$t: $$(( $$(date +%s) - start )) s"; \
	done

# the documentation site, into site/, warnings as errors; every tutorial is executed for its page
docs: install
	mkdir -p tutorial_output
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true XAI_SUITE_DOCS_EXECUTE=true XAI_SUITE_TUTORIAL_FAST=1 \
		XAI_SUITE_TUTORIAL_OUT=$(CURDIR)/tutorial_output MPLBACKEND=Agg $(BIN)/mkdocs build --strict -d site

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo_output tutorial_output site .pytest_cache .ruff_cache
