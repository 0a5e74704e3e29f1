# The two commands a new user runs (see README.md):
#   make dev    builds and starts a single-node Tessera on 127.0.0.1:7700
#   make test   runs formatting and lint checks and the whole test suite
#
# Both install what the build needs first (libclang for RocksDB's bindgen,
# OpenSSL's headers for webauthn-rs),
# and what the tests' clients need (Python's venvs; Go and the AWS SDK
# for Go from Debian, since the Go module proxy is not always reachable;
# headless Chromium and its WebDriver for the browser tests).

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: dev test deps build release bench fmt lint lint-guard fuzz venv

deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from rustup.rs first"; exit 1; }
	@dpkg -s libclang-dev >/dev/null 2>&1 && dpkg -s clang >/dev/null 2>&1 || { \
		echo "installing libclang-dev and clang (needed by RocksDB's bindgen)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev clang; }
	@dpkg -s libssl-dev >/dev/null 2>&1 && dpkg -s pkg-config >/dev/null 2>&1 || { \
		echo "installing libssl-dev and pkg-config (webauthn-rs verifies passkeys with OpenSSL)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libssl-dev pkg-config; }
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "installing python3-venv (the tests' Python clients run in a venv)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3 python3-venv; }
	@dpkg -s golang-go >/dev/null 2>&1 && dpkg -s golang-github-aws-aws-sdk-go-dev >/dev/null 2>&1 || { \
		echo "installing golang-go and golang-github-aws-aws-sdk-go-dev (the AWS SDK for Go test of the Cognito front builds offline from Debian's sources)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq golang-go golang-github-aws-aws-sdk-go-dev; }
	@dpkg -s chromium >/dev/null 2>&1 && dpkg -s chromium-driver >/dev/null 2>&1 || { \
		echo "installing chromium and chromium-driver (tests/hosted_ui.rs drives headless Chromium over WebDriver)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# Only the binary, so a newcomer's node answers before the tests are built.
# `make test` reuses this RocksDB build: dependencies build without
# debuginfo, like build scripts (Cargo.toml), so the binary, clippy and the
# tests share one librocksdb-sys build.
TARGET_DIR = $(shell $(CARGO) metadata --no-deps --format-version 1 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

build: deps
	$(CARGO) build --bin tessera

dev: build
	$(TARGET_DIR)/debug/tessera dev

fmt:
	$(CARGO) fmt --all -- --check

lint: deps
	$(CARGO) clippy --all-targets --features failpoints -- -D warnings

# Proves that the determinism guard can fail: a copy of the crate with one
# clock call added to command/ (the state machine) must fail clippy with
# `disallowed_methods`. The copy shares the target dir, so only the crate
# itself is checked again.
lint-guard: deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp -r Cargo.toml Cargo.lock build.rs clippy.toml proto src benches "$$tmp"/ && \
	printf '\n/// Probe of make lint-guard.\npub fn lint_guard_probe() -> i64 {\n    crate::clock::now_millis()\n}\n' >> "$$tmp/src/command/mod.rs" && \
	if (cd "$$tmp" && CARGO_TARGET_DIR="$(TARGET_DIR)" $(CARGO) clippy --lib --features failpoints -- -D warnings) > "$$tmp/clippy.out" 2>&1; then \
		echo "lint-guard: a clock call in src/command/ passed clippy; the determinism guard does not bite"; exit 1; \
	fi && \
	if grep -q "disallowed_methods\|use of a disallowed method" "$$tmp/clippy.out"; then \
		echo "lint-guard: ok, a clock call in src/command/ fails clippy (disallowed_methods)"; \
	else \
		echo "lint-guard: clippy failed, but not on the probe:"; tail -30 "$$tmp/clippy.out"; exit 1; \
	fi

# The independent Python clients the tests drive (pycognito's SRP client,
# boto3, authlib), pinned in tests/python/requirements.txt, in a venv
# beside the build so that repeated runs reuse it; rebuilt when the pins
# change. soft-webauthn's authenticator (tests/passkeys.rs) has a venv of
# its own, from tests/python/requirements-webauthn.txt, built the same
# way: its fido2 needs an older cryptography than authlib's. So does
# aioquic's device client (tests/sync_aioquic.rs), from
# tests/python/requirements-aioquic.txt: its pyOpenSSL allows no
# cryptography as new as authlib's pin.
VENV = $(TARGET_DIR)/venv
VENV_WEBAUTHN = $(TARGET_DIR)/venv-webauthn
VENV_AIOQUIC = $(TARGET_DIR)/venv-aioquic

venv: deps
	@for pair in "$(VENV) tests/python/requirements.txt" "$(VENV_WEBAUTHN) tests/python/requirements-webauthn.txt" "$(VENV_AIOQUIC) tests/python/requirements-aioquic.txt"; do \
		set -- $$pair; \
		if [ ! -x "$$1/bin/python" ] || ! cmp -s "$$2" "$$1/requirements.txt"; then \
			rm -rf "$$1" && python3 -m venv "$$1" && \
			"$$1/bin/pip" install -q --disable-pip-version-check -r "$$2" && \
			cp "$$2" "$$1/requirements.txt" || exit 1; \
		fi; \
	done

test: deps fmt lint lint-guard venv
	TESSERA_PYTHON="$(VENV)/bin/python" TESSERA_WEBAUTHN_PYTHON="$(VENV_WEBAUTHN)/bin/python" TESSERA_AIOQUIC_PYTHON="$(VENV_AIOQUIC)/bin/python" $(CARGO) test --features failpoints --lib --bins --tests -- --test-threads=1

# RocksDB's C++ is compiled once, by the dev profile (its dependencies
# build at opt-level 2, and librocksdb-sys always defines NDEBUG, so the
# library is the one a release build would make). Release and bench builds
# link that archive instead of compiling the C++ again in their own
# profile directory: `make bench` on a fresh clone after `make test` costs
# minutes, not another quarter of an hour.
ROCKSDB_FROM_DEV = ROCKSDB_STATIC=1 ROCKSDB_LIB_DIR="$$(dirname "$$(ls -t $(TARGET_DIR)/debug/build/librocksdb-sys-*/out/librocksdb.a | head -1)")"

release: build
	$(ROCKSDB_FROM_DEV) $(CARGO) build --release --bin tessera

bench: build
	$(ROCKSDB_FROM_DEV) $(CARGO) bench --bench replicated_writes
	$(ROCKSDB_FROM_DEV) $(CARGO) bench --bench policy
	$(ROCKSDB_FROM_DEV) $(CARGO) bench --bench passkey_verify

# Coverage-guided fuzzing of every parser of external input (fuzz/, see
# src/fuzzing.rs). Needs a nightly toolchain and cargo-fuzz; runs each target
# for FUZZ_SECONDS (default 600) with overflow checks on, one after another:
#   make fuzz                                   every target, 10 minutes each
#   make fuzz FUZZ_TARGETS=jwt FUZZ_SECONDS=60  one target, one minute
# New inputs go to fuzz/runs/<target> (not committed); crashes to
# fuzz/artifacts/<target>. Move a crash into fuzz/regressions/<target>/ once
# fixed: `cargo test --test fuzz_corpus` replays corpora and regressions on
# stable.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\(.*\)"$$/\1/p' fuzz/Cargo.toml | grep -v '^tessera-fuzz$$')
FUZZ_FLAGS ?= -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10

fuzz: build
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/runs/$$t fuzz/regressions/$$t && \
		echo "fuzzing $$t for $(FUZZ_SECONDS) s" && \
		$(ROCKSDB_FROM_DEV) $(CARGO) +nightly fuzz run --debug-assertions $$t fuzz/runs/$$t fuzz/corpus/$$t fuzz/regressions/$$t -- $(FUZZ_FLAGS) || exit 1; \
	done
