"""K3S planning: each node's config.yaml, what a node has now, and what to do about it.

Every option goes into /etc/rancher/k3s/config.yaml (re-running the installer
with other flags is what breaks nodes); the cluster token goes into a 0600
token file uploaded over SFTP and referenced by ``token-file``, so it is never
in an argument list, a log line or a plan.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from homelab.config.schema import HomelabConfig, Node
from homelab.core.errors import HomelabError
from homelab.core.plan import Action, Cordon, Drain, LiftPdbs, Note, Patch, Plan, RestorePdbs, Run, Wait, WriteFile
from homelab.core.secret_refs import REDACTOR, Secret, SecretLocation
from homelab.storage import longhorn
from homelab.vm import lima

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
TOKEN_PATH = "/etc/rancher/k3s/token"  # noqa: S105 - a path, not a secret
INSTALLER_PATH = "/var/tmp/homelab-k3s-install.sh"
KUBECONFIG_PATH = "/etc/rancher/k3s/k3s.yaml"
AIRGAP_BINARY = "/usr/local/bin/k3s"
AIRGAP_IMAGES = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images.tar"
UPGRADING_ANNOTATION = "homelab.dev/upgrading"  # on a Node while an upgrade holds it cordoned
SIZE_UNITS = {"MiB": 1024, "GiB": 1024**2, "TiB": 1024**3}


def size_kib(size: str) -> int:
    for unit, factor in SIZE_UNITS.items():
        if size.endswith(unit):
            return int(size[: -len(unit)]) * factor
    raise ValueError(size)


def api_endpoint(cfg: HomelabConfig) -> str:
    """Where the toolkit and kubectl reach the API server: on user-v2, Lima's forward on loopback."""
    if cfg.k3s.api_endpoint:
        return cfg.k3s.api_endpoint
    if cfg.server.provider == "lima" and cfg.lima.network == "user-v2":
        return f"https://127.0.0.1:{lima.API_PORT}"
    return f"https://{cfg.server.ip}:{lima.API_PORT}"


def node_config(cfg: HomelabConfig, node: Node) -> str:
    """The exact text of a node's /etc/rancher/k3s/config.yaml."""
    data: dict[str, object] = {
        "node-name": node.name,
        "node-ip": node.ip,
        "token-file": TOKEN_PATH,
    }
    if node.provider == "lima":
        # The VM has Lima's user-mode NIC besides the node network: flannel must not pick that one.
        data["flannel-iface"] = lima.node_interface(cfg)
    if node.labels:
        data["node-label"] = [f"{k}={v}" for k, v in sorted(node.labels.items())]
    if node.taints:
        data["node-taint"] = list(node.taints)
    if node.role == "server":
        disable = []
        if cfg.ingress.enabled:
            disable.append("traefik")
        if cfg.metallb.enabled:
            disable.append("servicelb")
        data.update(
            {
                "write-kubeconfig-mode": "0600",
                "flannel-backend": cfg.k3s.flannel_backend,
                "tls-san": [node.ip, node.name],
                "disable": disable,
            }
        )
        if cfg.k3s.datastore == "etcd":
            data["cluster-init"] = True
        data.update(cfg.k3s.extra_server_config)
    else:
        data["server"] = f"https://{cfg.server.ip}:6443"
    header = "# Written by homelab (inv k3s.install) from config/homelab.yaml; edits are overwritten.\n"
    return header + yaml.safe_dump(data, sort_keys=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Observed:
    """What a node has now."""

    version: str | None
    config_sha: str | None
    token_sha: str | None

    @property
    def installed(self) -> bool:
        return self.version is not None


PROBE = (
    'v=$(k3s --version 2>/dev/null | head -n1 | cut -d" " -f3); echo "version=$v"; '
    f'for f in config:{CONFIG_PATH} token:{TOKEN_PATH}; do p="${{f#*:}}"; '
    'if [ -f "$p" ]; then echo "${f%%:*}=$(sha256sum < "$p" | cut -d" " -f1)"; else echo "${f%%:*}="; fi; done'
)


def probe(node: Node) -> Run:
    """One read-only command that reports the installed version and file digests."""
    return Run(("sh", "-c", PROBE), host=node.name, sudo=True, why="observe k3s")


def parse_probe(text: str) -> Observed:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return Observed(values.get("version") or None, values.get("config") or None, values.get("token") or None)


@dataclass
class NodePlans:
    """What k3s.install will do, split by how it must be sequenced."""

    install: dict[str, Plan] = field(default_factory=dict)
    reconfigure: dict[str, Plan] = field(default_factory=dict)
    upgrade: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.install or self.reconfigure or self.upgrade)


