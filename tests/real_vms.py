"""Real Lima VMs for the tests: QEMU under TCG, the built Debian guest image, a private network.

limactl refuses root and the tests run as root, so limactl runs as an unprivileged
user through a wrapper placed first on PATH (the toolkit and Terraform call it like
the real one). Everything limactl reads (its binary and guest agent, the guest image,
the rendered templates) lives in a world-readable directory made for the run.

The VMs use Lima's user-mode networks, whose traffic leaves through the processes
that run them: every toolkit command therefore runs inside a network namespace made
for the run, loopback only, so a guest can reach nothing but what the test starts.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers import REPO

USER = "homelab-vmtest"
CACHE = Path(os.environ.get("HOMELAB_CACHE_DIR", Path.home() / ".cache" / "homelab"))


@dataclass
class VmHost:
    """Where one run's VMs live, and how to run commands next to them."""

    base: Path
    netns: str
    wrapper_dir: Path
    image: Path

    bridges: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def bridge(self, port_inside: int, port_outside: int) -> None:
        """127.0.0.1:port_inside in the namespace leads to 127.0.0.1:port_outside outside it.

        Through a Unix socket (file system, not network, so in both namespaces), with socat at each end.
        """
        sock = self.base / f"bridge-{port_inside}.sock"
        outside = ["socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:127.0.0.1:{port_outside}"]
        inside = ["socat", f"TCP-LISTEN:{port_inside},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{sock}"]
        self.bridges.append(subprocess.Popen(outside, stderr=subprocess.DEVNULL))
        for _ in range(50):
            if sock.exists():
                break
            time.sleep(0.1)
        self.bridges.append(subprocess.Popen(self.enter(inside), stderr=subprocess.DEVNULL))

    @property
    def lima_home(self) -> Path:
        return self.base / "home" / ".lima"

    def enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def limactl(
        self, *args: str, timeout: float = 600, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self.enter([str(self.wrapper_dir / "limactl"), *args])
        stdin = {"input": input_text} if input_text is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **stdin)  # type: ignore[call-overload]


def guest_image() -> Path:
    """The built image's directory (built on first use; cached by its inputs)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-guest-image.sh")], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"building the guest image failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", USER],
            check=True,
        )
        return pwd.getpwnam(USER)


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)


def write_wrapper(base: Path, user: pwd.struct_passwd) -> Path:
    """``limactl`` on PATH: the real one, as the unprivileged user, with its own LIMA_HOME."""
    directory = base / "wrapper"
    directory.mkdir()
    home = base / "home"
    script = directory / "limactl"
    script.write_text(
        "#!/bin/sh\n"
        f"cd {base} || exit 1\n"
        f"exec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups "
        f"env HOME={home} LIMA_HOME={home}/.lima USER={USER} LOGNAME={USER} "
        f'{base}/lima/bin/limactl "$@"\n'
    )
    script.chmod(0o755)
    return directory


def make_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Teardown:
    host: VmHost

    def __call__(self) -> None:
        listed = self.host.limactl("list", "-q", timeout=60)
        for name in listed.stdout.split():
            self.host.limactl("delete", "--force", name, timeout=120)
        self.host.limactl("stop", "--force", "--all", timeout=60)  # stray hostagents, if any
        for process in self.host.bridges:
            process.kill()
            process.wait()
        pids = subprocess.run(["ip", "netns", "pids", self.host.netns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "delete", self.host.netns], capture_output=True)
        shutil.rmtree(self.host.base, ignore_errors=True)


def vm_host() -> Iterator[VmHost]:
    """A run's VM host: user, wrapper, binaries, image and network namespace; all removed after."""
    image = guest_image()
    limactl = CACHE / "bin" / "limactl"
    agent = CACHE / "share" / "lima" / "lima-guestagent.Linux-x86_64"
    for needed in (limactl, agent):
        if not needed.is_file():
            raise RuntimeError(f"{needed} is missing: run scripts/get-binaries.sh lima")
    user = ensure_user()
    base = Path(tempfile.mkdtemp(prefix="homelab-vm-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir()
    os.chown(base / "home", user.pw_uid, user.pw_gid)
    link_or_copy(limactl, base / "lima" / "bin" / "limactl")
    link_or_copy(agent, base / "lima" / "share" / "lima" / agent.name)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        link_or_copy(image / name, base / "image" / name)
    netns = f"homelab-vm-{os.getpid()}"
    make_netns(netns)
    host = VmHost(base, netns, write_wrapper(base, user), base / "image")
    try:
        yield host
    finally:
        Teardown(host)()
