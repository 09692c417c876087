"""Test helpers: the repo, test configs on loopback, and running the CLI as a user would."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tasks"))
LOOPBACK_CONFIG = REPO / "tests" / "configs" / "loopback.yaml"
REFERENCE_CONFIG = REPO / "config" / "homelab.yaml"
FAKES = REPO / "tests" / "fakes"
NO_NETWORK = REPO / "scripts" / "no_network.py"
# Written into objects by the loopback config (LM Studio's address), never contacted.
NEVER_CONTACTED = ipaddress.ip_network("192.0.2.0/24")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def inv_binary() -> str:
    return str(Path(sys.executable).parent / "inv")


# The host the sizing check compares the nodes with (homelab.host.sizing): a roomy one, so a CLI test's
# result never depends on the memory and cores of the machine that runs it (a 2-core CI runner would
# refuse every 4-CPU node). The sizing tests set their own host.
A_ROOMY_HOST = {"HOMELAB_HOST_MEMORY": "64GiB", "HOMELAB_HOST_CPUS": "16"}


def start_inv(args: list[str], env: Mapping[str, str], merge_stderr: bool = False) -> subprocess.Popen[str]:
    """``inv ARGS`` from the repo root in a process group of its own, as a terminal runs a job.

    The environment is this one without HOMELAB variables, plus ``env``. A kill or a Ctrl-C
    sent to the group reaches every process the task started; see ``interrupt``.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")}
    full.update(A_ROOMY_HOST)
    full.update(env)
    return subprocess.Popen(
        [inv_binary(), *args],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def interrupt(process: subprocess.Popen[str], how: str) -> int:
    """Stop a task started by ``start_inv`` as the owner or the scheduler would; the exit code it must end with.

    "ctrl-c": SIGINT to its whole process group, as a terminal sends it. "sigterm": SIGTERM to
    the task's own process only, as a service manager or ``kill`` sends it.
    """
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
        return 130
    os.kill(process.pid, signal.SIGTERM)
    return 143


def without_network(argv: list[str]) -> list[str]:
    """``argv`` run in an empty network namespace (loopback only), so any other address is unreachable."""
    return [sys.executable, str(NO_NETWORK), *argv]


def may_reach_beyond_loopback(env: Mapping[str, str]) -> bool:
    """Whether ``inv`` run with ``env`` loads a config that names any machine but this one.

    True for the reference config (its nodes are 192.168.105.x) and every config derived
    from it or from the schema's defaults, and for a config that does not load: if a
    validator let it through by mistake, the run must fail rather than send traffic.
    """
    from homelab.config import loader
    from homelab.core.errors import ConfigError

    path = REPO / env.get("HOMELAB_CONFIG", REFERENCE_CONFIG)
    try:
        config = loader.load(path, environ=env).config
    except (ConfigError, OSError):
        return True
    return any(
        not (network.network_address.is_loopback or network.subnet_of(NEVER_CONTACTED))
        for network in addresses_in(config.model_dump(mode="json"))
    )


def addresses_in(value: object) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IP address or network written in ``value``: alone, as a CIDR, or as a URL's host."""
    if isinstance(value, dict):
        for item in value.values():
            yield from addresses_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from addresses_in(item)
    elif isinstance(value, str):
        for text in (value, urllib.parse.urlsplit(value).hostname or ""):
            try:
                yield ipaddress.ip_interface(text).network
            except ValueError:
                continue


# Every HTTP client that honours the proxy variables (the source check's urllib, Go's net/http) sends what
# is not for loopback to a closed port on loopback: a test that forgot to point a source at its own
# server fails ("cannot check") instead of reaching the internet.
PROXY_TRAP = {
    name: value
    for key, value in (
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", "localhost,127.0.0.1,::1"),
    )
    for name in (key, key.lower())
}


def run_cli(
    args: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    isolated_network: bool | None = None,
    netns: str | None = None,
) -> CliResult:
    """Run ``inv ARGS`` from the repo root in a clean environment plus ``env``.

    With ``isolated_network`` it runs in an empty network namespace (see ``without_network``);
    with ``netns``, in that named namespace (one the test made, holding the VMs it started).
    Left unset, that is decided by the config: any config that names an address beyond
    loopback is isolated, so forgetting the flag cannot send traffic to a real machine.
    A run that talks to a sandbox or sshd this test started outside cannot be isolated,
    and its config names only loopback addresses.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOMELAB")}
    base.update(PROXY_TRAP)
    base.update(A_ROOMY_HOST)
    base.update(env or {})
    if isolated_network is None:
        isolated_network = may_reach_beyond_loopback(base)
    argv = [inv_binary(), *args]
    if netns is not None:  # a namespace the test made (and whose hosts it started) instead of an empty one
        argv, isolated_network = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv], False
    done = subprocess.run(
        without_network(argv) if isolated_network else argv,
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def loopback_data() -> dict:
    """The reference homelab with the loopback test overrides on top (addresses, names, state)."""
    import yaml

    from homelab.config.loader import Layer, merge_layers

    reference = yaml.safe_load((REPO / "config" / "homelab.yaml").read_text())
    loopback = yaml.safe_load(LOOPBACK_CONFIG.read_text())
    merged, _ = merge_layers([Layer("reference", reference), Layer("loopback", loopback)])
    return merged


# What kube-controller-manager puts into every new namespace by itself, moments later (late on a loaded machine).
CONTROLLER_MADE = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


def settled_objects(kube: Any, kinds: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object) for every served kind, less what the cluster changes by itself while a test runs.

    For pictures that must change only when a task writes: a namespace an earlier test deleted
    (its deletion finishes in the background) and what it holds, and CONTROLLER_MADE, are left out.
    """
    from homelab.core.kube import KubeError

    leaving = {
        ns["metadata"]["name"] for ns in kube.list_objects("v1", "Namespace") if ns["metadata"].get("deletionTimestamp")
    }
    for api_version, kind in kinds:
        try:
            objects = kube.list_objects(api_version, kind)
        except KubeError:
            continue  # not served: its CRD is not installed on this cluster
        for obj in objects:
            meta = obj["metadata"]
            if meta.get("namespace") in leaving or (kind == "Namespace" and meta["name"] in leaving):
                continue
            if (kind, meta["name"]) not in CONTROLLER_MADE:
                yield kind, obj


def sample_application(name: str) -> dict[str, Any]:
    """An Argo CD Application of a made-up repository: for tests that need only the object (no sync happens)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example.invalid/homelab.git",
                "path": "k8s/apps",
                "targetRevision": "main",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
        },
    }


def stand_in_lima_env(tmp_path: Path, config: Path, key: Path) -> dict[str, str]:
    """The environment of a CLI run whose limactl is the stand-in (tests/fakes/limactl), keeping its VMs under
    ``tmp_path``; LIMA_HOME is one where Lima ran before (its SSH key exists), so VMs may start in parallel."""
    lima_home = tmp_path / "lima-home"
    (lima_home / "_config").mkdir(parents=True, exist_ok=True)
    (lima_home / "_config" / "user").write_text("")
    return {
        "HOMELAB_CONFIG": str(config),
        "HOMELAB__STATE_DIR": str(tmp_path / "state"),
        "HOMELAB__SSH__PUBLIC_KEY": f"{key}.pub",
        "HOMELAB__SSH__PRIVATE_KEY": str(key),
        "PATH": f"{FAKES}:{os.environ['PATH']}",
        "FAKE_LIMA_STATE": str(tmp_path / "lima"),
        "FAKE_RECORD": str(tmp_path / "record.jsonl"),
        "LIMA_HOME": str(lima_home),
    }
