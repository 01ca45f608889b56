# corral: user entry points. Every target works on a fresh Debian 12 machine as root and is
# idempotent. `make demo` and `make test` install what they need first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages corral needs at run time or in its tests (installed only when missing).
APT_PACKAGES := python3-venv iproute2 procps systemd resource-agents monitoring-plugins-basic \
                haproxy keepalived bind9-dnsutils curl nftables stress-ng

.PHONY: install test check demo demo-down bench clean system-packages

install: $(STAMP)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "corral: missing Debian packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	  echo "corral: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | system-packages
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "corral needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: install
	$(PY) -m pytest -q

check: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src tests bench

demo: install
	$(VENV)/bin/corral demo examples/openstack.yaml

demo-down: install
	$(VENV)/bin/corral demo-down

bench: install
	$(PY) bench/store.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
