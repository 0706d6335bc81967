# PIC workflows. `make start` runs the cell on ./data; `make test` runs every test tier this
# machine can run. Both work on a fresh Debian machine with the Rust toolchain.

CARGO  ?= cargo
STATE  ?= $(CURDIR)/data
CONFIG ?= $(CURDIR)/examples/cell.json
EXAMPLE ?= off
PIC     = $(CURDIR)/target/release/pic
VENV    = $(CURDIR)/target/bench-venv

.PHONY: start build images webui webui-test test deps lint unit schema openapi bench clean stop restart status logs \
	update reinstall uninstall list-peers show-routes show-admin-password reset-admin-password \
	backup restore image update-bundle run-vm vm-test

# The daemons whose own checkers validate what we render (tier 2) and that run two linked cells
# in namespaces (cell_link), and the tools the tests use
# (bmaptool: the unit test of the disk image's block map; pebble: an ACME CA and its test DNS;
# minisign: signs the service store's test indexes).
DEBIAN_TEST_PACKAGES = openssl caddy unbound dnsmasq-base postfix dovecot-imapd dovecot-lmtpd \
	radicale python3-bcrypt apache2 apache2-utils php-cli nftables wireguard-tools util-linux openvpn tor \
	wireguard-go iproute2 iputils-ping curl procps \
	docker.io iptables mmdebstrap bind9-dnsutils chromium zstd bmap-tools pebble minisign prometheus
# What the tests run from those packages: `make deps` fails naming any that is missing afterwards.
DEBIAN_TEST_COMMANDS = openssl caddy unbound unbound-checkconf dnsmasq postfix doveadm radicale apache2 htpasswd \
	php nft wg wg-quick wireguard-go openvpn tor unshare nsenter ip ping curl docker dockerd iptables mmdebstrap dig chromium zstd bmaptool \
	pebble pebble-challtestsrv minisign promtool

LISTEN ?= 127.0.0.1:3000
# `kernel` on a machine that should carry the VPN itself; off by default so that `make start`
# never creates a network interface on a development machine.
WIREGUARD ?= off
# `on` builds the service images and runs the cell's containers (Docker needed). PUBLISH=on also
# publishes their ports (53, 80, 443, ...) on this machine.
CONTAINERS ?= off
PUBLISH ?= off
SERVE_FLAGS = --wireguard $(WIREGUARD) $(if $(filter on,$(CONTAINERS)),,--no-containers) \
	--publish $(if $(filter on,$(PUBLISH)),docker,none)
DOCKER_FLAGS = --publish $(if $(filter on,$(PUBLISH)),docker,none)

## Serve the cell on ./data at $(LISTEN), with the web UI: a fresh state directory starts with
## the setup wizard in the browser; EXAMPLE=on starts it from examples/cell.json instead.
start: build webui $(if $(filter on,$(CONTAINERS)),images)
	@# An existing desired config is the user's: only a fresh state directory gets the example.
	$(PIC) --state $(STATE) init $(if $(filter on,$(EXAMPLE)),$$(test -f $(STATE)/cell_config.json || echo --config $(CONFIG)))
	@if [ -f $(STATE)/cell_config.json ]; then \
		$(PIC) --state $(STATE) switch && $(PIC) --state $(STATE) generations; \
	else \
		echo "Open http://$(LISTEN)/ in a browser to set up your cell."; \
	fi
	$(PIC) --state $(STATE) serve --listen $(LISTEN) $(SERVE_FLAGS)

build:
	$(CARGO) build --release --locked -p pic-runtime

## The service images, from Debian packages (cached layers are reused), loaded into Docker.
images: build
	.ci/install-debian-packages docker.io mmdebstrap
	.ci/start-docker
	$(PIC) images build

## The web UI, built into webui/dist (served by `pic serve`).
webui:
	cd webui && npm ci --no-audit --no-fund && npm run build

