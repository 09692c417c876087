"""The lima target on a Linux host: accelerator choice, user-v2 rendering, the built image, config rules."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, loopback_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.errors import ConfigError, HomelabError
from homelab.core.session import ssh_host
from homelab.k3s import plan as k3s
from homelab.vm import accel, lima
from homelab.vm import plan as vms

KEY = "ssh-ed25519 AAAAC3Nza test"


def linux_data(image: Path | None = None) -> dict[str, Any]:
    """The loopback config moved onto Lima's user-v2 network, as a Linux host runs it."""
    data = copy.deepcopy(loopback_data())
    data["target"] = "lima"
    data["network"] = {"subnet": "192.168.104.0/24", "gateway": "192.168.104.2", "dns": ["192.168.104.2"]}
    data["network"]["dhcp_end"] = None  # Lima's user-v2 leases from its own range: not socket_vmnet's
    data["host"] = {"kind": "linux", "ip": "192.168.104.2"}
    data["lima"] = {"vm_type": "qemu", "arch": "x86_64", "network": "user-v2"}
    if image is not None:
        data["lima"]["guest_image"] = str(image)
    for i, node in enumerate(data["nodes"]):
        node.update(ip=f"192.168.104.{210 + i}", ssh_port=60022 + i)
    data["metallb"] = {"pool": {"start": "192.168.104.150", "end": "192.168.104.160"}}
    data["ingress"] = {"load_balancer_ip": "192.168.104.150"}
    data["lan_dns"] = {"enabled": False}  # user-v2's VMs are out of the LAN's reach
    data["network"]["lan"] = "127.0.1.0/24"  # the host's home LAN, for home-assistant's lan egress
    return data


def load(data: dict[str, Any]) -> HomelabConfig:
    return loader.validate(data)


def problems(data: dict[str, Any], prefix: str) -> list[str]:
    try:
        loader.validate(data)
    except ConfigError as err:
        return [str(p) for p in err.problems if p.path.startswith(prefix)]
    return []


@pytest.fixture
def image(tmp_path: Path) -> Path:
    for name in lima.GUEST_IMAGE_FILES:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_user_v2_nodes_keep_lima_dhcp_add_their_address_and_forward_ssh_and_the_api(image: Path) -> None:
    cfg = load(linux_data(image))
    rendered = {name: yaml.safe_load(text) for name, text in lima.render_all(cfg, KEY).items()}
    server, worker = rendered["k3s-server"], rendered["k3s-worker-1"]
    assert server["networks"] == [{"lima": "user-v2"}]
    assert server["ssh"]["localPort"] == 60022 and worker["ssh"]["localPort"] == 60023
    api = {"guestPort": 6443, "hostIP": "127.0.0.1", "hostPort": 6443}
    assert server["portForwards"][0] == api and api not in worker["portForwards"]
    assert server["portForwards"][-1] == {"guestPortRange": [1, 65535], "ignore": True}  # the rest stays closed
    script = server["provision"][0]["script"]
    netplan = yaml.safe_load(script.split("<<'NETPLAN'\n")[1].split("\nNETPLAN")[0])
    assert netplan["network"]["ethernets"] == {"eth0": {"addresses": ["192.168.104.210/24"]}}
    assert script.rstrip().endswith(f"touch {lima.PROVISIONED}")
    assert f"echo 'ssh_deletekeys: false' > {lima.KEEP_HOST_KEYS}" in script.splitlines()[:3]


def test_socket_vmnet_nodes_get_a_static_address_with_route_and_dns() -> None:
    cfg = load(loopback_data())
    server = yaml.safe_load(lima.render_all(cfg, KEY)["k3s-server"])
    assert "portForwards" in server and all("guestPort" not in rule for rule in server["portForwards"])
    assert lima.node_address_config(cfg, cfg.server) == {
        "dhcp4": False,
        "addresses": ["127.0.0.11/24"],
        "routes": [{"to": "default", "via": "127.0.0.1", "metric": 50}],
        "nameservers": {"addresses": ["127.0.0.1"]},
    }


