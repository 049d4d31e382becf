#!/usr/bin/env bash
# Why this exists: CI's check of the Debian packages (`make deb`). It runs after
# .ci/cross.sh, which builds the Pi binaries the ARM packages hold, and (after
# checking the maintainer scripts, which dpkg runs with /bin/sh, with shellcheck):
#   1. builds the three packages (make deb: arm64, armhf, amd64);
#   2. runs lintian on them: no error or warning that is not overridden (each
#      override is explained in packaging/debian/lintian-overrides);
#   3. inspects each with dpkg-deb --info / --contents: the Architecture field, the
#      exact file list with modes, the conffiles, preinst only in armhf; and takes the
#      binary back out to check it is static and of the right CPU (scripts/elf-check.sh);
#   4. installs the amd64 package with dpkg -i on this machine (root; systemd need
#      not be running: the maintainer scripts skip what needs it, as in a chroot) and
#      checks: the binary runs, the service is neither enabled nor started, the
#      conffiles are 0600; `systemd-analyze verify` of the installed units prints
#      nothing; then, with a real store made by the installed binary where systemd
#      keeps a DynamicUser= service's state, the units enabled as README.Debian says
#      and the secret files in place: `dpkg -r` keeps the settings, secrets and store,
#      a reinstall carries on with them (enabled again), and `dpkg -P` removes them
#      all, with the enablement links.
# Prints the wall time of each step.
#
# Env: DEB_CHECK_REPLACE=1  go ahead although drone-discord is installed on this machine
#                           (the check removes and purges it, with its store)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PKG=drone-discord
version=$(grep -m1 '^version' Cargo.toml | sed 's/.*"\(.*\)".*/\1/')-${DEB_REVISION:-1}
timings=()

log() { printf '==> deb-check: %s\n' "$*"; }
fail() { printf '!!! deb-check: FAIL: %s\n' "$*" >&2; exit 1; }
step() {
    local name=$1; shift
    printf '\n==> deb-check: %s\n' "$name"
    local start=$SECONDS
    "$@"
    local took=$(( SECONDS - start ))
    timings+=("$(printf '%-48s %5ss' "$name" "$took")")
}
report() {
    printf '\n==> deb-check: step times\n'
    local t
    for t in "${timings[@]}"; do printf '    %s\n' "$t"; done
}
trap report EXIT

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

deb_of() { printf 'dist/%s_%s_%s.deb' "$PKG" "$version" "$1"; }

build() {
    make --no-print-directory deb NICE="${NICE:-nice -n 10}"
    local a
    for a in arm64 armhf amd64; do
        [ -f "$(deb_of "$a")" ] || fail "make deb made no $(deb_of "$a")"
        log "$(deb_of "$a"): $(wc -c <"$(deb_of "$a")" | tr -d ' ') bytes"
    done
}

run_lintian() {
    command -v lintian >/dev/null || fail "lintian is not installed (.ci/deps.sh installs it)"
    # Errors and warnings fail; info tags are shown too. Overridden tags are not shown.
    local out rc=0
    out=$(lintian --fail-on error,warning -I "$(deb_of arm64)" "$(deb_of armhf)" "$(deb_of amd64)" 2>&1) || rc=$?
    printf '%s\n' "$out" | grep -v '^running with root privileges is not recommended!$' || true
    [ $rc -eq 0 ] || fail "lintian found errors or warnings (above; exit $rc)"
    log "lintian: clean (overrides explained in packaging/debian/lintian-overrides)"
}

# The file list every package has, as "mode path" (dpkg-deb --contents columns 1 and 6).
expected_files() {
    cat <<LIST
drwxr-xr-x ./
drwxr-xr-x ./etc/
drwx------ ./etc/$PKG/
-rw------- ./etc/$PKG/env
-rw------- ./etc/$PKG/env.example
drwxr-xr-x ./lib/
drwxr-xr-x ./lib/systemd/
drwxr-xr-x ./lib/systemd/system/
-rw-r--r-- ./lib/systemd/system/$PKG.service
-rw-r--r-- ./lib/systemd/system/$PKG.socket
drwxr-xr-x ./usr/
drwxr-xr-x ./usr/bin/
-rwxr-xr-x ./usr/bin/$PKG
drwxr-xr-x ./usr/share/
drwxr-xr-x ./usr/share/doc/
drwxr-xr-x ./usr/share/doc/$PKG/
-rw-r--r-- ./usr/share/doc/$PKG/README.Debian
-rw-r--r-- ./usr/share/doc/$PKG/README.md.gz
-rw-r--r-- ./usr/share/doc/$PKG/changelog.Debian.gz
-rw-r--r-- ./usr/share/doc/$PKG/copyright
drwxr-xr-x ./usr/share/lintian/
drwxr-xr-x ./usr/share/lintian/overrides/
-rw-r--r-- ./usr/share/lintian/overrides/$PKG
drwxr-xr-x ./usr/share/man/
drwxr-xr-x ./usr/share/man/man1/
-rw-r--r-- ./usr/share/man/man1/$PKG.1.gz
LIST
}