## The web UI's tests: its API types against the committed OpenAPI document, Vitest, and the
## end-to-end runs in Debian's Chromium against a real `pic serve` (screenshots in
## webui/e2e-artifacts/): a new user's first steps, every page at phone and desktop widths in
## light and dark (axe-core, no sideways scroll, the main flows by keyboard), the front door of a blocked device, two cells
## linked on their Cell Network pages, an exit on the Connectivity and Routing pages, an update
## uploaded in Settings on a device made of files, and (the
## cell in Docker) an app installed from the Store page and a file uploaded on the Files page.
webui-test: webui
	# The binary as `make unit` builds it (the same features), so that after it nothing is compiled.
	$(CARGO) test --workspace --exclude pic-vm-tests --lib --bins --tests --locked --no-run
	cd webui && npm run check:api && npm test && PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e \
		&& PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:pages \
		&& PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:front-door \
		&& PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:cells \
		&& PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:exits \
		&& PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:updates
	# The cell in Docker for the store's run: the service images as the tier 3 tests build them.
	.ci/start-docker
	mkdir -p target/images && cp images/packages.lock.json target/images/test-packages.lock.json
	target/debug/pic images build --cache target/images --lock target/images/test-packages.lock.json --update-lock
	cd webui && PIC_BIN=$(CURDIR)/target/debug/pic npm run e2e:store

## Every test tier this machine can run. The disk image is built with the tests' copy of the
## package lock, updated when Debian's archive moved on (as the tier 3 test does): a test run
## checks the code, not whether the archive still holds the locked versions. Its images and
## bundles are signed with a key of the tests' own, never a builder's real one.
test: IMAGE_LOCK = --lock target/images/test-packages.lock.json --update-lock
test: UPDATE_KEY = $(CURDIR)/target/test-update-signing.key
test: deps lint unit webui-test vm-test

## Installs what the tests need (idempotent; as root, else it prints the command to run) and
## starts Docker's engine for the tier 3 tests.
deps:
	.ci/install-debian-packages $(addprefix --command ,$(DEBIAN_TEST_COMMANDS)) $(DEBIAN_TEST_PACKAGES)
	.ci/start-docker

## The running cell, as in the original: thin wrappers over `pic`.
stop: build
	$(PIC) --state $(STATE) containers stop all
restart: build
	$(PIC) --state $(STATE) containers restart all
status: build
	$(PIC) --state $(STATE) containers list $(DOCKER_FLAGS)
	@curl -sf http://$(LISTEN)/health && echo " (pic serve at http://$(LISTEN)/)" || echo "pic serve does not answer at http://$(LISTEN)/"
logs: build
	$(PIC) --state $(STATE) logs
logs-%: build
	$(PIC) --state $(STATE) containers logs $* --follow
shell-%:
	docker exec -it pic-$* /bin/sh
update: build images
	$(PIC) --state $(STATE) activate $(DOCKER_FLAGS)
reinstall: build images
	$(PIC) --state $(STATE) containers remove all
	$(PIC) --state $(STATE) activate $(DOCKER_FLAGS)
uninstall: build
	$(PIC) --state $(STATE) containers remove all
	@printf 'Delete the state directory %s (config, generations, secrets, data)? [y/N] ' "$(STATE)"; \
	read answer; if [ "$$answer" = y ]; then rm -rf "$(STATE)" && echo "deleted $(STATE)"; else echo "kept $(STATE)"; fi
## Back up the cell into $(STATE)/backups/: config, generations, store; the secrets only encrypted
## with a passphrase (PASSPHRASE_FILE=FILE, or typed at the terminal); DATA=on adds the services' data.
backup: build
	$(PIC) --state $(STATE) backup $(if $(PASSPHRASE_FILE),--passphrase-file $(PASSPHRASE_FILE)) \
		$(if $(filter on,$(DATA)),--include-data)
## `make restore` lists the backups; `make restore BACKUP=NAME-or-FILE` checks and restores one
## (DRY_RUN=on only reports what would change; DATA=on also restores the services' data).
restore: build
	@if [ -z "$(BACKUP)" ]; then \
		$(PIC) --state $(STATE) backups; echo "restore one with: make restore BACKUP=<name or file>"; \
	else \
		$(PIC) --state $(STATE) restore $(BACKUP) $(if $(PASSPHRASE_FILE),--passphrase-file $(PASSPHRASE_FILE)) \
			$(if $(filter on,$(DATA)),--include-data) $(if $(filter on,$(DRY_RUN)),--dry-run); \
	fi
list-peers: build
	$(PIC) --state $(STATE) peer list
show-routes: build
	$(PIC) --state $(STATE) peer routes
show-admin-password: build
	$(PIC) --state $(STATE) admin-password show
