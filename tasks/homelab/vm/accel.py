"""Which accelerator QEMU gets for Lima's VMs on a Linux host, and why.

Lima always asks QEMU for KVM on Linux. Where ``/dev/kvm`` is missing, not
writable by the user, or a paravirtual KVM (PVM) on which stock guest kernels
hang silently at boot, the VMs must run under TCG instead: Lima honours a
``QEMU_SYSTEM_<ARCH>`` environment variable holding the QEMU command, so the
toolkit passes one that selects TCG to every limactl it starts (directly or
through Terraform). On the Mac (vz, or qemu with HVF) nothing changes.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from homelab.config.schema import HomelabConfig

KVM_DEVICE = Path("/dev/kvm")
SYS_MODULES = Path("/sys/module")
QEMU_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}


@dataclass(frozen=True)
class Accel:
    """The accelerator, the reason it was chosen, and the environment that selects it."""

    name: str
    why: str
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"QEMU acceleration: {self.name} ({self.why})"


def kvm_unusable(device: Path = KVM_DEVICE, modules: Path = SYS_MODULES) -> str | None:
    """Why KVM cannot run stock guests here, or None when it can."""
    if not device.exists():
        return f"no {device}"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"no read/write access to {device} (add your user to its group, usually kvm)"
    if (modules / "kvm_pvm").exists():
        return f"{device} is PVM, a paravirtual KVM on which stock guest kernels hang at boot"
    if not any((modules / name).exists() for name in ("kvm_intel", "kvm_amd")):
        return f"{device} is neither Intel nor AMD KVM"
    return None


def tcg_env(arch: str) -> tuple[tuple[str, str], ...]:
    """``QEMU_SYSTEM_<ARCH>``: the QEMU binary with TCG and the emulated CPU with every feature."""
    binary = f"qemu-system-{QEMU_ARCH[arch]}"
    command = f"{shutil.which(binary) or binary} -machine {'q35' if arch == 'x86_64' else 'virt'},accel=tcg -cpu max"
    return ((f"QEMU_SYSTEM_{QEMU_ARCH[arch].upper()}", command),)


def choose(cfg: HomelabConfig, platform: str = sys.platform, unusable: str | None = None) -> Accel:
    """The accelerator for this config on this host (``unusable``: see ``kvm_unusable``)."""
    if cfg.lima.vm_type == "vz":
        return Accel("vz", "Apple's Virtualization framework")
    if platform == "darwin":
        return Accel("hvf", "QEMU on macOS")
    if cfg.lima.accel == "tcg":
        return Accel("tcg", "lima.accel: tcg; VMs boot several times slower than with KVM", tcg_env(cfg.lima.arch))
    if cfg.lima.accel == "kvm":
        return Accel("kvm", "lima.accel: kvm")
    if unusable is None:
        return Accel("kvm", f"{KVM_DEVICE} is usable")
    return Accel("tcg", f"{unusable}; VMs boot several times slower than with KVM", tcg_env(cfg.lima.arch))


def detect(cfg: HomelabConfig) -> Accel:
    """``choose`` with what this host reports."""
    needs_probe = cfg.lima.vm_type == "qemu" and sys.platform != "darwin" and cfg.lima.accel == "auto"
    return choose(cfg, unusable=kvm_unusable() if needs_probe else None)