inspect() {
    local arch=$1 deb
    deb=$(deb_of "$arch")
    dpkg-deb --info "$deb" >/dev/null || fail "$deb: dpkg-deb --info failed"
    local field
    field=$(dpkg-deb --field "$deb" Architecture)
    [ "$field" = "$arch" ] || fail "$deb: Architecture: $field, not $arch"
    field=$(dpkg-deb --field "$deb" Version)
    [ "$field" = "$version" ] || fail "$deb: Version: $field, not $version"
    [ -z "$(dpkg-deb --field "$deb" Depends)" ] || fail "$deb: a static binary needs no Depends"

    local files
    files=$(dpkg-deb --contents "$deb" | awk '{ print $1, $6 }')
    if [ "$files" != "$(expected_files)" ]; then
        diff -u <(expected_files) <(printf '%s\n' "$files") || true
        fail "$deb: unexpected file list (- expected, + in the package)"
    fi
    local owners
    owners=$(dpkg-deb --contents "$deb" | awk '$2 != "root/root"')
    [ -z "$owners" ] || fail "$deb: files not owned by root: $owners"

    local ctrl
    ctrl=$(mktemp -d)
    dpkg-deb --control "$deb" "$ctrl/DEBIAN"
    [ "$(cat "$ctrl/DEBIAN/conffiles")" = "$(printf '/etc/%s/env\n/etc/%s/env.example' "$PKG" "$PKG")" ] ||
        fail "$deb: conffiles: $(tr '\n' ' ' <"$ctrl/DEBIAN/conffiles")"
    if [ "$arch" = armhf ]; then
        grep -q 'armv6' "$ctrl/DEBIAN/preinst" || fail "$deb: preinst does not refuse ARMv6"
    else
        [ ! -e "$ctrl/DEBIAN/preinst" ] || fail "$deb: only the armhf package has a preinst"
    fi
    rm -rf "$ctrl"

    local bin
    bin=$(mktemp)
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/bin/$PKG" >"$bin"
    local kind
    kind=$(scripts/elf-check.sh "$arch" "$bin") || { rm -f "$bin"; fail "$deb: /usr/bin/$PKG is not a static $arch executable"; }
    rm -f "$bin"
    local unit
    unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./lib/systemd/system/$PKG.service")
    [ "$unit" = "$(scripts/render-unit.sh /usr/bin)" ] ||
        fail "$deb: the unit is not systemd/$PKG.service.in rendered for /usr/bin"
    log "$arch: Architecture $arch, ${version}, $(wc -l <<<"$files") entries as expected, conffiles 0600, unit for /usr/bin, /usr/bin/$PKG: $kind"
}

# The armhf preinst against each `uname -m` a Raspberry Pi OS 32-bit system reports.
preinst_armv6() {
    local ctrl out rc m
    ctrl=$(mktemp -d)
    dpkg-deb --control "$(deb_of armhf)" "$ctrl/DEBIAN"
    mkdir "$ctrl/bin"
    for m in armv6l armv7l armv8l aarch64; do
        printf '#!/bin/sh\necho %s\n' "$m" >"$ctrl/bin/uname"
        chmod +x "$ctrl/bin/uname"
        rc=0
        out=$(PATH="$ctrl/bin:$PATH" sh "$ctrl/DEBIAN/preinst" install 2>&1) || rc=$?
        case $m in
            armv6l)
                [ $rc -ne 0 ] || { rm -rf "$ctrl"; fail "preinst accepted $m"; }
                grep -q 'SIGILL' <<<"$out" || { rm -rf "$ctrl"; fail "preinst refused $m without saying why: $out"; }
                log "armhf preinst on $m: refused ($(head -n 1 <<<"$out"))" ;;
            *)
                [ $rc -eq 0 ] || { rm -rf "$ctrl"; fail "preinst refused $m: $out"; } ;;
        esac
    done
    rm -rf "$ctrl"
    log "armhf preinst: armv7l, armv8l and aarch64 accepted"
}

# --- the amd64 package installed on this machine -----------------------------------
installed=0
state=/var/lib/private/$PKG
etc=/etc/$PKG

is_installed() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q ' installed$'; }
status_of() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || echo "not-installed"; }

