#!/usr/bin/env bash
# What the Mac needs before `inv up --target lima`, checked; each missing part with how to get it.
#
# Why a check and not an installer: on the Mac everything comes from Homebrew or a signed release,
# and socket_vmnet must be installed as root under /opt and run by launchd (Lima's network docs:
# a socket_vmnet under Homebrew's prefix can be replaced by any admin user, and it runs as root).
# Nothing is built here: a limactl built from Go modules is unsigned and cannot use
# Virtualization.framework, so the Mac always uses Homebrew's.
#
# Usage: scripts/macos-check.sh [GATEWAY DHCP_END]   (defaults: the reference config's)
# LM_STUDIO=host:port (lm_studio.host:port) and CLOUDFLARE_TUNNEL=0 (no tunnel: cloudflared not needed).
# Exit 0 when everything is in place, 1 otherwise (after naming every missing part).
set -uo pipefail

GATEWAY="${1:-192.168.105.1}"
DHCP_END="${2:-192.168.105.9}"
SOCKET_VMNET="${SOCKET_VMNET:-/opt/socket_vmnet/bin/socket_vmnet}"
PLIST="${SOCKET_VMNET_PLIST:-/Library/LaunchDaemons/io.github.lima-vm.socket_vmnet.plist}"
SOCKET="${SOCKET_VMNET_SOCKET:-/var/run/socket_vmnet}"

missing=0
say() { printf '[macos] %s\n' "$*" >&2; }
need() { # need TOOL HOW...: say whether TOOL is on PATH, and how to install it when not
    local tool=$1
    shift
    if command -v "$tool" >/dev/null 2>&1; then
        say "ok: $tool ($(command -v "$tool"))"
    else
        say "missing: $tool; install it with: $*"
        missing=1
    fi
}

need brew '/bin/bash -c "$(curl -fsSL https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh)"'
need limactl 'brew install lima'
if command -v terraform >/dev/null 2>&1 || command -v tofu >/dev/null 2>&1; then
    say "ok: $(command -v terraform || command -v tofu)"
else
    say "missing: terraform or tofu; install one with: brew install opentofu (then set terraform.binary: tofu), or brew install hashicorp/tap/terraform"
    missing=1
fi
need kubectl 'brew install kubernetes-cli'
need kubeseal 'brew install kubeseal'
need restic 'brew install restic'

if [[ -x "$SOCKET_VMNET" ]]; then
    say "ok: socket_vmnet ($SOCKET_VMNET)"
else
    say "missing: $SOCKET_VMNET; install the release as root under /opt (not Homebrew's):"
    say "  VERSION=\$(curl -fsSL https://api.github.com/repos/lima-vm/socket_vmnet/releases/latest | sed -n 's/.*\"tag_name\": \"v\\(.*\\)\".*/\\1/p')"
    say "  curl -fLO https://github.com/lima-vm/socket_vmnet/releases/download/v\$VERSION/socket_vmnet-\$VERSION-\$(uname -m).tar.gz"
    say "  sudo tar Cxzvf / socket_vmnet-\$VERSION-\$(uname -m).tar.gz opt/socket_vmnet"
    missing=1
fi

if [[ -f "$PLIST" ]]; then
    if grep -q -- "--vmnet-dhcp-end=$DHCP_END" "$PLIST" && grep -q -- "--vmnet-gateway=$GATEWAY" "$PLIST"; then
        say "ok: launchd runs socket_vmnet with --vmnet-gateway=$GATEWAY --vmnet-dhcp-end=$DHCP_END ($PLIST)"
    else
        say "wrong: $PLIST must pass --vmnet-gateway=$GATEWAY --vmnet-dhcp-end=$DHCP_END (DHCP must not lease node or MetalLB addresses);"
        say "  add them to ProgramArguments, then: sudo launchctl bootout system $PLIST; sudo launchctl bootstrap system $PLIST"
        missing=1
    fi
else
    say "missing: the launchd service for socket_vmnet; write $PLIST running"
    say "  $SOCKET_VMNET --vmnet-gateway=$GATEWAY --vmnet-dhcp-end=$DHCP_END $SOCKET"
    say "  (socket_vmnet's launchd/io.github.lima-vm.socket_vmnet.plist with those arguments), then:"
    say "  sudo launchctl bootstrap system $PLIST"
    missing=1
fi

# The Mac as a server (pmset(1), fdesetup(8)): never asleep, on again after a power cut. Settable with
# `inv host.prepare --yes`; FileVault and the update policy are said, never changed.
LM_STUDIO="${LM_STUDIO:-192.168.105.1:1234}"
TUNNEL="${CLOUDFLARE_TUNNEL:-1}"
if command -v pmset >/dev/null 2>&1; then
    power="$(pmset -g 2>/dev/null)"
    if grep -qE '^ *sleep +0( |$)' <<<"$power"; then
        say "ok: system sleep is off"
    else
        say "wrong: system sleep is on, and a sleeping Mac pauses every VM; fix: sudo pmset -a sleep 0 (or inv host.prepare --yes)"
        missing=1
    fi
    if grep -qE '^ *autorestart +1( |$)' <<<"$power"; then
        say "ok: the Mac powers on again after a power failure"
    elif grep -qE '^ *autorestart ' <<<"$power"; then
        say "wrong: the Mac stays off after a power failure; fix: sudo pmset -a autorestart 1 (or inv host.prepare --yes)"
        missing=1
    else
        say "note: pmset -g does not list autorestart here; set 'Start up automatically after a power failure' in Energy settings"
    fi
else
    say "note: pmset not found (not macOS?): sleep and restart after power failure not checked"
fi
if command -v fdesetup >/dev/null 2>&1 && fdesetup status 2>/dev/null | grep -q 'FileVault is On'; then
    say "note: FileVault is on: after a power cut the Mac waits at the unlock screen and no VM starts until"
    say "  someone types a password; for a planned restart use: sudo fdesetup authrestart"
fi
if command -v defaults >/dev/null 2>&1; then
    if [[ "$(defaults read /Library/Preferences/com.apple.SoftwareUpdate AutomaticallyInstallMacOSUpdates 2>/dev/null)" == 1 ]]; then
        say "note: macOS installs updates and restarts by itself; inv host.autostart brings the homelab back after"
    fi
fi
if [[ "$TUNNEL" == 1 ]]; then
    need cloudflared 'brew install cloudflared'
fi
if command -v nc >/dev/null 2>&1 && nc -z -G 2 "${LM_STUDIO%:*}" "${LM_STUDIO##*:}" >/dev/null 2>&1; then
    say "ok: LM Studio answers on $LM_STUDIO"
else
    say "note: nothing answers on $LM_STUDIO: in LM Studio start the server with 'Serve on Local Network'"
fi

if [[ $missing -eq 0 ]]; then
    say "the Mac is ready for inv up --target lima"
else
    say "install what is missing above, then run scripts/setup.sh again"
fi
exit "$missing"
