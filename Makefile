# PIC workflows. `make start` runs the cell on ./data; `make test` runs every test tier this
# machine can run. Both work on a fresh Debian machine with the Rust toolchain.

CARGO  ?= cargo
STATE  ?= $(CURDIR)/data
CONFIG ?= $(CURDIR)/examples/cell.json
PIC     = $(CURDIR)/target/release/pic
VENV    = $(CURDIR)/target/bench-venv

.PHONY: start build test deps lint unit schema openapi bench clean

# The daemons whose own checkers validate what we render (tier 2), and the tools the tests use.
DEBIAN_TEST_PACKAGES = openssl caddy unbound dnsmasq-base chrony postfix dovecot-imapd dovecot-lmtpd \
	radicale python3-bcrypt apache2 apache2-utils php-cli nftables wireguard-tools util-linux \
	wireguard-go iproute2 iputils-ping curl procps

LISTEN ?= 127.0.0.1:3000
# `kernel` on a machine that should carry the VPN itself; off by default so that `make start`
# never creates a network interface on a development machine.
WIREGUARD ?= off

## Build the example cell into ./data, switch to it and serve the API on $(LISTEN).
start: build
	@# An existing desired config is the user's: only a fresh state directory gets the example.
	$(PIC) --state $(STATE) init $$(test -f $(STATE)/cell_config.json || echo --config $(CONFIG))
	$(PIC) --state $(STATE) switch
	$(PIC) --state $(STATE) generations
	@echo "To log in, give the admin a password: $(PIC) --state $(STATE) user passwd alice"
	$(PIC) --state $(STATE) serve --listen $(LISTEN) --wireguard $(WIREGUARD)

build:
	$(CARGO) build --release --locked -p pic-runtime

## Every test tier this machine can run.
test: deps lint unit

## Installs what the tests need (idempotent; as root, else it prints the command to run).
deps:
	.ci/install-debian-packages $(DEBIAN_TEST_PACKAGES)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins --tests --locked

## Regenerate the committed JSON Schema of the cell config from the types.
schema:
	$(CARGO) run -q --locked -p pic-runtime -- schema > builder/schema/cell-config.schema.json

## Regenerate the committed OpenAPI document of the HTTP API from the handlers.
openapi:
	$(CARGO) run -q --locked -p pic-runtime -- openapi > runtime/openapi.json

## Benchmarks (not timed tests): build+switch and rendering, against Python's Jinja2.
bench: $(VENV)/.jinja2
	.ci/install-debian-packages wrk curl
	PIC_BENCH_PYTHON=$(VENV)/bin/python $(CARGO) bench --locked -p pic-builder --bench build
	$(CARGO) bench --locked -p pic-runtime --bench api

$(VENV)/.jinja2:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet jinja2
	touch $@

clean:
	$(CARGO) clean