def test_the_built_image_boots_its_own_kernel_under_seabios(image: Path) -> None:
    cfg = load(linux_data(image))
    server = yaml.safe_load(lima.render_all(cfg, KEY)["k3s-server"])
    [entry] = server["images"]
    assert entry["location"] == str(image / "disk.qcow2")
    assert entry["kernel"]["location"] == str(image / "vmlinuz")
    assert "root=LABEL=homelab-root" in entry["kernel"]["cmdline"]
    assert entry["initrd"] == {"location": str(image / "initrd.img")}
    assert server["firmware"] == {"legacyBIOS": True}


def test_a_guest_image_directory_missing_a_file_names_the_key_and_the_fix(image: Path) -> None:
    (image / "vmlinuz").unlink()
    cfg = load(linux_data(image))
    with pytest.raises(HomelabError) as err:
        lima.render_all(cfg, KEY)
    assert "lima.guest_image" in str(err.value) and "lacks vmlinuz" in str(err.value)
    assert "scripts/build-guest-image.sh" in str(err.value)


def test_the_build_script_labels_the_root_file_system_the_kernel_line_names() -> None:
    script = (REPO / "scripts" / "build-guest-image.sh").read_text()
    assert "mkfs.ext4 -q -L homelab-root -d" in script
    for name in lima.GUEST_IMAGE_FILES:
        assert f'"$OUT/{name}"' in script


def test_k3s_uses_eth0_and_the_forwarded_api_on_user_v2_and_lima0_on_socket_vmnet(image: Path) -> None:
    cfg = load(linux_data(image))
    assert yaml.safe_load(k3s.node_config(cfg, cfg.server))["flannel-iface"] == "eth0"
    assert k3s.api_endpoint(cfg) == "https://127.0.0.1:6443"
    assert ssh_host(cfg, cfg.server) == "127.0.0.1"
    assert vms.inventory(cfg, {"k3s-server": {}})["nodes"]["k3s-server"]["ssh_host"] == "127.0.0.1"
    mac = load(loopback_data())
    assert yaml.safe_load(k3s.node_config(mac, mac.server))["flannel-iface"] == "lima0"
    assert k3s.api_endpoint(mac) == "https://127.0.0.11:6443"
    assert ssh_host(mac, mac.server) == "127.0.0.11"


def test_user_v2_rules_name_the_field_and_the_fix() -> None:
    data = linux_data()
    data["network"]["subnet"] = "192.168.105.0/24"
    assert problems(data, "network.subnet") == [
        "network.subnet: lima.network user-v2 is Lima's 192.168.104.0/24: set network.subnet to it"
    ]
    data = linux_data()
    del data["nodes"][1]["ssh_port"]
    data["nodes"][2]["ssh_port"] = 60022
    assert problems(data, "nodes") == [
        "nodes[0].ssh_port: 60022 is used by more than one node",
        "nodes[1].ssh_port: required with lima.network user-v2 (Lima forwards it on 127.0.0.1)",
        "nodes[2].ssh_port: 60022 is used by more than one node",
    ]
    data = linux_data()
    data["lima"]["vm_type"] = "vz"
    assert problems(data, "lima") == ["lima.network: user-v2 is for Linux hosts: set lima.vm_type: qemu"]


def test_a_guest_image_needs_qemu_and_x86_64(image: Path) -> None:
    data = linux_data(image)
    data["lima"].update(arch="aarch64", vm_type="vz", network="socket_vmnet")
    assert problems(data, "lima.guest_image") == [
        "lima.guest_image: the built guest image is x86_64: set lima.arch: x86_64",
        "lima.guest_image: boots only with lima.vm_type: qemu",
    ]


def test_kvm_is_used_only_when_it_is_a_real_intel_or_amd_kvm(tmp_path: Path) -> None:
    device, modules = tmp_path / "kvm", tmp_path / "modules"
    modules.mkdir()
    assert accel.kvm_unusable(device, modules) == f"no {device}"
    device.write_text("")
    assert "neither Intel nor AMD" in (accel.kvm_unusable(device, modules) or "")
    (modules / "kvm_pvm").mkdir()
    assert "PVM" in (accel.kvm_unusable(device, modules) or "")
    (modules / "kvm_pvm").rmdir()
    (modules / "kvm_intel").mkdir()
    assert accel.kvm_unusable(device, modules) is None


