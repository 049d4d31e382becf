#!/usr/bin/env bash
# Installs everything CI and `make cross-deps` need to build drone-discord for the
# Raspberry Pi targets and to run those binaries under user-mode qemu:
#   - Debian packages: clang (ring's C/asm for aarch64 musl), qemu-user-static,
#     the armhf GNU cross gcc + glibc headers (armv7 linking / ring), curl, openssl;
#     chromium and its colour emoji font for the /preview browser test
#     (scripts/preview-check.sh, `make preview-screenshot`);
#   - for the Debian packages (make deb, .ci/deb-check.sh): lintian, and systemd for
#     `systemd-analyze verify` of the installed units (dpkg-deb is dpkg's);
#   - rustup: the aarch64-unknown-linux-musl std (the lean aarch64 build links its
#     musl start files and libc.a), the x86_64-unknown-linux-musl std (the amd64
#     package's static binary), and nightly's rust-src for the build-std routes
#     (aarch64 without std's backtrace; armv7, for which rustup ships no musl std);
#   - cargo-fuzz (crates.io), for the fuzz targets in fuzz/;
#   - the armv7 musl sysroot: Debian's armhf musl + musl-dev, fetched with a private
#     apt state (never `dpkg --add-architecture armhf`) and unpacked into
#     .cross-toolchains/armv7-musl inside the repo.
# Idempotent and fast when everything is present: it checks before it installs.
#
# Usage: .ci/deps.sh [--host-only]   (--host-only: apt packages for host tests only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NIGHTLY=${NIGHTLY:-nightly}
TC_DIR="$ROOT/.cross-toolchains/armv7-musl"
APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=600)

log() { printf '==> deps: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# faketime: the fault suite's clock steps; e2fsprogs: its ext4 loop mounts (tests/faults/).
HOST_PKGS=(curl openssl ca-certificates faketime e2fsprogs)
# tests/metrics_e2e.rs parses /metrics with a real Prometheus parser (prometheus_client).
HOST_PKGS+=(python3-prometheus-client)
CROSS_PKGS=(clang llvm qemu-user-static gcc-arm-linux-gnueabihf libc6-dev-armhf-cross binutils-arm-linux-gnueabihf file shellcheck)
BROWSER_PKGS=(chromium fonts-noto-color-emoji)
DEB_PKGS=(lintian systemd)

missing_pkgs() {
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$p"
        fi
    done
}

apt_install() {
    local missing
    mapfile -t missing < <(missing_pkgs "$@")
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt packages present: $*"
        return 0
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Try without a fresh index first (fast path); refresh the index only if that fails.
    if ! $SUDO apt-get "${APT_LOCK_WAIT[@]}" install -y --no-install-recommends "${missing[@]}"; then
        log "apt-get update (index was stale or missing)"
        $SUDO apt-get "${APT_LOCK_WAIT[@]}" update || log "apt-get update reported errors; trying install anyway"
        $SUDO apt-get "${APT_LOCK_WAIT[@]}" install -y --no-install-recommends "${missing[@]}"
    fi
}

rustup_target() {
    local toolchain=$1 target=$2
    if rustup +"$toolchain" target list --installed 2>/dev/null | grep -qx "$target"; then
        log "rustup target $target ($toolchain) present"
    else
        log "rustup target add $target ($toolchain)"
        rustup target add --toolchain "$toolchain" "$target"
    fi
}

nightly_rust_src() {
    if ! rustup toolchain list | grep -q "^$NIGHTLY"; then
        log "rustup toolchain install $NIGHTLY (minimal + rust-src)"
        rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
        return 0
    fi
    if rustup +"$NIGHTLY" component list --installed 2>/dev/null | grep -q '^rust-src'; then
        log "rust-src ($NIGHTLY) present"
    else
        log "rustup component add rust-src --toolchain $NIGHTLY"
        rustup component add rust-src --toolchain "$NIGHTLY"
    fi
}

# cargo-fuzz, for the bounded libFuzzer pass of `make test` (scripts/fuzz.sh --smoke)
# and `make fuzz`; built from crates.io once per machine.
cargo_fuzz() {
    if cargo +"$NIGHTLY" fuzz --version >/dev/null 2>&1; then
        log "cargo-fuzz present"
    else
        log "cargo install cargo-fuzz --locked"
        cargo install cargo-fuzz --locked
    fi
}

# Debian's armhf musl, unpacked into the repo. A private apt state keeps the host's
# dpkg architecture list untouched (adding armhf breaks later `apt-get update` here).
armv7_musl_sysroot() {
    local stamp="$TC_DIR/.complete"
    if [ -f "$stamp" ]; then
        log "armv7 musl sysroot present ($TC_DIR)"
    else
        log "fetching Debian armhf musl + musl-dev into $TC_DIR"
        rm -rf "$TC_DIR"
        local state="$TC_DIR/apt"
        mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$TC_DIR/debs" "$TC_DIR/root"
        : >"$state/status"
        local opts=(-o "Dir::State=$state" -o "Dir::State::status=$state/status"
                    -o "Dir::Cache=$state/cache" -o "APT::Architecture=armhf"
                    -o "APT::Architectures=armhf" -o "Debug::NoLocking=1"
                    -o "APT::Sandbox::User=root")
        # Exits non-zero when one index (e.g. security) is missing; the main archive suffices.
        apt-get "${opts[@]}" update >"$TC_DIR/apt-update.log" 2>&1 || log "armhf apt-get update reported errors (see $TC_DIR/apt-update.log); continuing"
        (cd "$TC_DIR/debs" && apt-get "${opts[@]}" download musl:armhf musl-dev:armhf)
        local deb
        for deb in "$TC_DIR"/debs/*.deb; do
            dpkg -x "$deb" "$TC_DIR/root"
        done
        rm -rf "$state"
        test -f "$TC_DIR/root/usr/lib/arm-linux-musleabihf/libc.a"
        # std links -lunwind; on this route libgcc_eh provides the unwinder.
        mkdir -p "$TC_DIR/lib"
        printf 'INPUT(-lgcc_eh)\n' >"$TC_DIR/lib/libunwind.a"
        touch "$stamp"
    fi
}

main() {
    apt_install "${HOST_PKGS[@]}"
    if [ "${1:-}" = "--host-only" ]; then
        return 0
    fi
    apt_install "${CROSS_PKGS[@]}"
    apt_install "${BROWSER_PKGS[@]}"
    apt_install "${DEB_PKGS[@]}"
    rustup_target "$(rustup show active-toolchain | cut -d" " -f1)" aarch64-unknown-linux-musl
    rustup_target "$(rustup show active-toolchain | cut -d" " -f1)" x86_64-unknown-linux-musl
    nightly_rust_src
    cargo_fuzz
    armv7_musl_sysroot
    log "ok"
}

main "$@"
