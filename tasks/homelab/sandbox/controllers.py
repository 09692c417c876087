"""The sandbox's controllers: Argo CD, Sealed Secrets and MetalLB as local processes on 127.0.0.1.

On the real homelab these controllers run as pods. The sandbox's nodes are
simulated (kwok), so no pod ever runs code there; instead the same programs,
built from Go modules at the versions the rendered tree deploys
(``scripts/get-binaries.sh controllers``), run here as processes against the
sandbox's API server:

- redis-server and Argo CD's repo-server and application-controller (Argo CD's
  other parts, its API server and UI, are not needed to sync);
- a ``git daemon`` serving one bare repository, ``<state_dir>/controllers/git/homelab.git``,
  the repository the sandbox's Argo CD reads (``repo_url``);
- the Sealed Secrets controller, which has no kubeconfig flag: it runs in a mount
  namespace of its own where a tmpfs holds the ServiceAccount token, CA and
  namespace files a pod would have, with a token of its own ServiceAccount
  bound to the chart's ClusterRole (RBAC is enforced, as on the real cluster);
- MetalLB's controller, which assigns LoadBalancer addresses from IPAddressPools
  (no speaker: nothing is announced, nothing leaves the machine);
- Traefik, the edge: the real Gateway API controller and proxy, as ServiceAccount
  ``traefik/traefik`` with the gateway provider's RBAC, in a mount namespace holding
  its token like the Sealed Secrets controller. It programs the rendered Gateway,
  accepts every HTTPRoute and copies the gateway Service's MetalLB address into the
  Gateway's status. Its HTTP and HTTPS entry points listen on the ports the chart's
  pods use (a Gateway listener names an entry point by its port), on a loopback
  address of this sandbox's own (``gateway_address``), so two sandboxes never clash;
  its ping entry point gets a random high port on 127.0.0.1.

Each process has ``<name>.pid`` and ``<name>.log`` under ``<state_dir>/controllers``;
``ports.json`` there records the ports they were given, so a later ``sandbox.up``
finds them, leaves the ones that run alone and restarts the dead ones. Every
listener that takes an address is bound to 127.0.0.1; two are hard-coded to all
interfaces upstream (Argo CD application-controller's and MetalLB's metrics),
and get a random high port.

The sandbox's ``default`` AppProject only admits the local git daemon's
repository: Argo CD there never fetches from the network, even when the rendered
tree names the real homelab's repository or Helm charts.

What the layers above use: ``ensure_running``, ``stop`` and ``statuses``; where the
repository is (``layout(session).repository``, to push to) and how Argo CD reaches it
(``repo_url``); Argo CD's namespace (``ARGOCD_NAMESPACE``). ``processes.py`` starts,
finds and probes processes; ``controller_objects.py`` holds what the cluster needs first.

cert-manager is not among them: no cert-manager release since v1.12 has a
controller main package the Go module proxy serves, and running the end-of-life
v1.11 would not be the version the real homelab deploys. The TLS path on the
sandbox is validated by the API server only (the Certificate and Issuer objects
against cert-manager's real CRDs).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from homelab.apps.contracts import pod_cidr
from homelab.apps.render import GATEWAY_NAMESPACE
from homelab.core import state_files
from homelab.core.converge import converge
from homelab.core.errors import HomelabError
from homelab.core.plan import LOCAL, Action, Note, Plan, Run, Wait, WriteFile
from homelab.core.secret_refs import REDACTOR, Secret
from homelab.core.tools import cached_bin_dir, require
from homelab.gitops import deploy
from homelab.gitops.platform import ARGOCD_NAMESPACE, ENTRY_POINTS, GATEWAY_SERVICE
from homelab.sandbox import cluster
from homelab.sandbox.controller_objects import (
    METALLB_NAMESPACE,
    TRAEFIK_SERVICE_ACCOUNT,
    cluster_objects,
    crds,
    wildcard_certificate_actions,
)
from homelab.sandbox.processes import Daemon, Probe, free_ports, log_tail, read_pid, running

REPOSITORY = "homelab.git"
TOKEN_LIFETIME = "8760h"  # noqa: S105 - a duration: the Sealed Secrets controller's token; each start mints one
START_TIMEOUT = 180.0  # seconds each process may take to serve; the machine may be busy

# name -> a word of its command line (tells our process from an unrelated one that reused its pid)
PROCESSES = {
    "redis": "redis-server",
    "git-daemon": "daemon",
    "argocd-repo-server": "argocd",
    "argocd-application-controller": "argocd",
    "sealed-secrets-controller": "sealed-secrets-controller",
    "metallb-controller": "metallb-controller",
    "traefik": "traefik",
}
PORTS = (
    "redis",
    "git",
    "repo-server",
    "repo-server-metrics",
    "application-controller-metrics",
    "sealed-secrets",
    "sealed-secrets-metrics",
    "metallb-metrics",
    "traefik-ping",
)

# Run inside `unshare --mount`: give a controller (Sealed Secrets, Traefik) the files a pod's
# ServiceAccount mount would hold, on a tmpfs only this process sees. The token is
# minted here and never written to disk. Arguments: kubectl, kubeconfig, context,
# ServiceAccount, namespace, CA file, then the controller's argv.
SEALED_SECRETS_POD_FILES = """set -eu
umask 077
run=$(readlink -f /var/run)
mount -t tmpfs -o mode=0755 homelab-sandbox "$run"
sa=/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$sa"
"$1" --kubeconfig "$2" --context "$3" --namespace "$5" create token "$4" --duration "$TOKEN_LIFETIME" >"$sa/token"
cp "$6" "$sa/ca.crt"
printf %s "$5" >"$sa/namespace"
shift 6
exec "$@"
"""


@dataclass(frozen=True)
class Layout:
    """Where the controllers keep their files, and the sandbox API server they talk to."""

    root: Path
    kubeconfig: Path  # the sandbox's own one-context kubeconfig (kwokctl's), not the project's shared one

    @property
    def git_root(self) -> Path:
        return self.root / "git"

    @property
    def repository(self) -> Path:
        """The bare repository the git daemon serves and Argo CD reads."""
        return self.git_root / REPOSITORY

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def redis_password(self) -> Path:
        return self.root / "redis.password"

    @property
    def redis_conf(self) -> Path:
        return self.root / "redis.conf"

    @property
    def argocd_home(self) -> Path:
        return self.root / "argocd"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"


def layout(session: Any) -> Layout:
    paths = cluster.paths_for(session.cfg, session.state_dir)
    return Layout(root=session.state_dir / "controllers", kubeconfig=paths.kwok_kubeconfig)


def read_ports(lay: Layout) -> dict[str, int]:
    """The ports the processes were given; empty before the first start."""
    ports = state_files.read_json(lay.ports_file, state_files.SANDBOX_RECORD) or {}
    try:
        return {name: int(ports[name]) for name in PORTS if name in ports}
    except (TypeError, ValueError):
        return {}


def repo_url(session: Any) -> str:
    """``git://127.0.0.1:PORT/homelab.git``: the sandbox's git repository as Argo CD reaches it."""
    port = read_ports(layout(session)).get("git")
    if port is None:
        raise HomelabError("the sandbox's git daemon has not been started; run inv sandbox.up")
    return git_url(port)


