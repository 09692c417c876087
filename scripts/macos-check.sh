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

if [[ $missing -eq 0 ]]; then
    say "the Mac is ready for inv up --target lima"
else
    say "install what is missing above, then run scripts/setup.sh again"
fi
exit "$missing"
