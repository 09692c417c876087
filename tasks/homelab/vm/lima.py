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
from homelab.core import reading
from homelab.core.errors import HomelabError
from homelab.core.paths import project_root, resolve_in_project
from homelab.storage import longhorn

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
        key = reading.read_text(path, "SSH public key", 16 * 1024).strip()
    except reading.ReadProblem as err:
        if path.exists():
            raise HomelabError(f"ssh.public_key: {err}") from None
        private = cfg.ssh.private_key
        raise HomelabError(
            f"ssh.public_key {path} does not exist; create the key pair with: ssh-keygen -t ed25519 -N '' -f {private}"
        ) from None
    if not key.startswith(("ssh-", "ecdsa-")):
        raise HomelabError(f"ssh.public_key {path} does not look like an OpenSSH public key")
    return key


# Written by the provisioning script as its last step, on tmpfs: present once this boot's provisioning
# is done. vm.apply waits for it (terraform/main.tf), so no later layer meets a node without its address.
PROVISIONED = "/run/homelab-provisioned"
# Lima gives every boot a new cloud-init instance-id, and cloud-init's ssh module deletes and
# regenerates the host keys on each new instance: every restart would change the keys the toolkit
# pinned, and SSH would refuse the node. Written at the first boot, this keeps them from then on.
KEEP_HOST_KEYS = "/etc/cloud/cloud.cfg.d/90-homelab-keep-host-keys.cfg"
USER_V2_INTERFACE = "eth0"  # Lima makes the first user-v2 network the VM's first NIC, in place of slirp
API_PORT = 6443  # K3S's API server
GUEST_IMAGE_FILES = ("disk.qcow2", "vmlinuz", "initrd.img")


def node_interface(cfg: HomelabConfig) -> str:
    """The guest interface on the node network: the one K3S and flannel must use."""
    return USER_V2_INTERFACE if cfg.lima.network == "user-v2" else cfg.lima.interface


def node_address_config(cfg: HomelabConfig, node: Node) -> dict[str, Any]:
    """The netplan entry that gives the node its configured address.

    On socket_vmnet the address is static, with the default route and DNS of the
    node network. On user-v2 Lima's DHCP lease stays (Lima forwards SSH to the
    leased address) and the configured address is added next to it.
    """
    address = f"{node.ip}/{cfg.network.subnet.split('/')[1]}"
    if cfg.lima.network == "user-v2":
        return {"addresses": [address]}
    return {
        "dhcp4": False,
        "addresses": [address],
        "routes": [{"to": "default", "via": cfg.network.gateway, "metric": 50}],
        "nameservers": {"addresses": list(cfg.network.dns)},
    }


def provision_script(cfg: HomelabConfig, node: Node, public_key: str) -> str:
    """First-boot script: login user with key-only SSH and passwordless sudo, the node's address."""
    user = shlex.quote(cfg.ssh.user)
    netplan = yaml.safe_dump(
        {"network": {"version": 2, "ethernets": {node_interface(cfg): node_address_config(cfg, node)}}},
        sort_keys=True,
    )
    return "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            f"echo 'ssh_deletekeys: false' > {KEEP_HOST_KEYS}",
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
            *longhorn.provision_lines(cfg),  # open-iscsi, nfs-common, multipath kept off (options.longhorn)
            f"touch {PROVISIONED}",
            "",
        ]
    )


def guest_image_dir(cfg: HomelabConfig) -> Path:
    """The built guest image's directory, checked: a clear error instead of Lima's, later, per VM."""
    assert cfg.lima.guest_image is not None
    directory = resolve_in_project(cfg.lima.guest_image)
    missing = [name for name in GUEST_IMAGE_FILES if not (directory / name).is_file()]
    if missing:
        raise HomelabError(
            f"lima.guest_image {directory} lacks {', '.join(missing)}: build it with scripts/build-guest-image.sh "
            "(it prints the directory to set)"
        )
    return directory


def images(cfg: HomelabConfig) -> list[dict[str, Any]]:
    """Lima's image list: the configured cloud image, or the built image with its kernel booted directly."""
    arch = cfg.lima.arch
    if cfg.lima.guest_image is None:
        return [{"location": cfg.lima.images[arch], "arch": arch}]
    directory = guest_image_dir(cfg)
    return [
        {
            "location": str(directory / "disk.qcow2"),
            "arch": arch,
            "kernel": {"location": str(directory / "vmlinuz"), "cmdline": "root=LABEL=homelab-root ro console=ttyS0"},
            "initrd": {"location": str(directory / "initrd.img")},
        }
    ]


def networks(cfg: HomelabConfig, node: Node) -> list[dict[str, Any]]:
    if cfg.lima.network == "user-v2":
        return [{"lima": "user-v2"}]
    return [{"socket": cfg.lima.socket, "macAddress": mac_address(node.name), "interface": cfg.lima.interface}]


def render_node(cfg: HomelabConfig, node: Node, public_key: str, base: dict[str, Any]) -> dict[str, Any]:
    template = dict(base)
    template.update(
        {
            "vmType": cfg.lima.vm_type,
            "arch": cfg.lima.arch,
            "images": images(cfg),
            "cpus": node.cpus,
            "memory": node.memory,
            "disk": node.disk,
            "networks": networks(cfg, node),
            "provision": [{"mode": "system", "script": provision_script(cfg, node, public_key)}],
        }
    )
    if cfg.lima.guest_image is not None:
        template["firmware"] = {"legacyBIOS": True}  # the built image has no EFI partition: SeaBIOS boots its kernel
    if cfg.lima.network == "user-v2":
        # The host reaches user-v2 VMs only through Lima's forwards: SSH, and the API on the server.
        template["ssh"] = {**template.get("ssh", {}), "localPort": node.ssh_port}
        if node.role == "server":
            api = {"guestPort": API_PORT, "hostIP": "127.0.0.1", "hostPort": API_PORT}
            template["portForwards"] = [api, *template.get("portForwards", [])]
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