def git_url(port: int) -> str:
    return f"git://127.0.0.1:{port}/{REPOSITORY}"


# --- what runs ---------------------------------------------------------------------------


def live_pid(lay: Layout, name: str) -> int | None:
    """The pid of the process ``name`` when it runs, else None (no pid file, or a dead or reused pid)."""
    pid = read_pid(lay.pid_file(name))
    return pid if pid is not None and running(pid, PROCESSES[name]) else None


@dataclass(frozen=True)
class Api:
    """The sandbox API server as its kubeconfig names it."""

    context: str
    host: str
    port: int
    ca_file: str


def api_of(kubeconfig: Path) -> Api:
    """The current context of kwokctl's kubeconfig: its server and the CA file it names."""
    try:
        doc = yaml.safe_load(state_files.read_text(kubeconfig, state_files.KUBECONFIG) or "")
        context = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == context)
        entry = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        host, _, port = entry["server"].split("://", 1)[1].rstrip("/").rpartition(":")
        return Api(context=context, host=host, port=int(port), ca_file=entry["certificate-authority"])
    except (OSError, KeyError, StopIteration, ValueError, TypeError, IndexError) as err:
        raise HomelabError(f"{kubeconfig}: no server and CA file for the sandbox's context ({err!r})") from None


def argocd_env(lay: Layout) -> tuple[tuple[str, str], ...]:
    """What upstream's own Procfile sets to run Argo CD outside a cluster, with every path under the state dir."""
    home = lay.argocd_home
    return (
        ("ARGOCD_FAKE_IN_CLUSTER", "true"),  # https://kubernetes.default.svc means the sandbox, via KUBECONFIG
        ("KUBECONFIG", str(lay.kubeconfig)),
        ("ARGOCD_TLS_DATA_PATH", str(home / "tls")),
        ("ARGOCD_SSH_DATA_PATH", str(home / "ssh")),
        ("ARGOCD_GPG_DATA_PATH", str(home / "gpg" / "source")),
        ("ARGOCD_GNUPGHOME", str(home / "gpg" / "keys")),
        ("ARGOCD_GPG_ENABLED", "false"),
        ("TMPDIR", str(home / "tmp")),  # the repo-server's clones
        ("PATH", os.pathsep.join([str(cached_bin_dir()), os.environ.get("PATH", "")])),  # git-verify-wrapper.sh
    )


