#!/usr/bin/env bash
# Why this exists: `make deb`. Builds drone-discord_<version>-<revision>_<arch>.deb
# from one already built static binary with plain `dpkg-deb --build` (no debhelper, no
# crate): a staging tree is laid out here and packed with root ownership.
#   /usr/bin/drone-discord                          the binary, checked static and of ARCH
#   /lib/systemd/system/drone-discord.{service,socket}  the unit rendered for /usr/bin
#                                                   (scripts/render-unit.sh) and the socket
#   /etc/drone-discord/env, env.example             conffiles, 0600, in a 0700 directory
#   /usr/share/doc/drone-discord/                   README.md, README.Debian, copyright,
#                                                   changelog.Debian (generated)
#   /usr/share/man/man1/drone-discord.1.gz          from the binary's --help (scripts/manpage.sh)
#   /usr/share/lintian/overrides/drone-discord      each override explained
#   DEBIAN/ control, conffiles, md5sums, postinst, prerm, postrm (+ preinst on armhf:
#           refuses ARMv6)
# The maintainer scripts and documents are in packaging/debian/.
#
# Usage: scripts/deb.sh ARCH BINARY [OUTDIR]   (ARCH: amd64 | arm64 | armhf; OUTDIR: dist)
# Env:   DEB_REVISION (default 1), DEB_MAINTAINER, SOURCE_DATE_EPOCH (default: last commit),
#        CARGO_TARGET_DIR (the staging tree goes under it, in deb/<arch>)
# Prints the package's path and size.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=drone-discord
arch=${1:-}
bin=${2:-}
out=${3:-$ROOT/dist}
revision=${DEB_REVISION:-1}
maintainer=${DEB_MAINTAINER:-drone-discord maintainers <maintainers@drone-discord.invalid>}
src=$ROOT/packaging/debian

die() { printf '!!! deb: %s\n' "$*" >&2; exit 1; }
[ -n "$arch" ] && [ -n "$bin" ] || { echo "usage: scripts/deb.sh ARCH BINARY [OUTDIR]" >&2; exit 2; }
case $arch in
    amd64) runner= ;;
    arm64) runner=qemu-aarch64-static ;;
    armhf) runner=qemu-arm-static ;;
    *) echo "deb: ARCH must be amd64, arm64 or armhf (got '$arch')" >&2; exit 2 ;;
esac
[ -x "$bin" ] || die "no binary at $bin"
# The binary runs once here (version and --help for the man page): natively when it
# is for this machine's CPU, else under user-mode qemu (make cross-deps installs it).
[ "$(dpkg --print-architecture)" = "$arch" ] && runner=
if [ -n "$runner" ]; then
    command -v "$runner" >/dev/null || die "$runner not found (make cross-deps)"
fi
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg)"

kind=$("$ROOT/scripts/elf-check.sh" "$arch" "$bin") || die "$bin cannot go in an $arch package"

version=$(grep -m1 '^version' "$ROOT/Cargo.toml" | sed 's/.*"\(.*\)".*/\1/')
homepage=$(grep -m1 '^repository' "$ROOT/Cargo.toml" | sed 's/.*"\(.*\)".*/\1/')
said=$(${runner:+"$runner"} "$bin" --version) || die "$bin --version failed"
[ "$said" = "$PKG $version" ] || die "$bin says '$said', Cargo.toml says $version"
debversion=$version-$revision
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}

stage=${CARGO_TARGET_DIR:-$ROOT/target}/deb/$arch
rm -rf "$stage"
doc=$stage/usr/share/doc/$PKG
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$doc" \
    "$stage/usr/share/man/man1" "$stage/usr/share/lintian/overrides"
install -d -m 0700 "$stage/etc/$PKG"

install -m 0755 "$bin" "$stage/usr/bin/$PKG"
"$ROOT/scripts/render-unit.sh" /usr/bin >"$stage/lib/systemd/system/$PKG.service"
install -m 0644 "$ROOT/systemd/$PKG.socket" "$stage/lib/systemd/system/$PKG.socket"
chmod 0644 "$stage/lib/systemd/system/$PKG.service"
install -m 0600 "$ROOT/systemd/$PKG.env.example" "$stage/etc/$PKG/env"
install -m 0600 "$ROOT/systemd/$PKG.env.example" "$stage/etc/$PKG/env.example"

install -m 0644 "$src/README.Debian" "$src/copyright" "$doc/"
gzip -9n -c "$ROOT/README.md" >"$doc/README.md.gz"
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    printf '%s (%s) unstable; urgency=medium\n\n' "$PKG" "$debversion"
    printf '  * drone-discord %s, built from commit %s with scripts/deb.sh.\n\n' "$version" "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.Debian.gz"
"$ROOT/scripts/manpage.sh" "$bin" "$runner" | gzip -9n >"$stage/usr/share/man/man1/$PKG.1.gz"
# lintian-overrides: comment lines explain; package name prefix as lintian expects.
install -m 0644 "$src/lintian-overrides" "$stage/usr/share/lintian/overrides/$PKG"

for script in postinst prerm postrm; do
    install -m 0755 "$src/$script" "$stage/DEBIAN/$script"
done
if [ "$arch" = armhf ]; then
    install -m 0755 "$src/preinst.armhf" "$stage/DEBIAN/preinst"
fi
printf '/etc/%s/env\n/etc/%s/env.example\n' "$PKG" "$PKG" >"$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/conffiles"
# md5sums of every shipped file but the conffiles (dpkg keeps theirs itself).
(cd "$stage" && find usr lib -type f | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: $PKG
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Section: net
Priority: optional
Homepage: $homepage
Description: Drone CI webhooks to Discord, one message per build
 drone-discord receives the signed global webhooks of a Drone CI server and
 posts one Discord message per build, edited live while the build runs. It
 stores every accepted webhook durably before answering Drone, so nothing
 answered is lost to a crash, a restart or a Discord outage, and keeps the
 bot's presence tied to its health.
 .
 It runs under systemd (watchdog, socket activation, a sandboxed dynamic
 user); the service is installed but not enabled until it is configured.
 The binary is static (musl) and depends on no library.
CONTROL
chmod 0644 "$stage/DEBIAN/control"

mkdir -p "$out"
deb=$out/${PKG}_${debversion}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
printf '==> deb: %s (%s bytes; binary: %s)\n' "$deb" "$(wc -c <"$deb" | tr -d ' ')" "$(cut -d, -f1-2 <<<"$kind")"