def installer_run(cfg: HomelabConfig, node: Node, version: str) -> Run:
    """Run the official installer with the version pinned; options come from config.yaml."""
    env = [f"INSTALL_K3S_VERSION={version}", f"INSTALL_K3S_EXEC={node.role}"]
    if cfg.k3s.install_method == "airgap":
        env.append("INSTALL_K3S_SKIP_DOWNLOAD=true")
    return Run(("env", *env, "sh", INSTALLER_PATH), host=node.name, sudo=True, why=f"install k3s {version}")


NO_INSTALLER_HINT = (
    "The node must reach k3s.installer_url; without the internet set k3s.installer_file to a copy of the"
    " installer, and k3s.install_method: airgap with k3s.airgap_binary and k3s.airgap_images"
)


def installer_files(cfg: HomelabConfig, node: Node) -> list[Run | WriteFile]:
    """Get the installer (and, air-gapped, the binary and images) onto the node."""
    steps: list[Run | WriteFile] = []
    if cfg.k3s.installer_file:
        text = Path(cfg.k3s.installer_file).expanduser().read_text()
        steps.append(WriteFile(INSTALLER_PATH, text, 0o700, host=node.name, sudo=True, why="k3s installer"))
    else:
        steps.append(
            Run(
                ("curl", "-sSfL", "-o", INSTALLER_PATH, cfg.k3s.installer_url),  # -S: curl's reason when it fails
                host=node.name,
                sudo=True,
                why="download the k3s installer",
                hint=NO_INSTALLER_HINT,
            )
        )
    if cfg.k3s.install_method == "airgap":
        for local, remote in ((cfg.k3s.airgap_binary, AIRGAP_BINARY), (cfg.k3s.airgap_images, AIRGAP_IMAGES)):
            if not local:
                raise HomelabError("k3s.install_method airgap needs k3s.airgap_binary and k3s.airgap_images")
            data = Path(local).expanduser().read_bytes()
            steps.append(WriteFile(remote, data, 0o755, host=node.name, sudo=True, why="air-gapped k3s"))
    return steps


def plan_nodes(cfg: HomelabConfig, observed: dict[str, Observed], token: Secret) -> NodePlans:
    """Compare each node's desired state with what it has; nodes in config order."""
    plans = NodePlans()
    token_sha = digest(token.reveal() + "\n")
    for node in cfg.nodes:
        have = observed[node.name]
        config_text = node_config(cfg, node)
        writes: list[Run | WriteFile] = []
        if have.token_sha != token_sha:
            writes.append(
                WriteFile(
                    TOKEN_PATH,
                    Secret(token.reveal() + "\n", token.source),
                    0o600,
                    host=node.name,
                    sudo=True,
                    why="cluster token",
                )
            )
        if have.config_sha != digest(config_text):
            writes.append(WriteFile(CONFIG_PATH, config_text, 0o600, host=node.name, sudo=True, why="k3s options"))
        if not have.installed:
            steps: list[Action] = [*writes, *installer_files(cfg, node)]
            steps.append(installer_run(cfg, node, cfg.k3s.version))
            plans.install[node.name] = Plan(f"install k3s {cfg.k3s.version} on {node.name} ({node.role})", steps)
            continue
        if have.version != cfg.k3s.version:
            plans.upgrade.append(node.name)
        if writes:
            service = "k3s" if node.role == "server" else "k3s-agent"
            restart = Run(("systemctl", "restart", service), host=node.name, sudo=True, why="apply new options")
            plans.reconfigure[node.name] = Plan(f"reconfigure k3s on {node.name}", [*writes, restart])  # type: ignore[list-item]
        if have.version == cfg.k3s.version and not writes:
            plans.notes.append(f"{node.name}: k3s {have.version} with the configured options; nothing to do")
    return plans


