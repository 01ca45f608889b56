# corral: user entry points. Every target works on a fresh Debian 12 machine as root and is
# idempotent. `make demo` and `make test` install what they need first, the servers of the
# stateful kinds included: the demo runs real MariaDB Galera and RabbitMQ in the lab (it falls
# back to HTTP stand-ins for them, and says so, only when they are not installed).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages corral needs at run time or in its tests (installed only when missing).
APT_PACKAGES := python3-venv iproute2 procps systemd resource-agents monitoring-plugins-basic \
                haproxy keepalived bind9-dnsutils curl nftables stress-ng \
                pacemaker-common

# Servers of the stateful kinds (Galera, RabbitMQ), which corral starts itself, one per node with
# its own datadir: mariabackup SST (the donor keeps serving; rsync SST would block it); RabbitMQ
# 3.10.8 on Erlang 25, whose erlang-base also ships epmd.service/epmd.socket (a host epmd on
# port 4369: masked too; corral runs one epmd per broker namespace). A Debian with
# systemd would start the packaged MariaDB on install and at every boot, so they are installed
# under a policy-rc.d that forbids starts (whatever policy was there is put back) and the units
# are masked (symlinks to /dev/null, which works with or without a running systemd).
SERVER_PACKAGES := mariadb-server galera-4 mariadb-backup rsync socat rabbitmq-server
SERVER_UNITS    := mariadb.service mysql.service mysqld.service \
                   rabbitmq-server.service epmd.service epmd.socket

.PHONY: install test check demo demo-down bench clean system-packages server-packages

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

server-packages: system-packages
	@for u in $(SERVER_UNITS); do \
	  [ "$$(readlink /etc/systemd/system/$$u 2>/dev/null)" = /dev/null ] || \
	    { [ "$$(id -u)" = 0 ] && mkdir -p /etc/systemd/system && ln -sfn /dev/null /etc/systemd/system/$$u; } || \
	    { echo "corral: cannot mask $$u (run as root)"; exit 1; }; \
	done
	@missing=""; for p in $(SERVER_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "corral: missing Debian packages:$$missing (run as root)"; exit 1; fi; \
	  echo "corral: installing$$missing (no service started: policy-rc.d 101, units masked)"; \
	  policy=/usr/sbin/policy-rc.d; saved=$$(mktemp); had=0; \
	  if [ -e $$policy ]; then cp -p $$policy $$saved && had=1; fi; \
	  trap "if [ $$had = 1 ]; then cp -p $$saved $$policy; else rm -f $$policy; fi; rm -f $$saved" EXIT; \
	  printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
	  for u in $(SERVER_UNITS); do ln -sfn /dev/null /etc/systemd/system/$$u; done; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi; \
	fi

$(STAMP): pyproject.toml | system-packages
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "corral needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: install server-packages
	$(PY) -m pytest -q

check: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src tests bench

demo: install
	@$(MAKE) --no-print-directory server-packages || \
	  echo "corral: the server packages could not be installed: the demo runs HTTP stand-ins for Galera and RabbitMQ"
	$(VENV)/bin/corral demo examples/openstack.yaml

demo-down: install
	$(VENV)/bin/corral demo-down

bench: install
	$(PY) bench/store.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