def daemons(session: Any, lay: Layout, ports: dict[str, int], api: Api) -> list[Daemon]:
    """Every process, in start order, with its argv for these ports."""
    local = "127.0.0.1"
    redis = f"{local}:{ports['redis']}"
    kubeconfig = str(lay.kubeconfig)
    argocd, password = argocd_env(lay), (("REDIS_PASSWORD", str(lay.redis_password)),)
    ns, sa = session.cfg.secrets.controller_namespace, session.cfg.secrets.controller_name
    git = (
        require("git"), "daemon", "--export-all", "--reuseaddr", "--informative-errors",
        f"--base-path={lay.git_root}", f"--listen={local}", f"--port={ports['git']}", str(lay.git_root),
    )  # fmt: skip
    repo_server = (
        require("argocd-repo-server"), "--address", local, "--port", str(ports["repo-server"]),
        "--metrics-address", local, "--metrics-port", str(ports["repo-server-metrics"]),
        "--redis", redis, "--disable-tls", "--client-ca-path", "", "--logformat", "text",
    )  # fmt: skip
    application_controller = (
        require("argocd-application-controller"), "--kubeconfig", kubeconfig, "--namespace", ARGOCD_NAMESPACE,
        "--redis", redis, "--repo-server", f"{local}:{ports['repo-server']}", "--repo-server-plaintext",
        "--metrics-port", str(ports["application-controller-metrics"]), "--logformat", "text",
    )  # fmt: skip
    user_ns = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    sealed_secrets = (
        require("unshare"), "--mount", "--propagation", "private", *user_ns, "--",
        "sh", "-c", SEALED_SECRETS_POD_FILES, "sh",
        require("kubectl"), kubeconfig, api.context, sa, ns, api.ca_file,
        require("sealed-secrets-controller"),
        "--listen-addr", f"{local}:{ports['sealed-secrets']}",
        "--listen-metrics-addr", f"{local}:{ports['sealed-secrets-metrics']}",
    )  # fmt: skip
    in_pod = (("KUBERNETES_SERVICE_HOST", api.host), ("KUBERNETES_SERVICE_PORT", str(api.port)))
    metallb = (
        require("metallb-controller"), "-kubeconfig", kubeconfig, "-namespace", METALLB_NAMESPACE,
        "-webhook-mode", "disabled", "-disable-cert-rotation", "-port", str(ports["metallb-metrics"]),
    )  # fmt: skip
    edge = gateway_address(lay)
    trusted = pod_cidr(session.cfg)
    traefik = (
        require("unshare"), "--mount", "--propagation", "private", *user_ns, "--",
        "sh", "-c", SEALED_SECRETS_POD_FILES, "sh",
        require("kubectl"), kubeconfig, api.context, TRAEFIK_SERVICE_ACCOUNT, GATEWAY_NAMESPACE, api.ca_file,
        require("traefik"),
        f"--entryPoints.web.address={edge}:{ENTRY_POINTS['web']}",
        f"--entryPoints.websecure.address={edge}:{ENTRY_POINTS['websecure']}",
        "--entryPoints.websecure.http.tls=true",
        f"--entryPoints.web.forwardedHeaders.trustedIPs={trusted}",
        f"--entryPoints.websecure.forwardedHeaders.trustedIPs={trusted}",
        f"--entryPoints.traefik.address={local}:{ports['traefik-ping']}",
        "--ping=true", "--ping.entryPoint=traefik",
        "--providers.kubernetesgateway=true",
        "--providers.kubernetescrd=true",  # the Middlewares routes name as ExtensionRef filters
        f"--providers.kubernetesgateway.statusaddress.service.name={GATEWAY_SERVICE}",
        f"--providers.kubernetesgateway.statusaddress.service.namespace={GATEWAY_NAMESPACE}",
        "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false", "--log.level=INFO",
    )  # fmt: skip
    return [
        Daemon(
            "redis",
            (require("redis-server"), str(lay.redis_conf)),
            Probe("redis", ports["redis"], password_file=lay.redis_password),
            "Argo CD's cache",
        ),
        Daemon(
            "git-daemon",
            git,
            Probe("git", ports["git"], REPOSITORY),
            f"serve {lay.repository} as {git_url(ports['git'])}",
        ),
        Daemon(
            "argocd-repo-server",
            repo_server,
            Probe("http", ports["repo-server-metrics"], "/healthz"),
            "Argo CD's manifest generator (plain gRPC: both ends are on 127.0.0.1)",
            env=argocd,
            env_from=password,
        ),
        Daemon(
            "argocd-application-controller",
            application_controller,
            Probe("http", ports["application-controller-metrics"], "/healthz"),
            f"Argo CD's sync loop over the Applications in namespace {ARGOCD_NAMESPACE}",
            env=argocd,
            env_from=password,
        ),
        Daemon(
            "sealed-secrets-controller",
            sealed_secrets,
            Probe("http", ports["sealed-secrets"], "/healthz"),
            f"Sealed Secrets as ServiceAccount {ns}/{sa}, in a mount namespace holding its token",
            env=(*in_pod, ("TOKEN_LIFETIME", TOKEN_LIFETIME)),
        ),
        Daemon(
            "metallb-controller",
            metallb,
            Probe("http", ports["metallb-metrics"], "/metrics"),
            "MetalLB: LoadBalancer addresses from the IPAddressPools",
        ),
        Daemon(
            "traefik",
            traefik,
            Probe("http", ports["traefik-ping"], "/ping"),
            f"Traefik, the Gateway API edge, as ServiceAccount {GATEWAY_NAMESPACE}/{TRAEFIK_SERVICE_ACCOUNT}; "
            f"entry points on {edge}",
            env=(*in_pod, ("TOKEN_LIFETIME", TOKEN_LIFETIME)),
        ),
    ]


