#!/usr/bin/env bash
# Set up a fresh machine for the toolkit: system packages, the Python venv with
# the toolkit installed (editable), and the pinned binaries (built once, cached).
# The binaries include the controllers the sandbox runs (Argo CD, Sealed Secrets, MetalLB):
# `inv up --target sandbox` starts them, so a cold first run builds them too.
#
# Linux (Debian/Ubuntu): installs what is missing with apt-get (as root or via sudo).
# macOS: only the venv; then scripts/macos-check.sh names what is missing (Homebrew's lima,
# terraform or opentofu, kubectl, kubeseal, restic; socket_vmnet under /opt run by launchd).
# HOMELAB_SANDBOX=1 also builds the sandbox's binaries there.
# HOMELAB_GUEST_IMAGE=1 (Linux, root) also builds the guest image the real-VM tests boot, beside
# the binaries (CI sets it; otherwise nox's integration session builds it when it first runs).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# redis-server and git: Argo CD's cache and the git daemon it syncs from on the sandbox.
# qemu-system-x86, qemu-utils, debootstrap: Lima VMs on a Linux host and the guest image they boot
# (scripts/build-guest-image.sh); socat: the real-VM tests reach the sandbox API from their namespace.
APT_PACKAGES=(openssh-server openssh-client sudo sqlite3 cron age iproute2 util-linux procps git redis-server ca-certificates
    qemu-system-x86 qemu-utils debootstrap socat)

install_system_packages() {
    command -v apt-get >/dev/null 2>&1 || { say "no apt-get: skipping system packages"; return; }
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && { say "system packages: present"; return; }
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    say "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
    command -v python3 >/dev/null 2>&1 || die "python3 (>= 3.11) is required"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 >= 3.11 is required"
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,lint]'
    say "python: .venv ready ($(.venv/bin/python --version))"
}

build_binaries() { # build_binaries TARGET...: the pinned binaries from Go modules (cached by version)
    if command -v go >/dev/null 2>&1 || [[ -x /usr/local/go/bin/go ]]; then
        PATH="$PATH:/usr/local/go/bin" bash scripts/get-binaries.sh "$@" >/dev/null
    else
        say "Go is not installed: the sandbox binaries cannot be built (install Go >= 1.25 and re-run)"
    fi
}

# Tab completion of task names and flags: invoke prints the script for the shell; one line in the
# shell's rc file loads it (for `inv`; `homelab --print-completion-script` does the same for `homelab`).
say_completion() {
    # The script calls `invoke --complete`: the venv's bin directory must be on PATH (source .venv/bin/activate).
    case "$(basename "${SHELL:-bash}")" in
    zsh) say "tab completion: add to ~/.zshrc: source <(inv --print-completion-script zsh)" ;;
    fish) say "tab completion: add to ~/.config/fish/config.fish: inv --print-completion-script fish | source" ;;
    *) say "tab completion: add to ~/.bashrc: source <(inv --print-completion-script bash)" ;;
    esac
}

if [[ $(uname -s) == Darwin ]]; then
    # The Mac runs the real homelab with Homebrew's tools: nothing to build unless the sandbox is wanted
    # (HOMELAB_SANDBOX=1), and never limactl (a limactl built here is unsigned: VZ refuses it).
    install_python
    if [[ ${HOMELAB_SANDBOX:-0} == 1 ]]; then
        build_binaries sandbox crds controllers restic kubeseal amtool
    fi
    bash scripts/macos-check.sh || die "the Mac is not ready yet: see above"
    say_completion
    say "done. Next: .venv/bin/inv up"
    exit 0
fi
# build_binaries_and_guest_image: the binaries and, beside them (HOMELAB_GUEST_IMAGE=1, as root),
# the guest image the real-VM tests boot: debootstrap mostly waits on the mirror, so it overlaps well.
build_binaries_and_guest_image() {
    if [[ ${HOMELAB_GUEST_IMAGE:-0} != 1 ]]; then
        build_binaries all
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "HOMELAB_GUEST_IMAGE=1: building the guest image needs root (debootstrap)"
    build_binaries all &
    local binaries=$!
    (build_binaries lima && bash scripts/build-guest-image.sh >/dev/null) &
    local image=$! failed=0
    wait "$binaries" || failed=1
    wait "$image" || failed=1
    [[ $failed -eq 0 ]] || die "a build failed (see above); re-run to finish: finished builds are kept"
}

install_system_packages
install_python
build_binaries_and_guest_image
say_completion
say "done. Next: .venv/bin/inv up --target sandbox"
