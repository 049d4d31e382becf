# drone-discord — the commands a user types. Every target says what it runs.
# `make help` lists them. Cross builds need `make cross-deps` once (Debian/Ubuntu).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO   ?= cargo
NIGHTLY ?= nightly
# Cross/release builds are heavy on a shared 2-core machine; CI and `make` both nice them.
NICE    ?= nice -n 10
BIN     := drone-discord

AARCH64 := aarch64-unknown-linux-musl
ARMV7   := armv7-unknown-linux-musleabihf
ARMV7_GNU := armv7-unknown-linux-gnueabihf
X86_64  := x86_64-unknown-linux-musl
DIST    := dist
# Where cargo puts its output (cross builds land in $(TGT)/<triple>/release/).
TGT     := $(or $(CARGO_TARGET_DIR),target)

# Registry crates are compiled from their absolute source paths
# (~/.cargo/registry/src/index.crates.io-<hash>/<crate>-<version>/src/...), which the
# binary keeps for panic locations. The Pi builds print them as <crate>-<version>/src/...
# instead: ~11 KiB less, and no build machine's home directory in the binary.
# (A target's rustflags in the environment: .cargo/config.toml's still apply for armv7,
# whose own flag is repeated here in case the environment replaces them.)
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
REMAP   := $(foreach d,$(wildcard $(CARGO_HOME_DIR)/registry/src/*/),--remap-path-prefix=$(d)=)
AARCH64_FLAGS := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(REMAP)"
# The lean aarch64 binary, like armv7, is built with nightly's -Z build-std, and without
# std's "backtrace" feature (-Z build-std-features= lists none): no symbolizer (gimli,
# addr2line, miniz_oxide, rustc-demangle) and no backtrace printer, which panic = "abort" and
# the discarded unwind tables (build.rs) had left with nothing to show; a panic still
# prints its message (and no location, see NO_PANIC_LOCATION). std is then also compiled at the profile's opt-level.
# ~230 KB less. std's optimize_for_size feature picks its smaller implementations (sorting,
# formatting helpers): ~23 KB less again. nightly needs only rust-src (as for armv7): the musl start files and
# libc.a come from the stable toolchain's aarch64 musl target, which .ci/deps.sh installs.
RUSTC_STABLE ?= rustc
# std's panic locations then name rust-src's absolute path; print them as library/<crate>/src/...
NIGHTLY_STD_SRC := $(shell rustc +$(NIGHTLY) --print sysroot 2>/dev/null)/lib/rustlib/src/rust/
AARCH64_SC := $(shell $(RUSTC_STABLE) --print sysroot 2>/dev/null)/lib/rustlib/$(AARCH64)/lib/self-contained
# Both nightly builds also drop panic locations (-Z location-detail=none, std included): a
# panic prints its message and `<redacted>:0:0` instead of file:line:col. Each of the ~2,200
# locations was a 24-byte static plus its file name; the message is what an operator needs,
# and a panic never reaches Discord or Drone. ~80 KB less.
NO_PANIC_LOCATION := -Z location-detail=none
AARCH64_LEAN_FLAGS := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no \
    -L native=$(AARCH64_SC) -Z pre-link-arg=$(AARCH64_SC)/crt1.o -Z pre-link-arg=$(AARCH64_SC)/crti.o \
    -Z pre-link-arg=$(AARCH64_SC)/crtbegin.o -C link-arg=$(AARCH64_SC)/crtend.o -C link-arg=$(AARCH64_SC)/crtn.o \
    --remap-path-prefix=$(NIGHTLY_STD_SRC)= $(REMAP) $(NO_PANIC_LOCATION)"
AARCH64_STD := -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
ARMV7_FLAGS   := CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="-C link-self-contained=no $(REMAP) $(NO_PANIC_LOCATION)"

# make fuzz: seconds per fuzz target; make test's bounded pass: seconds per target after its seeds.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 5

# Lean aarch64 binary must stay within this (bytes); CI fails otherwise.
SIZE_BUDGET ?= 2097152

# test-curls / deploy / logs. Plain `=` (not ?=) so that unrelated
# environment variables with common names (HOST, TARGET, LINES) never leak in;
# set them on the command line: make deploy PI=pi@raspberrypi.local TARGET=armv7
HOST     = localhost:5000
PI       =
TARGET   = aarch64
PI_PORT  = 5000
LINES    = 100

say = @printf '\n==> make %s: %s\n' '$@' "$(1)"

.PHONY: lint help build aarch64 armv7 aarch64-mongodb armv7-gnu amd64 dist deb unit size bloat test test-host \
        test-mongodb test-curls deploy logs bench faults fuzz run cross-deps cross-ci smoke preview-screenshot

help: ## list the targets
	@echo "drone-discord make targets:"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{ printf "  make %-16s %s\n", $$1, $$2 }'

build: ## release build for this machine: target/release/drone-discord
	$(call say,cargo build --release (host) -> target/release/$(BIN))
	$(NICE) $(CARGO) build --release

aarch64: ## static musl binary for 64-bit Pi OS: dist/aarch64-unknown-linux-musl/drone-discord
	$(call say,cargo +$(NIGHTLY) build -Z build-std (no backtrace) --release --target $(AARCH64) -> $(DIST)/$(AARCH64)/$(BIN))
	@test -f $(AARCH64_SC)/crt1.o || { echo "no musl start files in $(AARCH64_SC): make cross-deps" >&2; exit 2; }
	$(AARCH64_LEAN_FLAGS) $(NICE) $(CARGO) +$(NIGHTLY) build --release --target $(AARCH64) $(AARCH64_STD)
	@mkdir -p $(DIST)/$(AARCH64) && cp -f $(TGT)/$(AARCH64)/release/$(BIN) $(DIST)/$(AARCH64)/$(BIN)
	@ls -l $(DIST)/$(AARCH64)/$(BIN)

armv7: ## static musl binary for 32-bit Pi OS (Pi 2/3/4): dist/armv7-unknown-linux-musleabihf/drone-discord
	$(call say,cargo +$(NIGHTLY) build -Z build-std --release --target $(ARMV7) -> $(DIST)/$(ARMV7)/$(BIN))
	$(ARMV7_FLAGS) $(NICE) $(CARGO) +$(NIGHTLY) build --release --target $(ARMV7) -Z build-std=std,panic_abort
	@mkdir -p $(DIST)/$(ARMV7) && cp -f $(TGT)/$(ARMV7)/release/$(BIN) $(DIST)/$(ARMV7)/$(BIN)
	@ls -l $(DIST)/$(ARMV7)/$(BIN)

aarch64-mongodb: ## aarch64 with the MongoDB store: dist/aarch64-unknown-linux-musl-mongodb/drone-discord
	$(call say,cargo build --release --target $(AARCH64) --features mongodb -> $(DIST)/$(AARCH64)-mongodb/$(BIN))
	$(AARCH64_FLAGS) $(NICE) $(CARGO) build --release --target $(AARCH64) --features mongodb
	@mkdir -p $(DIST)/$(AARCH64)-mongodb && cp -f $(TGT)/$(AARCH64)/release/$(BIN) $(DIST)/$(AARCH64)-mongodb/$(BIN)
	@ls -l $(DIST)/$(AARCH64)-mongodb/$(BIN)

# Static glibc still loads NSS modules for getaddrinfo at run time (DNS for
# discord.com): keep this for when the musl route breaks, not as the default.
armv7-gnu: ## fallback only: static glibc armv7 binary: dist/armv7-unknown-linux-gnueabihf/drone-discord
	$(call say,cargo build --release --target $(ARMV7_GNU) (+crt-static) -> $(DIST)/$(ARMV7_GNU)/$(BIN))
	@rustup target list --installed | grep -qx $(ARMV7_GNU) || rustup target add $(ARMV7_GNU)
	$(NICE) $(CARGO) build --release --target $(ARMV7_GNU)
	@mkdir -p $(DIST)/$(ARMV7_GNU) && cp -f $(TGT)/$(ARMV7_GNU)/release/$(BIN) $(DIST)/$(ARMV7_GNU)/$(BIN)
	@ls -l $(DIST)/$(ARMV7_GNU)/$(BIN)

# For the amd64 Debian package, which CI installs on its own (x86_64) machine: static
# musl like the Pi builds, with the stable toolchain's prebuilt musl std, linked by cc
# with rustc's self-contained musl objects; clang compiles ring's C, as for aarch64
# (cc-rs would look for an x86_64-linux-musl-gcc). Not position independent, like the Pi
# binaries: rustc makes x86_64 musl binaries static-pie by default, which lintian takes
# for a shared library.
X86_64_FLAGS := CC_x86_64_unknown_linux_musl=clang AR_x86_64_unknown_linux_musl=llvm-ar \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C relocation-model=static $(REMAP)"
amd64: ## static musl binary for x86_64 (the amd64 test package): dist/x86_64-unknown-linux-musl/drone-discord
	$(call say,cargo build --release --target $(X86_64) -> $(DIST)/$(X86_64)/$(BIN))
	@rustup target list --installed | grep -qx $(X86_64) || { echo "no $(X86_64) std: make cross-deps" >&2; exit 2; }
	$(X86_64_FLAGS) $(NICE) $(CARGO) build --release --target $(X86_64)
	@mkdir -p $(DIST)/$(X86_64) && cp -f $(TGT)/$(X86_64)/release/$(BIN) $(DIST)/$(X86_64)/$(BIN)
	@ls -l $(DIST)/$(X86_64)/$(BIN)

dist: aarch64 armv7 ## both Pi binaries

deb: aarch64 armv7 amd64 ## Debian packages from the static binaries: dist/drone-discord_<version>-1_{arm64,armhf,amd64}.deb
	$(call say,scripts/deb.sh (dpkg-deb --build) for arm64 armhf amd64 -> $(DIST)/)
	@scripts/deb.sh arm64 $(DIST)/$(AARCH64)/$(BIN) $(DIST)
	@scripts/deb.sh armhf $(DIST)/$(ARMV7)/$(BIN) $(DIST)
	@scripts/deb.sh amd64 $(DIST)/$(X86_64)/$(BIN) $(DIST)

# The committed unit is the template rendered for /usr/local/bin (by hand, make deploy);
# the Debian package renders its own for /usr/bin. .ci/systemd-check.sh checks they agree.
unit: systemd/drone-discord.service ## render systemd/drone-discord.service from systemd/drone-discord.service.in

systemd/drone-discord.service: systemd/drone-discord.service.in scripts/render-unit.sh
	scripts/render-unit.sh /usr/local/bin >$@.tmp && mv -f $@.tmp $@

size: aarch64 armv7 aarch64-mongodb ## stripped size of each Pi build, as a table (builds them first)
	$(call say,stripped sizes (budget for lean aarch64: $(SIZE_BUDGET) bytes))
	@scripts/size-table.sh --budget $(SIZE_BUDGET) \
	    "$(AARCH64)=$(DIST)/$(AARCH64)/$(BIN)" \
	    "$(ARMV7)=$(DIST)/$(ARMV7)/$(BIN)" \
	    "$(AARCH64) +mongodb=$(DIST)/$(AARCH64)-mongodb/$(BIN)"

bloat: ## where the lean aarch64 binary's bytes go, per crate (needs cargo-bloat)
	$(call say,scripts/bloat.sh $(AARCH64) (cargo bloat --release --crates -n 30))
	@$(AARCH64_FLAGS) NICE="$(NICE)" scripts/bloat.sh $(AARCH64)

test: ## all tests, as CI runs them: deps, lint, host tests, fuzz smoke, MongoDB suite, systemd unit, test-curls, /preview in chromium, Pi builds under qemu, Debian packages
	$(call say,.ci/deps.sh; lint; cargo test; fuzz smoke; MongoDB suite; systemd unit; test-curls smoke; /preview in chromium; Pi leg; Debian packages)
	.ci/deps.sh
	NICE="$(NICE)" .ci/lint.sh
	$(NICE) $(CARGO) test --all-targets
	NICE="$(NICE)" NIGHTLY=$(NIGHTLY) FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) scripts/fuzz.sh --smoke
	NICE="$(NICE)" .ci/mongo-test.sh
	.ci/systemd-check.sh
	scripts/curls-smoke.sh
	scripts/preview-check.sh
	CROSS_SKIP_DEPS=1 .ci/cross.sh
	NICE="$(NICE)" .ci/deb-check.sh
	@printf '\n==> make test: all passed\n'

lint: ## cargo fmt --check, and clippy -D warnings for the default features and --features mongodb
	$(call say,.ci/lint.sh)
	NICE="$(NICE)" .ci/lint.sh

test-mongodb: ## the MongoDB store suite: against MONGODB_URI if set, else the wire-compatible fake
	$(call say,.ci/mongo-test.sh)
	NICE="$(NICE)" .ci/mongo-test.sh

test-host: ## host tests only (quick): cargo test --all-targets
	$(call say,cargo test --all-targets)
	$(NICE) $(CARGO) test --all-targets

test-curls: ## sign every Drone fixture and POST it: make test-curls HOST=host:port SECRET=...
	$(call say,test/test-curls.sh -H $(HOST) (secret from SECRET / DRONE_WEBHOOK_SECRET; not printed); fails on any non-200)
	@test -x test/test-curls.sh || { echo "test/test-curls.sh is missing" >&2; exit 1; }
	@SECRET="$${SECRET:-}" test/test-curls.sh -H "$(HOST)"

preview-screenshot: ## docs/preview.png: the nine fixtures at /preview in headless chromium (runs scripts/preview-check.sh)
	$(call say,cargo build; scripts/preview-check.sh --screenshot docs/preview.png)
	$(NICE) $(CARGO) build
	PREVIEW_WINDOW=900,1200 scripts/preview-check.sh --screenshot docs/preview.png

deploy: systemd/drone-discord.service ## install on a Pi over ssh: make deploy PI=user@host [TARGET=aarch64|armv7]
	@test -n "$(PI)" || { echo "usage: make deploy PI=user@host [TARGET=aarch64|armv7]" >&2; exit 2; }
	@case "$(TARGET)" in aarch64|armv7) ;; *) echo "TARGET must be aarch64 or armv7" >&2; exit 2;; esac
	@$(MAKE) --no-print-directory $(TARGET)
	$(call say,checking $(PI)'s CPU then scp + install + systemctl restart + poll /health)
	@PI_PORT=$(PI_PORT) scripts/deploy.sh "$(PI)" "$(TARGET)" \
	    "$(DIST)/$(if $(filter armv7,$(TARGET)),$(ARMV7),$(AARCH64))/$(BIN)" systemd/drone-discord.service

logs: ## follow the service's journal on a Pi: make logs PI=user@host [LINES=100]
	@test -n "$(PI)" || { echo "usage: make logs PI=user@host" >&2; exit 2; }
	$(call say,ssh $(PI) journalctl -u drone-discord -n $(LINES) -f)
	ssh -t "$(PI)" journalctl -u drone-discord -n $(LINES) -f --no-pager

faults: ## the fault suite, long version: kills, full/read-only/stalled disk, Discord and gateway faults, clock steps (FAULTS_SEED=<seed> replays a run)
	$(call say,FAULTS_SCALE=$${FAULTS_SCALE:-long} cargo test --test faults -- --nocapture (every scenario prints its seed))
	FAULTS_SCALE=$${FAULTS_SCALE:-long} $(NICE) $(CARGO) test --test faults -- --nocapture

fuzz: ## every cargo fuzz target for FUZZ_SECONDS (default 600) in turn; prints executions, exec/s, coverage
	$(call say,scripts/fuzz.sh ($(FUZZ_SECONDS) s per target; findings in fuzz/artifacts/))
	NIGHTLY=$(NIGHTLY) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

bench: ## benchmarks (bench profile = release + unwind, symbols kept)
	$(call say,cargo bench)
	$(NICE) $(CARGO) bench

run: ## run the service locally in dry-run (no Discord token): renders and logs messages
	@if [ -n "$${DRONE_WEBHOOK_SECRET:-}" ]; then shown='<yours, from the environment>'; else shown=change-me-please; fi; \
	 printf '\n==> make run: DRONE_WEBHOOK_SECRET=%s cargo run --release -- serve --dry-run (on LISTEN_ADDR, default 0.0.0.0:5000)\n    then in another terminal: make test-curls SECRET=%s\n    and open http://localhost:5000/preview to see the messages as Discord would show them\n' "$$shown" "$$shown"
	@DRONE_WEBHOOK_SECRET="$${DRONE_WEBHOOK_SECRET:-change-me-please}" $(CARGO) run --release -- serve --dry-run

cross-deps: ## install cross toolchains (clang, qemu-user, armhf gcc, musl sysroot, rustup bits)
	$(call say,.ci/deps.sh (idempotent))
	.ci/deps.sh

smoke: ## run the Pi binaries under qemu: --version, serve --dry-run, /health, one signed fixture
	$(call say,scripts/qemu-smoke.sh for each built Pi binary)
	scripts/qemu-smoke.sh $(AARCH64) $(DIST)/$(AARCH64)/$(BIN)
	scripts/qemu-smoke.sh $(ARMV7) $(DIST)/$(ARMV7)/$(BIN)

cross-ci: ## what CI runs for the Pi: deps, both builds, mongodb build, qemu smoke, size budget
	$(call say,.ci/cross.sh)
	.ci/cross.sh