def gateway_address(lay: Layout) -> str:
    """This sandbox's loopback address for the gateway's entry points, from its state directory.

    Traefik maps a Gateway listener to the entry point whose address ends in the
    listener's port, so the entry points must listen on the chart's ports (8000, 8443),
    not on random ones; a loopback address of its own (127.x.y.z, never 127.0.0.x) keeps
    two sandboxes on one machine from taking the same port. Linux answers on all of 127/8.
    """
    digest = hashlib.sha256(str(lay.root.resolve()).encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}.{1 + digest[2] % 254}"


# --- planning ----------------------------------------------------------------------------


def redis_conf(port: int, password: str, workdir: Path) -> str:
    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            f"dir {workdir}",
            f"requirepass {password}",
            "",
        ]
    )


def unchanged(path: Path, content: str) -> bool:
    try:
        return path.read_text() == content
    except OSError:
        return False


def file_actions(lay: Layout, ports: dict[str, int]) -> list[Action]:
    """ports.json, redis's password and config, Argo CD's data dirs, the bare repository: where missing or stale."""
    actions: list[Action] = []
    recorded = json.dumps(ports, indent=2, sort_keys=True) + "\n"
    if not unchanged(lay.ports_file, recorded):
        actions.append(WriteFile(str(lay.ports_file), recorded, 0o644, why="the ports the processes listen on"))
    try:
        password = lay.redis_password.read_text().strip()
    except OSError:
        password = ""
    if not password:
        password = secrets.token_hex(24)
        actions.append(WriteFile(str(lay.redis_password), Secret(password, "redis password"), 0o600, why="new"))
    REDACTOR.register(password)
    conf = redis_conf(ports["redis"], password, lay.root)
    if not unchanged(lay.redis_conf, conf):
        actions.append(WriteFile(str(lay.redis_conf), Secret(conf, "redis.conf"), 0o600, why="redis on 127.0.0.1"))
    home = lay.argocd_home
    dirs = [home / "tls", home / "ssh", home / "gpg" / "source", home / "gpg" / "keys", home / "tmp"]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        actions.append(Run(("mkdir", "-p", "--", *missing), why="Argo CD's data directories"))
    if not (lay.repository / "HEAD").is_file():
        init = (require("git"), "init", "--quiet", "--bare", "--initial-branch=main", str(lay.repository))
        actions.append(Run(init, why="the repository the sandbox's Argo CD reads"))
    return actions


