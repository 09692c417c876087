"""Render one Lima template per VM node from the config.

The shared parts live in ``lima/base.yaml``; this module adds what differs per
node. Output is deterministic (same config, same bytes), so its hash tells
Terraform whether a VM's spec changed and must be replaced.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

import yaml

from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import HomelabError
from homelab.core.paths import project_root

BASE_TEMPLATE = Path("lima") / "base.yaml"


def lima_nodes(cfg: HomelabConfig) -> list[Node]:
    return [n for n in cfg.nodes if n.provider == "lima"]


def mac_address(name: str) -> str:
    """A stable, locally administered MAC per VM name (DHCP reservations stay valid)."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:55:55:" + ":".join(f"{b:02x}" for b in digest[:3])


def read_public_key(cfg: HomelabConfig) -> str:
    path = Path(cfg.ssh.public_key).expanduser()
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        private = cfg.ssh.private_key
        raise HomelabError(
            f"ssh.public_key {path} does not exist; create the key pair with: ssh-keygen -t ed25519 -N '' -f {private}"
        ) from None
    if not key.startswith(("ssh-", "ecdsa-")):
        raise HomelabError(f"ssh.public_key {path} does not look like an OpenSSH public key")
    return key


def provision_script(cfg: HomelabConfig, node: Node, public_key: str) -> str:
    """First-boot script: login user with key-only SSH and passwordless sudo, static address."""
    prefix = cfg.network.subnet.split("/")[1]
    user = shlex.quote(cfg.ssh.user)
    netplan = yaml.safe_dump(
        {
            "network": {
                "version": 2,
                "ethernets": {
                    cfg.lima.interface: {
                        "dhcp4": False,
                        "addresses": [f"{node.ip}/{prefix}"],
                        "routes": [{"to": "default", "via": cfg.network.gateway, "metric": 50}],
                        "nameservers": {"addresses": list(cfg.network.dns)},
                    }
                },
            }
        },
        sort_keys=True,
    )
    return "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            f"hostnamectl set-hostname {shlex.quote(node.name)}",
            f"id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}",
            f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh",
            f"echo {shlex.quote(public_key)} > /home/{user}/.ssh/authorized_keys",
            f"chown {user}:{user} /home/{user}/.ssh/authorized_keys && chmod 0600 /home/{user}/.ssh/authorized_keys",
            f"echo {shlex.quote(cfg.ssh.user + ' ALL=(ALL) NOPASSWD:ALL')} > /etc/sudoers.d/90-homelab",
            "chmod 0440 /etc/sudoers.d/90-homelab",
            "cat > /etc/netplan/60-homelab.yaml <<'NETPLAN'",
            netplan.rstrip(),
            "NETPLAN",
            "chmod 0600 /etc/netplan/60-homelab.yaml && netplan apply",
            "",
        ]
    )


def render_node(cfg: HomelabConfig, node: Node, public_key: str, base: dict[str, Any]) -> dict[str, Any]:
    template = dict(base)
    template.update(
        {
            "vmType": cfg.lima.vm_type,
            "arch": cfg.lima.arch,
            "images": [{"location": cfg.lima.images[cfg.lima.arch], "arch": cfg.lima.arch}],
            "cpus": node.cpus,
            "memory": node.memory,
            "disk": node.disk,
            "networks": [
                {"socket": cfg.lima.socket, "macAddress": mac_address(node.name), "interface": cfg.lima.interface}
            ],
            "provision": [{"mode": "system", "script": provision_script(cfg, node, public_key)}],
        }
    )
    return template


def render_all(cfg: HomelabConfig, public_key: str) -> dict[str, str]:
    """YAML text of every Lima node's template, keyed by node name."""
    base = yaml.safe_load((project_root() / BASE_TEMPLATE).read_text()) or {}
    header = "# Rendered by `inv vm.render` from config/homelab.yaml and lima/base.yaml; do not edit.\n"
    return {
        node.name: header + yaml.safe_dump(render_node(cfg, node, public_key, base), sort_keys=True)
        for node in lima_nodes(cfg)
    }


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SIZE_FIELDS = ("cpus", "memory", "disk")


def identity_hash(text: str) -> str:
    """The hash of what only a new VM can change (image, arch, network, provisioning): sizes left out.

    cpus, memory and disk growth are changed in place with ``limactl edit``, so a
    change of size must not replace the VM (and lose its disk).
    """
    template = yaml.safe_load(text) or {}
    return spec_hash(yaml.safe_dump({k: v for k, v in template.items() if k not in SIZE_FIELDS}, sort_keys=True))