cleanup_install() {
    if [ "$installed" = 1 ]; then
        $SUDO dpkg -P "$PKG" >/dev/null 2>&1 || true
    fi
}

install_pkg() {
    if is_installed && [ "${DEB_CHECK_REPLACE:-0}" != 1 ]; then
        fail "$PKG is installed on this machine; this check installs, removes and purges it (with its store): remove it first, or set DEB_CHECK_REPLACE=1"
    fi
    installed=1
    trap 'cleanup_install; report' EXIT
    $SUDO dpkg -i "$(deb_of amd64)"
    is_installed || fail "dpkg -i did not install $PKG ($(status_of))"
    local said
    said=$(/usr/bin/$PKG --version) || fail "/usr/bin/$PKG --version failed"
    [ "$said" = "$PKG ${version%-*}" ] || fail "/usr/bin/$PKG --version: $said"
    [ "$(stat -c %a "$etc")" = 700 ] || fail "$etc is $(stat -c %a "$etc"), not 700"
    local f
    for f in env env.example; do
        [ "$(stat -c '%a %U' "$etc/$f")" = "600 root" ] || fail "$etc/$f is $(stat -c '%a %U' "$etc/$f")"
    done
    dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $etc/env " || fail "$etc/env is not a conffile"
    # Installed, not enabled (systemctl works on the unit files without a running systemd).
    local u en
    for u in $PKG.service $PKG.socket; do
        en=$(systemctl is-enabled "$u" 2>/dev/null || true)
        [ "$en" = disabled ] || fail "$u is '$en' after install, not disabled"
    done
    if [ -d /run/systemd/system ]; then
        ! systemctl is-active --quiet "$PKG.service" || fail "$PKG.service was started by the install"
        log "systemd is running: the service is not active"
    else
        log "systemd is not running here (PID 1: $(ps -o comm= -p 1 2>/dev/null || echo '?')); postinst skipped daemon-reload, as in a chroot"
    fi
    log "installed: $said; $etc 0700, env and env.example 0600 conffiles; units disabled"
}

verify_installed() {
    command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (.ci/deps.sh installs systemd)"
    local out
    out=$(systemd-analyze verify /lib/systemd/system/$PKG.service /lib/systemd/system/$PKG.socket 2>&1) ||
        { printf '%s\n' "$out"; fail "systemd-analyze verify failed on the installed units"; }
    [ -z "$out" ] || { printf '%s\n' "$out"; fail "systemd-analyze verify printed warnings for the installed units"; }
    log "systemd-analyze verify /lib/systemd/system/$PKG.{service,socket}: no warnings"
}

# A real store, written by the installed binary where systemd would keep it for the
# DynamicUser= service, the link systemd makes, the secrets and the enablement links.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

make_state() {
    $SUDO install -d -m 0700 /var/lib/private
    $SUDO install -d -m 0700 "$state"
    [ -e /var/lib/$PKG ] || $SUDO ln -s "private/$PKG" /var/lib/$PKG
    local port secret pid
    port=$(free_port)
    secret="deb-check-$$"
    $SUDO env DRONE_WEBHOOK_SECRET="$secret" LISTEN_ADDR="127.0.0.1:$port" STATE_DIR="$state" \
        /usr/bin/$PKG serve --dry-run --no-gateway >"$state.log" 2>&1 &
    pid=$!
    local ok=0
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ok=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    [ $ok = 1 ] || { cat "$state.log" >&2; fail "the installed binary did not come up on 127.0.0.1:$port"; }
    DRONE_WEBHOOK_SECRET="$secret" /usr/bin/$PKG send test/fixtures/drone/build_created.json \
        --url "http://127.0.0.1:$port/" >/dev/null || { kill "$pid"; fail "send to the installed binary failed"; }
    kill -TERM "$pid"
    wait "$pid" || { cat "$state.log" >&2; fail "the installed binary did not stop cleanly"; }
    rm -f "$state.log"
    [ -n "$(ls -A "$state")" ] || fail "no store in $state"
    printf '%s' "$secret" | $SUDO tee "$etc/webhook-secret" >/dev/null
    printf '%s' "not-a-token" | $SUDO tee "$etc/discord-token" >/dev/null
    $SUDO chmod 0600 "$etc/webhook-secret" "$etc/discord-token"
    printf 'DISCORD_CHANNEL_ID=123456789012345678\n' | $SUDO tee -a "$etc/env" >/dev/null
    $SUDO systemctl enable $PKG.socket $PKG.service >/dev/null 2>&1 ||
        fail "systemctl enable $PKG.socket $PKG.service failed"
    [ "$(systemctl is-enabled $PKG.service)" = enabled ] || fail "$PKG.service not enabled"
    log "state: a store in $state ($(ls "$state" | tr '\n' ' ')), /var/lib/$PKG -> private/$PKG, secrets, env edited, units enabled"
}