def ports_for(lay: Layout, alive: dict[str, int | None]) -> dict[str, int]:
    """The recorded ports while any process runs (they are bound); fresh free ones when none does (after a reboot)."""
    recorded = read_ports(lay)
    if any(alive.values()) and set(recorded) == set(PORTS):
        return recorded
    return free_ports(PORTS)


def serving(daemon: Daemon, lay: Layout) -> Callable[[], str | None]:
    """A Wait check: None once it serves; raises at once when the process has died (with its log's end)."""

    def check() -> str | None:
        if live_pid(lay, daemon.name) is None:
            log = lay.log(daemon.name)
            raise HomelabError(f"{daemon.name} is not running; end of {log}:\n    {log_tail(log)}")
        return daemon.probe.check()

    return check


def start_plan(session: Any, executor: Any) -> Plan:
    """CRDs and objects first, then every process that is not running, then waits until each serves.

    Empty (waits aside) when the cluster holds everything and every process runs.
    """
    lay = layout(session)
    kube = executor.kube()
    alive = {name: live_pid(lay, name) for name in PROCESSES}
    ports = ports_for(lay, alive)
    api = api_of(lay.kubeconfig)
    plan = Plan("sandbox controllers: Argo CD, Sealed Secrets, MetalLB and Traefik on loopback")
    plan.extend(deploy.crd_actions(kube, executor.kube, crds(), "the controllers' CRDs"))
    objects = cluster_objects(session, git_url(ports["git"]))
    plan.extend(deploy.applies(kube, objects, "what the controllers read at start"))
    plan.extend(wildcard_certificate_actions(kube, session.cfg.domain))
    plan.extend(file_actions(lay, ports))
    procs = daemons(session, lay, ports, api)
    for daemon in procs:
        if alive[daemon.name] is None:
            plan.add(daemon.launch(lay.pid_file(daemon.name), lay.log(daemon.name)))
    for daemon in procs:
        what = f"{daemon.name} to serve on {daemon.probe.describe()}"
        plan.add(Wait(what, serving(daemon, lay), START_TIMEOUT, 1.0, LOCAL))
    return plan


def ensure_running(session: Any) -> bool:
    """Start what is not running (after the API server is up and the CRDs are in); True if anything changed.

    Under ``--dry-run`` before the sandbox exists, the plan is one note: it is
    made from the sandbox's kubeconfig and API, which do not exist yet.
    """
    paths = cluster.paths_for(session.cfg, session.state_dir)
    executor = cluster.executor_for(session, paths)
    if executor.dry_run and not api_answers(executor):
        names = ", ".join(PROCESSES)
        note = Note(f"then: start {names} on 127.0.0.1, once the sandbox's API server answers")
        executor.execute(Plan("sandbox controllers", [note]))
        return False
    return converge(executor, lambda: start_plan(session, executor))


