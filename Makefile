# The two commands a new user runs (see README.md):
#   make dev    builds and starts a single-node Tessera on 127.0.0.1:7700
#   make test   runs formatting and lint checks and the whole test suite
#
# Both install what the build needs first (libclang for RocksDB's bindgen).

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: dev test deps build bench fmt lint

deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from rustup.rs first"; exit 1; }
	@dpkg -s libclang-dev >/dev/null 2>&1 && dpkg -s clang >/dev/null 2>&1 || { \
		echo "installing libclang-dev and clang (needed by RocksDB's bindgen)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev clang; }

build: deps
	$(CARGO) build --bin tessera

dev: build
	$(CARGO) run --bin tessera -- dev

fmt:
	$(CARGO) fmt --all -- --check

lint: deps
	$(CARGO) clippy --all-targets -- -D warnings

test: deps fmt lint
	$(CARGO) test --lib --bins --tests -- --test-threads=1

bench: deps
	$(CARGO) bench --bench replicated_writes