reset-admin-password: build
	$(PIC) --state $(STATE) admin-password reset

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --exclude pic-vm-tests --lib --bins --tests --locked

## Regenerate the committed JSON Schema of the cell config from the types.
schema:
	$(CARGO) run -q --locked -p pic-runtime -- schema > builder/schema/cell-config.schema.json

## The flashable disk image (raw GPT, x86_64 UEFI) in target/pic.img; beside it its sha256, a zstd
## copy (pic.img.zst, with its sha256) and a block map for bmaptool (pic.img.bmap). Its version is
## IMAGE_VERSION (by default the UTC time, YYYY.MMDD.HHMMSS); it trusts updates signed with
## UPDATE_KEY (made when missing; keep it, and out of any repository).
UPDATE_KEY ?= $(HOME)/.config/pic/update-signing.key
IMAGE_VERSION ?=
APPLIANCE_FLAGS = $(IMAGE_LOCK) --update-key $(UPDATE_KEY) $(if $(IMAGE_VERSION),--image-version $(IMAGE_VERSION))
image: build webui
	.ci/install-vm-packages
	$(PIC) images build --output target/images/images.tar --no-load $(IMAGE_LOCK)
	$(PIC) image build --output target/pic.img $(APPLIANCE_FLAGS)

## An update bundle of this tree, target/pic-<version>.picupd, signed with UPDATE_KEY: what a
## flashed device takes in Settings → Updates (or `pic update apply FILE`).
update-bundle: build webui
	.ci/install-vm-packages
	$(PIC) update bundle $(APPLIANCE_FLAGS)

## Boots the disk image in QEMU (TCG): the console here, the web UI at http://127.0.0.1:8080/.
run-vm: image
	@cp --sparse=always target/pic.img target/run-vm.img && truncate -s 8G target/run-vm.img && cp /usr/share/OVMF/OVMF_VARS_4M.fd target/run-vm-vars.fd
	qemu-system-x86_64 -accel tcg -machine q35 -smp 2 -m 2048 -nographic \
		-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
		-drive if=pflash,format=raw,unit=1,file=target/run-vm-vars.fd \
		-drive if=virtio,format=raw,file=target/run-vm.img \
		-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:8443-:443 \
		-device virtio-net-pci,netdev=n0

## The VM tests (tier 5): the disk image booted in QEMU and driven like NixOS tests, with an
## update bundle of a higher version built beside it. A failure's message says what the guest
## showed; a backtrace would only push it out of a log's tail.
vm-test: image
	$(PIC) update bundle --output target/vm-test-update.picupd $(IMAGE_LOCK) --update-key $(UPDATE_KEY)
	PIC_UPDATE_KEY=$(UPDATE_KEY) PIC_UPDATE_BUNDLE=$(CURDIR)/target/vm-test-update.picupd \
		RUST_BACKTRACE=0 $(CARGO) test --locked -p pic-vm-tests -- --test-threads=1 --nocapture

## Regenerate the committed OpenAPI document of the HTTP API from the handlers.
openapi:
	$(CARGO) run -q --locked -p pic-runtime -- openapi > runtime/openapi.json

## Benchmarks (not timed tests): build+switch and rendering against Python's Jinja2; backup and
## restore against tar | zstd; the API
## under load; the cell in Docker (image builds, change to healthy, restarts per change); the
## disk image under QEMU (first boot, setup, reboot and memory, beside a baseline boot).
bench: $(VENV)/.packages deps
	.ci/install-debian-packages wrk curl
	PIC_BENCH_PYTHON=$(VENV)/bin/python $(CARGO) bench --locked -p pic-builder --bench build
	$(CARGO) bench --locked -p pic-builder --bench backup
	PIC_BENCH_PYTHON=$(VENV)/bin/python $(CARGO) bench --locked -p pic-runtime --bench api
	$(CARGO) bench --locked -p pic-runtime --bench cell
	$(MAKE) image IMAGE_LOCK="--lock target/images/test-packages.lock.json --update-lock"
	$(CARGO) bench --locked -p pic-vm-tests --bench boot

## The benchmarks' Python: Jinja2 (the renderer compared), Flask and gunicorn (the original's API).
$(VENV)/.packages:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet jinja2 flask gunicorn
	touch $@

clean:
	$(CARGO) clean
