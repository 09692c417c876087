"""Finding the external programs the toolkit drives, with one clear message if absent.

Binaries built by ``scripts/get-binaries.sh`` live in the user cache; they are
found there without the user having to edit PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from homelab.core.errors import ToolMissing
from homelab.core.paths import cache_dir

INSTALL_HINTS: dict[str, str] = {
    "limactl": "on macOS: brew install lima; elsewhere: scripts/get-binaries.sh lima",
    "terraform": "install Terraform >= 1.4, or set terraform.binary: tofu and run scripts/get-binaries.sh tofu",
    "tofu": "brew install opentofu, or scripts/get-binaries.sh tofu",
    "kubectl": "brew install kubectl, or scripts/get-binaries.sh sandbox",
    "kwokctl": "scripts/get-binaries.sh sandbox",
    "kube-apiserver": "scripts/get-binaries.sh sandbox",
    "etcd": "scripts/get-binaries.sh sandbox",
    "kubeseal": "brew install kubeseal, or scripts/get-binaries.sh kubeseal",
    "restic": "brew install restic, apt-get install restic, or scripts/get-binaries.sh restic",
    "ssh-keygen": "install OpenSSH (apt-get install openssh-client)",
    "sqlite3": "apt-get install sqlite3 (macOS ships it)",
    "crontab": "apt-get install cron",
    "launchctl": "launchctl is part of macOS (on another host, set HOMELAB_SCHEDULER=cron)",
    "k3d": "brew install k3d, or see https://k3d.io (needs a Docker engine)",
    "argocd-repo-server": "scripts/get-binaries.sh controllers",
    "argocd-application-controller": "scripts/get-binaries.sh controllers",
    "sealed-secrets-controller": "scripts/get-binaries.sh controllers",
    "metallb-controller": "scripts/get-binaries.sh controllers",
    "redis-server": "apt-get install redis-server (brew install redis)",
    "git": "apt-get install git",
    "cloudflared": "brew install cloudflared, then cloudflared tunnel login (DNS routes need its cert.pem)",
    "unshare": "apt-get install util-linux (the sandbox's Sealed Secrets controller needs Linux mount namespaces)",
}


def cached_bin_dir() -> Path:
    return cache_dir() / "bin"


def search_path() -> str:
    """PATH with the toolkit's binary cache appended (PATH entries win)."""
    return os.pathsep.join([os.environ.get("PATH", ""), str(cached_bin_dir())])


def find(tool: str) -> str | None:
    return shutil.which(tool, path=search_path())


def require(tool: str) -> str:
    """The absolute path of ``tool``, or ``ToolMissing`` saying how to install it."""
    found = find(tool)
    if found is None:
        raise ToolMissing(tool, INSTALL_HINTS.get(tool, f"install {tool} and put it on PATH"))
    return found


VERSION_ARGS = {"kubectl": ("version", "--client"), "restic": ("version",), "kubeseal": ("--version",)}


def version(tool: str, *args: str) -> str:
    """First line of the tool's version output; empty when absent."""
    path = find(tool)
    if path is None:
        return ""
    argv = args or VERSION_ARGS.get(tool, ("--version",))
    try:
        done = subprocess.run([path, *argv], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""