enable_links() {
    find /etc/systemd/system -lname "/lib/systemd/system/$PKG.*" 2>/dev/null
}

remove_keeps() {
    [ -n "$(enable_links)" ] || fail "no enablement links before dpkg -r"
    $SUDO dpkg -r "$PKG"
    [ "$(status_of)" = "deinstall ok config-files" ] || fail "after dpkg -r: $(status_of)"
    [ ! -e /usr/bin/$PKG ] || fail "dpkg -r left /usr/bin/$PKG"
    [ ! -e /lib/systemd/system/$PKG.service ] || fail "dpkg -r left the unit"
    local f
    for f in "$etc/env" "$etc/env.example" "$etc/webhook-secret" "$etc/discord-token"; do
        [ -f "$f" ] || fail "dpkg -r removed $f"
    done
    grep -q '^DISCORD_CHANNEL_ID=123456789012345678$' "$etc/env" || fail "dpkg -r lost the edit to $etc/env"
    [ -n "$(ls -A "$state" 2>/dev/null)" ] || fail "dpkg -r removed the store in $state"
    [ -L /var/lib/$PKG ] || fail "dpkg -r removed the /var/lib/$PKG link"
    # The enablement links stay (the administrator made them); the units are masked
    # until a reinstall, as dh_installsystemd's scripts do.
    [ -n "$(enable_links)" ] || fail "dpkg -r removed the enablement links"
    [ "$(systemctl is-enabled $PKG.service 2>/dev/null || true)" = masked ] || fail "$PKG.service not masked after dpkg -r"
    log "dpkg -r: binary and units gone; settings, secrets, store, link and enablement kept, units masked ($(status_of))"
}

reinstall_resumes() {
    $SUDO dpkg -i "$(deb_of amd64)" >/dev/null
    is_installed || fail "reinstall: $(status_of)"
    local u en
    for u in $PKG.service $PKG.socket; do
        en=$(systemctl is-enabled "$u" 2>/dev/null || true)
        [ "$en" = enabled ] || fail "$u is '$en' after the reinstall, not enabled again"
    done
    grep -q '^DISCORD_CHANNEL_ID=123456789012345678$' "$etc/env" || fail "reinstall replaced the edited $etc/env"
    [ -n "$(ls -A "$state" 2>/dev/null)" ] || fail "reinstall lost the store"
    log "reinstall: unmasked, enabled again, edited env and store as they were"
}

purge_removes() {
    $SUDO dpkg -P "$PKG"
    installed=0
    case $(status_of) in
        *not-installed) ;;
        *) fail "after dpkg -P: $(status_of)" ;;
    esac
    [ ! -e "$etc" ] || fail "dpkg -P left $etc ($(ls -A "$etc" | tr '\n' ' '))"
    [ ! -e "$state" ] || fail "dpkg -P left the store in $state"
    [ ! -e /var/lib/$PKG ] && [ ! -L /var/lib/$PKG ] || fail "dpkg -P left /var/lib/$PKG"
    [ -z "$(enable_links)" ] || fail "dpkg -P left enablement links: $(enable_links | tr '\n' ' ')"
    [ ! -L /etc/systemd/system/$PKG.service ] || fail "dpkg -P left the unit masked"
    log "dpkg -P: $etc, the store, /var/lib/$PKG and the enablement links are gone"
}

maintainer_scripts() {
    command -v shellcheck >/dev/null || fail "shellcheck is not installed (.ci/deps.sh installs it)"
    shellcheck -s sh -S warning packaging/debian/postinst packaging/debian/prerm \
        packaging/debian/postrm packaging/debian/preinst.armhf
    shellcheck -x -S warning .ci/deb-check.sh
    log "shellcheck: maintainer scripts (POSIX sh) and this script"
}

start=$SECONDS
step "shellcheck" maintainer_scripts
step "make deb (arm64, armhf, amd64)" build
step "lintian" run_lintian
step "inspect arm64" inspect arm64
step "inspect armhf" inspect armhf
step "inspect amd64" inspect amd64
step "armhf preinst refuses armv6l" preinst_armv6
step "dpkg -i (amd64)" install_pkg
step "systemd-analyze verify (installed units)" verify_installed
step "state: store, secrets, enabled units" make_state
step "dpkg -r keeps state" remove_keeps
step "dpkg -i again resumes" reinstall_resumes
step "dpkg -P removes state" purge_removes
printf '\n==> deb-check: ok in %ss\n' "$(( SECONDS - start ))"
