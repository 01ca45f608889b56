# corral: user entry points. Every target works on a fresh Debian 12 machine as root and is
# idempotent. `make demo` and `make test` install what they need first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages corral needs at run time or in its tests (installed only when missing).
APT_PACKAGES := python3-venv iproute2 procps systemd resource-agents monitoring-plugins-basic \
                haproxy keepalived bind9-dnsutils curl nftables stress-ng

.PHONY: install test check demo demo-down bench clean system-packages rabbitmq-packages

install: $(STAMP)

# RabbitMQ for the real-server tests and the demo (Debian 12: 3.10.8 on Erlang 25). corral runs
# its own brokers in network namespaces; the package must leave no host service behind on a
# real Debian with systemd, where apt would start and enable it: the units are masked first
# (symlinks to /dev/null, what `systemctl mask` makes; they work without a running systemd) and
# the install runs under a temporary /usr/sbin/policy-rc.d that refuses every start (exit 101).
# The previous policy-rc.d (if any) is put back, even when the install fails.
RABBIT_PACKAGES := rabbitmq-server
RABBIT_UNITS    := rabbitmq-server.service epmd.service epmd.socket
POLICY_RC       := /usr/sbin/policy-rc.d

rabbitmq-packages:
	@if dpkg-query -W -f='$${Status}' $(RABBIT_PACKAGES) 2>/dev/null | grep -q "install ok installed"; then \
	  exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "corral: missing Debian package $(RABBIT_PACKAGES) (run as root)"; exit 1; fi; \
	for u in $(RABBIT_UNITS); do mkdir -p /etc/systemd/system; ln -sfn /dev/null /etc/systemd/system/$$u; done; \
	saved=$$(mktemp); had=0; \
	if [ -e $(POLICY_RC) ]; then cp -p $(POLICY_RC) $$saved; had=1; fi; \
	restore() { if [ $$had = 1 ]; then cp -p $$saved $(POLICY_RC); else rm -f $(POLICY_RC); fi; rm -f $$saved; }; \
	trap restore EXIT INT TERM; \
	printf '#!/bin/sh\n# corral: no service starts while rabbitmq-server installs\nexit 101\n' > $(POLICY_RC); \
	chmod 755 $(POLICY_RC); \
	echo "corral: installing $(RABBIT_PACKAGES) (units masked, no service started)"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  -o DPkg::Lock::Timeout=600 --no-install-recommends $(RABBIT_PACKAGES); \
	rc=$$?; systemctl daemon-reload >/dev/null 2>&1 || true; exit $$rc

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

test: install rabbitmq-packages
	$(PY) -m pytest -q

check: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src tests bench

demo: install rabbitmq-packages
	$(VENV)/bin/corral demo examples/openstack.yaml

demo-down: install
	$(VENV)/bin/corral demo-down

bench: install
	$(PY) bench/store.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
