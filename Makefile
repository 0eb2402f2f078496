# The two commands: `make demo` and `make test`. Both set up everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# CPU build of torch available on this machine's disk; an unpinned torch pulls a CUDA build of several GB.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-gateway lint docs demo venv system-packages clean proto

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[train,demo,dev]'
	touch $(STAMP)

venv: $(STAMP)

# A gateway's install: the package itself (not editable) and the test tools, no train extra, so no torch.
GATEWAY := .venv-gateway
$(GATEWAY)/.installed: pyproject.toml
	$(PYTHON) -m venv $(GATEWAY)
	$(GATEWAY)/bin/pip install --quiet --upgrade pip
	$(GATEWAY)/bin/pip install --quiet '.[test]'
	touch $@

# What the tests need from Debian: mosquitto (the broker), nats-server (a NATS cluster speaking MQTT, for the partitioned workers),
# chromium (the status page's browser test, driven by Playwright), systemd (systemd-analyze verifies the unit), util-linux
# (setpriv runs the runtime with file permissions binding). Installed only when missing.
DEBIAN_NEEDS := mosquitto:/usr/sbin/mosquitto nats-server:/usr/sbin/nats-server chromium:/usr/bin/chromium systemd:/usr/bin/systemd-analyze util-linux:/usr/bin/setpriv
system-packages:
	@missing=""; for need in $(DEBIAN_NEEDS); do test -x "$${need#*:}" || missing="$$missing $${need%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing from Debian:$$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing$$missing and apt-get unavailable: their tests will skip (fail under CI)"; fi; \
	fi

# Layering (import-linter contracts in pyproject.toml), lint and the docs site build run before the tests, in CI too.
lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --target=3.10- --violations --no-tips --quiet edge_runtime linewatch train export
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Two lanes: everything but the runtime's own tests in the development venv, then those in a gateway's install.
test: lint system-packages
	$(PY) -m pytest -q --ignore=tests/edge_runtime --ignore=tests/reliability
	$(MAKE) --no-print-directory test-gateway

# The runtime and reliability tests as a gateway runs them: the current code installed as a package, torch absent.
test-gateway: $(GATEWAY)/.installed system-packages
	$(GATEWAY)/bin/pip install --quiet --no-deps --force-reinstall .
	@$(GATEWAY)/bin/python -c "import importlib.util, sys; sys.exit('torch is installed in $(GATEWAY)' if importlib.util.find_spec('torch') else 0)"
	$(GATEWAY)/bin/pytest -q -p no:cacheprovider tests/edge_runtime tests/reliability

# The everyday lane: everything but the slow tests (package builds and installs, long runs).
test-fast: venv system-packages
	$(PY) -m pytest -q -m "not slow"

# The documentation site, served locally with live reload.
docs: venv
	$(VENV)/bin/mkdocs serve

demo: venv
	$(VENV)/bin/linewatch demo

clean:
	rm -rf $(VENV) $(GATEWAY) build *.egg-info .pytest_cache

# Sparkplug B classes from the specification's schema (protoc from grpcio-tools, the dev extra); the result is committed.
proto: venv
	cd edge_runtime/sparkplug && ../../$(PY) -m grpc_tools.protoc -I. --python_out=. sparkplug_b.proto