def test_tcg_is_selected_through_lima_qemu_override_and_said_why(image: Path) -> None:
    cfg = load(linux_data(image))
    chosen = accel.choose(cfg, platform="linux", unusable="no /dev/kvm")
    [(name, command)] = chosen.env
    assert name == "QEMU_SYSTEM_X86_64"
    assert re.fullmatch(r"\S*qemu-system-x86_64 -machine q35,accel=tcg -cpu max", command)
    assert chosen.describe().startswith("QEMU acceleration: tcg (no /dev/kvm;")
    assert accel.choose(cfg, platform="linux", unusable=None) == accel.Accel("kvm", "/dev/kvm is usable")
    forced = load(linux_data(image) | {"lima": {**linux_data(image)["lima"], "accel": "tcg"}})
    assert accel.choose(forced, platform="linux", unusable=None).name == "tcg"
    assert accel.choose(cfg, platform="darwin", unusable="no /dev/kvm").env == ()
    assert accel.choose(load(loopback_data()), platform="linux", unusable="no /dev/kvm").name == "vz"


def test_every_limactl_start_carries_the_accelerator(image: Path) -> None:
    cfg = load(linux_data(image))
    env = accel.choose(cfg, platform="linux", unusable="no /dev/kvm").env
    plan = vms.power_plan(
        cfg.nodes, {n.name: vms.VmState(n.name, "Stopped") for n in cfg.nodes}, "limactl", "Running", env
    )
    assert [a.env for a in plan.actions] == [env] * 3


def test_terraform_waits_for_the_marker_the_provisioning_script_writes() -> None:
    module = (REPO / "terraform" / "main.tf").read_text()
    assert module.count(f'shell "$NAME" test -f {lima.PROVISIONED}') == 1  # in local.wait_provisioned
    assert module.count("      ${local.wait_provisioned}\n    EOT") == 2  # the create and the resize step


def test_socket_vmnet_dhcp_range_must_stay_below_nodes_and_pool() -> None:
    data = copy.deepcopy(loopback_data())
    data["network"]["dhcp_end"] = "127.0.0.60"
    assert problems(data, "network.dhcp_end") == [
        "network.dhcp_end: DHCP would hand out nodes[0].ip 127.0.0.11, nodes[1].ip 127.0.0.12, nodes[2].ip 127.0.0.13, "
        "metallb.pool 127.0.0.50-127.0.0.99: set it below them (the range starts after the gateway)"
    ]
    data["network"]["dhcp_end"] = "10.0.0.9"
    assert problems(data, "network.dhcp_end") == [
        "network.dhcp_end: '10.0.0.9' is not a host address in network.subnet 127.0.0.0/24"
    ]
    data["network"]["dhcp_end"] = "127.0.0.1"
    assert problems(data, "network.dhcp_end") == [
        "network.dhcp_end: '127.0.0.1' is not after network.gateway 127.0.0.1"
    ]
    data["network"]["dhcp_end"] = "127.0.0.9"
    assert problems(data, "network") == []
    assert loader.validate(loopback_data()).network.dhcp_end == "127.0.0.9"


def test_the_linux_host_example_overlay_validates_over_the_reference_and_renders(image: Path) -> None:
    from homelab.config.loader import Layer, merge_layers

    reference = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "examples" / "linux-host.local.yaml").read_text())
    overlay["lima"]["guest_image"] = str(image)
    merged, _ = merge_layers([Layer("reference", reference), Layer("local", overlay)])
    cfg = loader.validate(merged)
    rendered = lima.render_all(cfg, KEY)
    assert sorted(rendered) == ["k3s-server", "k3s-worker-1", "k3s-worker-2"]
    assert k3s.api_endpoint(cfg) == "https://127.0.0.1:6443"
