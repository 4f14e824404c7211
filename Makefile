# SmartSwitch: the two set-up commands are `make run` and `make test`.
# Both install every system and Python dependency first, so they work on a
# fresh Debian 12 machine as root.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
CONFIG   ?= configs/default.yaml

APT_PACKAGES := build-essential pkg-config python3 python3-dev python3-venv \
	liblmdb-dev lmdb-utils zlib1g-dev liburing-dev libisal-dev libssl-dev openssl \
	memcached libmemcached-tools libmemcached-dev nutcracker fio \
	dpdk dpdk-dev libpcap-dev iproute2 ethtool tcpdump iputils-ping \
	chromium netcat-openbsd curl awscli nginx-light varnish wrk

.PHONY: deps system-deps python-deps build run test bench bench-proxy bench-device bench-device-spdk bench-switch bench-objects clean

deps: system-deps python-deps

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		fi; \
	else \
		echo "system-deps: not root or no apt-get; install: $(APT_PACKAGES)"; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

python-deps: $(PY)
	$(PY) -m pip install -q -e '.[test]'

# Rebuild the C data plane in place after editing dataplane/src.
build: $(PY)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .

run: deps
	$(VENV)/bin/smartswitch run --config $(CONFIG)

test: deps
	$(PY) -m pytest -q tests

bench: deps
	$(PY) bench/run.py

# Proxy mode: SmartSwitch vs twemproxy vs direct memcached (bench/README.md).
bench-proxy: deps
	$(PY) bench/proxy.py

# Device hits through the store (direct_io) vs fio on the same file (bench/README.md).
bench-device: deps
	$(PY) bench/device.py

# The same on an SPDK lvol (NVMe/TCP) vs spdk_nvme_perf on its namespace; needs
# SPDK_DIR=/path/to/spdk-build (bench/README.md).
bench-device-spdk: deps
	$(PY) bench/device.py --spdk

# Switch mode: the DPDK fast path vs dpdk-testpmd on net_pcap (root; bench/README.md).
bench-switch: deps
	$(PY) bench/switch.py

# Object GETs: a SmartSwitch cached bucket (and a local one) vs Varnish and nginx
# proxy_cache in front of an nginx origin, hits and misses, under wrk (bench/README.md).
bench-objects: deps
	$(PY) bench/objects.py

clean:
	rm -rf build dist *.egg-info dataplane/_fastpath*.so dataplane/_fastpath.c
