# The two commands: `make demo` and `make test`. Both set up everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# CPU build of torch available on this machine's disk; an unpinned torch pulls a CUDA build of several GB.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: test lint docs demo venv mosquitto clean proto

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[train,demo,dev]'
	touch $(STAMP)

venv: $(STAMP)

mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && ! test -x /usr/sbin/mosquitto; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto from Debian"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "mosquitto not found and apt-get unavailable: broker tests will skip (fail under CI)"; fi; \
	fi

# Layering (import-linter contracts in pyproject.toml), lint and the docs site build run before the tests, in CI too.
lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: lint mosquitto
	$(PY) -m pytest -q

# The documentation site, served locally with live reload.
docs: venv
	$(VENV)/bin/mkdocs serve

demo: venv
	$(VENV)/bin/linewatch demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Sparkplug B classes from the specification's schema (protoc from grpcio-tools, the dev extra); the result is committed.
proto: venv
	cd edge_runtime/sparkplug && ../../$(PY) -m grpc_tools.protoc -I. --python_out=. sparkplug_b.proto
