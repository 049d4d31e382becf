#!/usr/bin/env bash
# Why this exists: the Debian packages carry a man page, drone-discord(1), and the only
# true description of the command line is the binary's own `--help` (argh writes it from
# the code). This runs the binary being packaged (under user-mode qemu when it is for
# another CPU) and writes a roff page: the top-level help, each command's `--help`
# verbatim, then the files, exit codes and pointers a packaged install needs.
#
# Usage: scripts/manpage.sh BINARY [RUNNER]   (RUNNER e.g. qemu-aarch64-static; roff on stdout)
# Env:   SOURCE_DATE_EPOCH  the page's date (default: the last commit's, else today)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-}
runner=${2:-}
[ -n "$bin" ] && [ -x "$bin" ] || { echo "usage: scripts/manpage.sh BINARY [RUNNER]" >&2; exit 2; }
if [ -n "$runner" ]; then cmd=("$runner" "$bin"); else cmd=("$bin"); fi

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
date=$(date -u -d "@$epoch" +%Y-%m-%d)
version=$("${cmd[@]}" --version) || { echo "manpage: $bin --version failed" >&2; exit 1; }
version=${version##* }
top=$("${cmd[@]}" --help) || { echo "manpage: $bin --help failed" >&2; exit 1; }
# The description is the paragraph after the Usage line; the commands are the
# indented first words of the "Commands:" block.
summary=$(printf '%s\n' "$top" | sed -n '3p')
mapfile -t commands < <(printf '%s\n' "$top" | sed -n '/^Commands:/,$p' | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ "${#commands[@]}" -gt 0 ] || { echo "manpage: no commands found in $bin --help" >&2; exit 1; }

# Text for roff: backslashes and minus signs escaped, a line starting with . or ' kept as text.
roff() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
# --help output verbatim, in a no-fill block; only the long Usage lines are wrapped
# (between options, continued with an indent) so the page fits an 80-column terminal.
verbatim() {
    printf '.nf\n'
    awk '/^Usage: / && length($0) > 72 {
            # one group per option: "[--flag <value>]", or a word outside brackets
            g = 0; n = split($0, w, " ")
            for (i = 1; i <= n; i++) {
                if (g == 0 || substr(w[i], 1, 1) == "[" || substr(grp[g], 1, 1) != "[" || grp[g] ~ /\]$/) grp[++g] = w[i]
                else grp[g] = grp[g] " " w[i]
            }
            line = ""
            for (i = 1; i <= g; i++) {
                if (line != "" && length(line) + 1 + length(grp[i]) > 72) { print line; line = "    " grp[i] }
                else line = (line == "") ? grp[i] : line " " grp[i]
            }
            print line; next
         }
         { print }' | roff
    printf '.fi\n'
}

cat <<ROFF
.TH DRONE\\-DISCORD 1 "$date" "drone\\-discord $version" "User Commands"
.SH NAME
drone\\-discord \\- Drone CI webhooks to Discord, one message per build
.SH SYNOPSIS
.B drone\\-discord
.RB [ \\-\\-version ]
.I command
.RI [ args ]
.SH DESCRIPTION
$(printf '%s\n' "$summary" | roff)
.PP
.B drone\\-discord serve
accepts Drone's signed global webhooks, stores each one durably before it answers
Drone, and posts one Discord message per build that it edits as the build runs.
The package runs it as the systemd service
.BR drone\\-discord.service ,
which is not enabled until it is configured: see
.IR /usr/share/doc/drone\\-discord/README.Debian .
.SH OPTIONS
$(printf '%s\n' "$top" | verbatim)
.SH COMMANDS
ROFF
for c in "${commands[@]}"; do
    help=$("${cmd[@]}" "$c" --help) || { echo "manpage: $bin $c --help failed" >&2; exit 1; }
    printf '.SS %s\n' "$(printf 'drone-discord %s' "$c" | roff)"
    printf '%s\n' "$help" | verbatim
done
cat <<'ROFF'
.SH ENVIRONMENT
Every setting of
.B serve
also comes from the environment (the name in parentheses in its help above);
under systemd, from
.IR /etc/drone\-discord/env .
Secrets come from systemd credentials, never from that file.
.SH FILES
.TP
.I /etc/drone\-discord/env
non\-secret settings (DISCORD_CHANNEL_ID, LISTEN_ADDR, ...), read by the unit
.TP
.I /etc/drone\-discord/webhook\-secret\fR, \fI/etc/drone\-discord/discord\-token
the secrets, mode 0600, handed to the service as systemd credentials
.TP
.I /var/lib/drone\-discord
the embedded store (with DynamicUser=yes, in /var/lib/private/drone\-discord)
.TP
.I /lib/systemd/system/drone\-discord.service\fR, \fIdrone\-discord.socket
the service, and the socket that keeps webhooks waiting while it restarts
.SH EXIT STATUS
0 success; 1 the operation failed (a check found a problem, an I/O or network error,
the store is unavailable); 2 a usage or configuration error.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.I /usr/share/doc/drone\-discord/README.md.gz
ROFF