def cluster_token(location: SecretLocation) -> tuple[Secret, list[Action]]:
    """The cluster token, and the write that creates its 0600 file when there is none yet.

    A missing token file gets a new random token. The write is a plan action, so
    ``--dry-run`` shows it and writes nothing (the value planned then is dropped).
    """
    if location.exists() or not location.file:
        return location.resolve(), []
    value = secrets.token_hex(32)
    REDACTOR.register(value)
    path = str(Path(location.file).expanduser())
    write = WriteFile(path, Secret(value + "\n", location.describe()), 0o600, why="generate the cluster token (once)")
    return Secret(value, location.describe()), [write]


def done_notes(plans: NodePlans) -> Plan:
    """What k3s.install prints when every node already matches the config."""
    return Plan("k3s", [Note(text) for text in plans.notes])


def pending(cfg: HomelabConfig, plans: NodePlans, observed: dict[str, Observed]) -> list[str]:
    """One line per node that still differs from the config (for the re-check after acting)."""
    lines = [f"{name}: k3s is not installed" for name in plans.install]
    lines += [f"{name}: its options or token differ from the config" for name in plans.reconfigure]
    lines += [
        f"{name}: runs k3s {observed[name].version}, the config wants {cfg.k3s.version}" for name in plans.upgrade
    ]
    return lines


def mark(name: str, version: str) -> Patch:
    """Note on the Node that an upgrade holds it, so a re-run after a crash knows to put it back."""
    return Patch(
        "v1",
        "Node",
        name,
        None,
        {"metadata": {"annotations": {UPGRADING_ANNOTATION: version}}},
        why=f"mark as being upgraded to {version} (a re-run puts it back if this run stops)",
    )


def release(name: str) -> list[Action]:
    """Schedulable again, and no longer marked as being upgraded."""
    unmark = Patch(
        "v1",
        "Node",
        name,
        None,
        {"metadata": {"annotations": {UPGRADING_ANNOTATION: None}}},
        why="no longer being upgraded",
    )
    return [Cordon(name, uncordon=True), unmark]


def put_back(name: str) -> list[Action]:
    """What every exit path of a node's upgrade ends with: schedulable again, PDBs as they were."""
    return [*release(name), RestorePdbs()]


def upgrade_plan(
    cfg: HomelabConfig,
    node: Node,
    version: str,
    ready: Callable[[], str | None],
    allow_downtime: bool = False,
    hold: tuple[list[Action], list[Action]] = ([], []),
    detached: Callable[[], str | None] | None = None,
) -> Plan:
    """One node's upgrade: mark, cordon, (lift PDBs), drain, install, wait Ready on ``version``, put back.

    ``ready`` is the Wait's check (None once the node runs ``version`` and is Ready).
    ``hold``: the actions that pause Argo CD's automated sync of the Applications managing
    the PDBs a lift changes (self-heal would put ``minAvailable`` back under the drain),
    and those that resume it once the PDBs are restored (``gitops.hold``).
    ``detached``: with ``options.longhorn``, the check that no Longhorn volume is attached to the node;
    the upgrade waits for it after the drain (the volumes detach as their pods go), before K3S restarts.
    """
    pause, resume = hold if allow_downtime else ([], [])
    lift: list[Action] = [*pause, LiftPdbs(node.name)] if allow_downtime else []
    return Plan(
        f"upgrade {node.name} to k3s {version}",
        [
            mark(node.name, version),
            Cordon(node.name),
            *lift,
            Drain(node.name, cfg.k3s.drain_timeout),
            *(longhorn.detach_wait(cfg, node.name, detached) if detached is not None else []),
            *installer_files(cfg, node),
            installer_run(cfg, node, version),
            Wait(f"{node.name} to be Ready on {version}", ready, timeout=cfg.k3s.ready_timeout),
            *put_back(node.name),
            *resume,
        ],
    )


def recovery_plan(marked: list[str], lifted: list[str]) -> Plan:
    """Put back what an interrupted upgrade left: nodes still marked, PDBs still lifted."""
    plan = Plan("put back what an interrupted k3s upgrade left")
    if not (marked or lifted):
        return plan
    left = [f"{', '.join(marked)} still marked as being upgraded"] if marked else []
    left += [f"PodDisruptionBudgets {', '.join(lifted)} still lifted"] if lifted else []
    plan.add(Note(f"an earlier upgrade stopped half-way: {'; '.join(left)}"))
    for name in marked:
        plan.extend(release(name))
    return plan.add(RestorePdbs())