def api_answers(executor: Any) -> bool:
    try:
        return bool(executor.kube().ready(timeout=3))
    except HomelabError:
        return False


# --- stopping ----------------------------------------------------------------------------


def stop_actions(session: Any, only: tuple[str, ...] = tuple(PROCESSES)) -> list[Action]:
    """Stop every running process of ``only`` (each with the children in its session), then wait until all exited."""
    lay = layout(session)
    live = {name: pid for name in only if (pid := live_pid(lay, name)) is not None}
    if not live:
        return []

    def gone() -> str | None:
        left = [f"{name} (pid {pid})" for name, pid in live.items() if running(pid, PROCESSES[name])]
        return f"still running: {', '.join(left)}" if left else None

    groups = tuple(f"-{pid}" for pid in live.values())  # each was started as the leader of its own session
    return [
        Run(("kill", "-TERM", "--", *groups), why=f"stop {', '.join(live)}"),
        Wait("the sandbox's controllers to exit", gone, 30.0, 0.5, LOCAL),
    ]


def restart_actions(session: Any, name: str) -> list[Action]:
    """Stop the process ``name`` (when it runs) and start it again, then wait until it serves.

    For a program that reads some state only at start, as the Sealed Secrets
    controller reads its keys (a restored key is used only after a restart).
    """
    lay = layout(session)
    ports = read_ports(lay)
    if set(ports) != set(PORTS) or not lay.kubeconfig.is_file():
        return [Note(f"{name} has not been started here: it reads the current state when inv sandbox.up starts it")]
    [daemon] = [d for d in daemons(session, lay, ports, api_of(lay.kubeconfig)) if d.name == name]
    actions = stop_actions(session, (name,))
    actions.append(daemon.launch(lay.pid_file(name), lay.log(name)))
    actions.append(
        Wait(f"{name} to serve on {daemon.probe.describe()}", serving(daemon, lay), START_TIMEOUT, 1.0, LOCAL)
    )
    return actions


def down_actions(session: Any) -> list[Action]:
    """What ``sandbox.down`` does for the controllers: stop them and remove their files."""
    lay = layout(session)
    actions = stop_actions(session)
    if lay.root.exists():
        actions.append(Run(("rm", "-rf", "--", str(lay.root)), why="the controllers' files and repository"))
    return actions


def stop(session: Any) -> bool:
    """Stop the controllers (their files stay); True when something was running."""
    executor = cluster.executor_for(session, cluster.paths_for(session.cfg, session.state_dir))
    plan = Plan("stop the sandbox controllers", stop_actions(session))
    executor.execute(plan)
    return not plan.empty and not executor.dry_run


# --- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """One process as ``sandbox.status`` shows it."""

    name: str
    pid: int | None
    problem: str | None  # None: running and serving

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "-"
        return f"  {self.name:<32} {pid:<12} {self.problem or 'serving'}"


def statuses(session: Any) -> list[Status]:
    """Each process: its pid when it runs, and whether it answers its health probe."""
    lay = layout(session)
    ports = read_ports(lay)
    probes = {}
    if set(ports) == set(PORTS) and lay.kubeconfig.is_file():
        try:
            probes = {d.name: d.probe for d in daemons(session, lay, ports, api_of(lay.kubeconfig))}
        except HomelabError:
            probes = {}
    found = []
    for name in PROCESSES:
        pid, probe = live_pid(lay, name), probes.get(name)
        if pid is None:
            found.append(Status(name, None, "not running"))
        else:
            found.append(Status(name, pid, probe.check() if probe else "no recorded port"))
    return found


def sealed_secrets_cert(session: Any) -> str:
    """The public certificate the running Sealed Secrets controller seals with (its /v1/cert.pem)."""
    port = read_ports(layout(session)).get("sealed-secrets")
    if port is None:
        raise HomelabError("the Sealed Secrets controller has not been started; run inv sandbox.up")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/v1/cert.pem", timeout=10) as response:
        return str(response.read().decode())
