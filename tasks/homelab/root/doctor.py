"""One doctor across every layer: each check says ok, warn or fail, with a one-line fix.

Checks only read. Each is a small function returning a ``Check``; a check that
cannot run because a layer below it is down reports that instead of crashing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import stat
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from homelab.core.errors import HomelabError
from homelab.core.tools import find, version


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


TOOLS_BY_TARGET = {
    "lima": ["limactl", "kubectl", "kubeseal", "restic"],
    "sandbox": ["kwokctl", "kube-apiserver", "etcd", "kubectl", "kubeseal", "restic"],
    "k3d": ["k3d", "docker", "kubectl", "kubeseal", "restic"],
    "existing": ["kubectl", "kubeseal", "restic"],
}


def check_tools(session: Any) -> list[Check]:
    from homelab.core.tools import INSTALL_HINTS

    checks = []
    needed = list(TOOLS_BY_TARGET[session.cfg.target])
    if session.cfg.target == "lima":
        needed.append(session.cfg.terraform.binary)
    for tool in needed:
        if find(tool):
            checks.append(ok(f"tool {tool}", version(tool) or "present"))
        else:
            checks.append(fail(f"tool {tool}", "not installed", INSTALL_HINTS.get(tool, f"install {tool}")))
    return checks


@dataclass(frozen=True)
class HostFacts:
    """What the macOS host network looks like; gathered by commands, or given by tests."""

    socket_vmnet_running: bool
    bootpd_blocked: bool
    vm_addresses: dict[str, list[str]]
    socket_vmnet_installed: bool = True
    socket_present: bool = True  # lima.socket exists and is a Unix socket
    socket_vmnet_args: str | None = None  # the running socket_vmnet's command line, when it runs


def macos_host_facts(session: Any) -> HostFacts:
    pids = subprocess.run(["pgrep", "-x", "socket_vmnet"], capture_output=True, text=True).stdout.split()
    firewall = subprocess.run(
        ["/usr/libexec/ApplicationFirewall/socketfilterfw", "--getappblocked", "/usr/libexec/bootpd"],
        capture_output=True,
        text=True,
    ).stdout
    addresses: dict[str, list[str]] = {}
    limactl = find("limactl")
    for node in session.cfg.nodes:
        if node.provider != "lima" or limactl is None:
            continue
        out = subprocess.run(
            [limactl, "shell", node.name, "ip", "-4", "-o", "addr", "show", session.cfg.lima.interface],
            capture_output=True,
            text=True,
        ).stdout
        addresses[node.name] = [part.split("/")[0] for part in out.split() if part.count(".") == 3 and "/" in part]
    installed = Path(session.cfg.host.socket_vmnet_path).is_file()
    try:
        socket_present = stat.S_ISSOCK(os.stat(session.cfg.lima.socket).st_mode)
    except OSError:
        socket_present = False
    args = None
    if pids:
        args = subprocess.run(["ps", "-o", "args=", "-p", pids[0]], capture_output=True, text=True).stdout.strip()
    return HostFacts(bool(pids), "is blocked" in firewall, addresses, installed, socket_present, args or None)


def socket_vmnet_dhcp_end(args: str, gateway: str) -> str:
    """The last address the running socket_vmnet leases: its --vmnet-dhcp-end, else its default (.254)."""
    for word in args.split():
        if word.startswith("--vmnet-dhcp-end="):
            return word.split("=", 1)[1]
    return str(ipaddress.IPv4Network(f"{gateway}/24", strict=False).broadcast_address - 1)


def check_dhcp_range(session: Any, facts: HostFacts) -> Check:
    """socket_vmnet's DHCP must never lease a node address or a MetalLB address to another VM."""
    from homelab.config.checks import dhcp_collisions

    cfg = session.cfg
    wanted = cfg.network.dhcp_end or "an address below the nodes and the pool"
    fix = (
        f"run socket_vmnet with --vmnet-gateway={cfg.network.gateway} --vmnet-dhcp-end={wanted} "
        "(edit its launchd plist, then sudo launchctl kickstart -k system/io.github.lima-vm.socket_vmnet)"
    )
    if facts.socket_vmnet_args is None:
        return warn("socket_vmnet DHCP", "socket_vmnet is not running: its DHCP range is unknown", fix)
    end = socket_vmnet_dhcp_end(facts.socket_vmnet_args, cfg.network.gateway)
    inside = dhcp_collisions(cfg, end)
    if inside:
        return fail("socket_vmnet DHCP", f"it leases up to {end}, which covers {', '.join(inside)}", fix)
    if cfg.network.dhcp_end is None:
        return warn(
            "socket_vmnet DHCP",
            f"leases up to {end}, clear of the nodes and the pool; the config does not record it",
            f"set network.dhcp_end: {end}, so validation keeps new addresses out of the range",
        )
    return ok("socket_vmnet DHCP", f"leases up to {end}, below the nodes and the pool")


def check_bridged(session: Any, facts: HostFacts) -> Check:
    """Bridged mode has no socket_vmnet DHCP to check; its socket_vmnet must be the bridged one."""
    from homelab.net import doctor as lan

    return lan.socket_vmnet_mode(session.cfg, facts.socket_vmnet_args)


def check_host_network(session: Any, facts: HostFacts | None) -> list[Check]:
    if facts is None:
        if platform.system() != "Darwin" or session.cfg.target != "lima":
            return [ok("host network", f"not a macOS Lima host ({platform.system()}, target {session.cfg.target})")]
        facts = macos_host_facts(session)
    binary = Path(session.cfg.host.socket_vmnet_path)
    checks = [
        ok("tool socket_vmnet", str(binary))
        if facts.socket_vmnet_installed
        else fail("tool socket_vmnet", f"{binary} not found", "brew install socket_vmnet (see Lima's network docs)"),
        ok("socket_vmnet", "running")
        if facts.socket_vmnet_running
        else fail("socket_vmnet", "not running", "sudo brew services start socket_vmnet"),
        ok("socket_vmnet socket", session.cfg.lima.socket)
        if facts.socket_present
        else fail(
            "socket_vmnet socket",
            f"{session.cfg.lima.socket} is not a socket",
            "give socket_vmnet that path as its last argument, or set lima.socket to the path it listens on",
        ),
        check_dhcp_range(session, facts) if session.cfg.lima.mode == "shared" else check_bridged(session, facts),
        fail(
            "bootpd firewall",
            "the application firewall blocks bootpd, so VMs lose their DHCP address",
            "sudo /usr/libexec/ApplicationFirewall/socketfilterfw --add /usr/libexec/bootpd && "
            "sudo /usr/libexec/ApplicationFirewall/socketfilterfw --unblockapp /usr/libexec/bootpd",
        )
        if facts.bootpd_blocked
        else ok("bootpd firewall", "bootpd allowed"),
    ]
    for node in session.cfg.nodes:
        if node.provider != "lima":
            continue
        have = facts.vm_addresses.get(node.name, [])
        checks.append(
            ok(f"vm {node.name} address", node.ip)
            if node.ip in have
            else fail(
                f"vm {node.name} address",
                f"holds {', '.join(have) or 'no address'}, config says {node.ip}",
                f"inv vm.stop --name {node.name} && inv vm.start --name {node.name}",
            )
        )
    return checks


def check_nodes(session: Any) -> list[Check]:
    from homelab.k3s import preflight
    from homelab.k3s.plan import NO_INSTALLER_HINT, size_kib

    if session.cfg.target != "lima":
        return []
    checks = []
    facts = preflight.gather(session, session.cfg.nodes)
    for node in session.cfg.nodes:
        fact = facts[node.name]
        if isinstance(fact, Exception):
            checks.append(fail(f"node {node.name} ssh", str(fact), "inv vm.start, or inv vm.adopt for a rebuilt host"))
            continue
        checks.append(ok(f"node {node.name} ssh", "reachable, host key pinned"))
        checks.append(
            ok(f"node {node.name} sudo", "passwordless")
            if fact.sudo == "ok"
            else fail(f"node {node.name} sudo", fact.sudo, f"allow NOPASSWD sudo for the SSH user on {node.name}")
        )
        need = size_kib(session.cfg.k3s.min_free_disk)
        checks.append(
            ok(f"node {node.name} disk", f"{fact.disk_kib // 1024} MiB free")
            if fact.disk_kib >= need
            else fail(f"node {node.name} disk", f"{fact.disk_kib // 1024} MiB free", "free space under /var/lib")
        )
        checks.append(
            ok(f"node {node.name} sqlite3", "present (backups snapshot SQLite databases with it)")
            if fact.has_sqlite3
            else fail(
                f"node {node.name} sqlite3",
                "missing: the datastore and app database backups would fail",
                "inv k3s.install installs it with apt-get" if fact.has_apt else f"install sqlite3 on {node.name}",
            )
        )
        if fact.installer != "skip":  # only asked where K3S is not installed yet
            checks.append(
                ok(f"node {node.name} installer", f"downloads from {session.cfg.k3s.installer_url}")
                if fact.installer == "ok"
                else fail(f"node {node.name} installer", fact.installer, NO_INSTALLER_HINT)
            )
    return checks


def check_k3s(session: Any, kube: Any) -> list[Check]:
    from homelab.k3s import run as k3s_run

    if session.cfg.target != "lima":
        return []
    try:
        observed = k3s_run.observe(session)
    except HomelabError as err:
        return [fail("k3s versions", str(err), "fix node access first (see the node checks)")]
    versions = {name: o.version for name, o in observed.items()}
    skew = {n: v for n, v in versions.items() if v != session.cfg.k3s.version}
    checks = [
        ok("k3s versions", f"all on {session.cfg.k3s.version}")
        if not skew
        else fail(
            "k3s versions",
            ", ".join(f"{n} {v or 'not installed'}" for n, v in skew.items()),
            "inv k3s.install (or inv k3s.upgrade)",
        )
    ]
    if kube is not None:
        ready = kube.ready_nodes()
        missing = [n.name for n in session.cfg.nodes if not ready.get(n.name)]
        checks.append(
            ok("k3s nodes", "all Ready")
            if not missing
            else fail("k3s nodes", f"not Ready: {', '.join(missing)}", "inv k3s.status; check the node")
        )
    return checks


def check_argocd(kube: Any, health_not_awaited: dict[str, str] | None = None) -> list[Check]:
    """Every Application Synced and Healthy; those in ``health_not_awaited`` (name: why) need only be Synced."""
    excused = health_not_awaited or {}
    try:
        apps = kube.list_objects("argoproj.io/v1alpha1", "Application", "argocd")
    except HomelabError:
        return [warn("argocd", "ArgoCD is not installed", "inv gitops.bootstrap (not used on the sandbox)")]
    bad = []
    for app in apps:
        st = app.get("status") or {}
        sync = (st.get("sync") or {}).get("status", "Unknown")
        health = (st.get("health") or {}).get("status", "Unknown")
        name = app["metadata"]["name"]
        if sync != "Synced" or (health != "Healthy" and not (name in excused and health == "Progressing")):
            bad.append(f"{name} {sync}/{health}")
    if not apps:
        return [warn("argocd", "no Applications", "inv gitops.bootstrap")]
    noted = [f"{name}: health not checked ({why})" for name, why in excused.items()]
    return [
        ok("argocd", "; ".join([f"{len(apps)} Applications synced and healthy", *noted]))
        if not bad
        else fail("argocd", "; ".join(bad[:5]), "inv gitops.status, then inv gitops.sync APP")
    ]


def check_load_balancers(session: Any, kube: Any) -> list[Check]:
    """Every LoadBalancer Service has an address; the ingress controller's is the configured one."""
    from homelab.gitops.platform import GATEWAY_SERVICE

    services = [s for s in kube.list_objects("v1", "Service") if (s.get("spec") or {}).get("type") == "LoadBalancer"]
    checks = []
    for service in services:
        meta = service["metadata"]
        name = f"load balancer {meta['namespace']}/{meta['name']}"
        found = [
            e.get("ip") or e.get("hostname")
            for e in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ]
        wanted = session.cfg.ingress.load_balancer_ip if meta["name"] == GATEWAY_SERVICE else None
        if session.cfg.lan_dns.enabled and (meta["namespace"], meta["name"]) == ("lan-dns", "lan-dns"):
            wanted = session.cfg.lan_dns.address  # the address the LAN's DNS is pointed at
        if not found:
            checks.append(fail(name, "no address assigned", "check MetalLB's IPAddressPool and its controller's log"))
        elif wanted and wanted not in found:
            checks.append(
                fail(
                    name,
                    f"has {', '.join(found)}, config says {wanted}",
                    "check ingress.load_balancer_ip is in the pool",
                )
            )
        else:
            checks.append(ok(name, ", ".join(found)))
    if (
        session.cfg.ingress.enabled
        and session.cfg.metallb.enabled
        and not any(s["metadata"]["name"] == GATEWAY_SERVICE for s in services)
    ):
        checks.append(fail("load balancer traefik", f"no Service {GATEWAY_SERVICE}", "inv gitops.status"))
    return checks


def check_sandbox_controllers(session: Any) -> list[Check]:
    from homelab.sandbox import controllers

    procs = controllers.statuses(session)
    bad = [f"{p.name}: {p.problem}" for p in procs if p.problem is not None]
    if bad:
        return [fail("sandbox controllers", "; ".join(bad), "inv sandbox.up (logs under <state_dir>/controllers)")]
    return [ok("sandbox controllers", f"{len(procs)} processes serving")]


def check_certificates(kube: Any, days: int = 14) -> list[Check]:
    from homelab.tls.tasks import days_left

    try:
        certs = kube.list_objects("cert-manager.io/v1", "Certificate")
    except HomelabError:
        return [warn("certificates", "cert-manager is not installed", "inv up")]
    checks = []
    for cert in certs:
        name = f"certificate {cert['metadata']['namespace']}/{cert['metadata']['name']}"
        st = cert.get("status") or {}
        left = days_left(st.get("notAfter"))
        if left is None:
            checks.append(fail(name, "not issued", "kubectl describe certificate; check the Cloudflare token scope"))
        elif left < days:
            checks.append(fail(name, f"expires in {left} days", "check cert-manager's logs and the DNS-01 solver"))
        else:
            checks.append(ok(name, f"expires in {left} days"))
    return checks or [warn("certificates", "none found", "inv gitops.render and sync")]


def referenced(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap and claim a pod spec needs to start (optional ones left out)."""
    found = []
    for volume in pod.get("volumes") or []:
        if "secret" in volume and not volume["secret"].get("optional"):
            found.append(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume and not volume["configMap"].get("optional"):
            found.append(("ConfigMap", volume["configMap"]["name"]))
        if "persistentVolumeClaim" in volume:
            found.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for source in container.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    found.append((kind, source[key]["name"]))
        for env in container.get("env") or []:
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = (env.get("valueFrom") or {}).get(key)
                if ref and not ref.get("optional"):
                    found.append((kind, ref["name"]))
    return found


def check_references(session: Any, kube: Any) -> list[Check]:
    """Every Secret, ConfigMap and claim the rendered workloads reference exists: a missing one keeps pods Pending."""
    from homelab.gitops import tree

    missing = []
    workloads = [o for o in tree.objects_in_apply_order(tree.render(session.cfg)) if o["kind"] == "Deployment"]
    for workload in workloads:
        namespace = workload["metadata"]["namespace"]
        for kind, name in referenced(workload["spec"]["template"]["spec"]):
            if kube.get("v1", kind, name, namespace) is None:
                missing.append(f"{kind} {namespace}/{name} (for {workload['metadata']['name']})")
    if not missing:
        return [ok("references", f"every Secret, ConfigMap and claim of {len(workloads)} Deployments exists")]
    shown = ", ".join(sorted(set(missing))[:4]) + (f" (+{len(set(missing)) - 4} more)" if len(set(missing)) > 4 else "")
    return [
        fail("references", f"missing: {shown}", "set the references in the config, then inv secrets.seal and inv up")
    ]


REQUESTS_WARN = 0.9  # above this share of a node's allocatable memory, the next pod or a restart may not fit
DONE_PHASES = ("Succeeded", "Failed")  # pods the scheduler no longer counts


def pod_memory_request(pod: dict[str, Any]) -> int:
    """A pod's memory request in MiB as the scheduler counts it: its containers together, or its largest init
    container if larger (init containers run one at a time, before them), plus its overhead."""
    from homelab.apps.sizing import quantity_mib

    def request(container: dict[str, Any]) -> int:
        memory = ((container.get("resources") or {}).get("requests") or {}).get("memory")
        return quantity_mib(str(memory)) if memory else 0

    spec = pod.get("spec") or {}
    running = sum(request(c) for c in spec.get("containers") or [])
    init = max((request(c) for c in spec.get("initContainers") or []), default=0)
    overhead = (spec.get("overhead") or {}).get("memory")
    return max(running, init) + (quantity_mib(str(overhead)) if overhead else 0)


def node_requests(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[Check]:
    """Per node: the memory its pods request against its allocatable memory (the scheduler's view)."""
    from homelab.apps.sizing import quantity_mib
    from homelab.host.sizing import shown

    requested: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in DONE_PHASES:
            requested[node] = requested.get(node, 0) + pod_memory_request(pod)
    checks = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        allocatable = quantity_mib(str(((node.get("status") or {}).get("allocatable") or {}).get("memory", "0")))
        used = requested.get(name, 0)
        share = used / allocatable if allocatable else 1.0
        detail = f"pods request {shown(used)} of {shown(allocatable)} allocatable ({share:.0%})"
        checks.append(
            ok(f"node {name} memory requests", detail)
            if share <= REQUESTS_WARN
            else warn(
                f"node {name} memory requests",
                f"{detail}: above {REQUESTS_WARN:.0%}, the next pod or a rescheduled one may stay Pending",
                "give the node more memory (nodes[].memory), lower an app's memory_request, or run fewer apps",
            )
        )
    return checks


def check_node_requests(kube: Any) -> list[Check]:
    """The scheduler's view of each node: its pods' memory requests against its allocatable memory."""
    return node_requests(kube.list_objects("v1", "Node"), kube.list_objects("v1", "Pod"))


def check_tunnel_hostnames(session: Any) -> list[Check]:
    from homelab.config.checks import tunnel_warnings

    if not session.cfg.cloudflare.tunnel_enabled:
        return []
    found = tunnel_warnings(session.cfg)
    if found:
        return [warn("tunnel hostnames", found[0].message, f"change {found[0].path}")]
    zone = session.cfg.cloudflare.zone_of(session.cfg.domain)
    return [ok("tunnel hostnames", f"every public hostname is covered by *.{zone}")]


def check_exposure(session: Any) -> list[Check]:
    """What the internet reaches through the tunnel and what only the LAN does (``exposure``), and accepted risks.

    A public app whose contract names a risk passes validation only when the owner
    accepted it (``accept_risks``): each such acceptance stays visible here as a warning.
    """
    from homelab.apps import contracts, exposure

    cfg = session.cfg
    public, lan = sorted(exposure.public_hostnames(cfg)), sorted(exposure.lan_only_hostnames(cfg))
    tunnel = f"through tunnel {cfg.cloudflare.tunnel_name}" if cfg.cloudflare.tunnel_enabled else "tunnel off"
    found = [
        ok("public", f"{tunnel}: {', '.join(public)}" if public else f"nothing ({tunnel}); every app is LAN only"),
        ok("lan only", ", ".join(lan) if lan else "nothing"),
    ]
    for name, app in exposure.routed_apps(cfg).items():
        contract = contracts.contract_for(app)
        if not (exposure.tunneled(app) and cfg.cloudflare.tunnel_enabled and contract):
            continue
        if "first-visitor" in app.accept_risks and contract.takeover:
            found.append(
                warn(
                    f"{name} public",
                    f"first-visitor risk accepted: {contract.takeover.what}",
                    f"finish its setup before anyone else can, or set apps.{name}.public: false",
                )
            )
        if "bulk-media" in app.accept_risks and contract.bulk:
            found.append(
                warn(
                    f"{name} public",
                    f"bulk-media risk accepted: it serves {contract.bulk} through the tunnel "
                    f"(Cloudflare's terms: {contracts.CLOUDFLARE_TERMS})",
                    f"set apps.{name}.public: false and reach it from the LAN",
                )
            )
    return found


def check_tunnel(session: Any, kube: Any) -> list[Check]:
    if not session.cfg.cloudflare.tunnel_enabled:
        return []
    waiting = kube.deployment_waiting("cloudflared", "cloudflared")
    return [
        ok("tunnel", "cloudflared replicas Available")
        if waiting is None
        else fail("tunnel", f"cloudflared {waiting}", "check the tunnel credentials secret and cloudflared's logs")
    ]


def check_backups(session: Any, kube: Any, now: float | None = None) -> list[Check]:
    from homelab.backup.run import metrics_path, read_metric
    from homelab.backup.verify import load_verified

    now = now or time.time()
    last = read_metric(metrics_path(session), "homelab_backup_last_success_timestamp_seconds")
    max_age = session.cfg.backup.max_age_hours
    checks = []
    if not last:
        checks.append(fail("backup age", "no complete backup recorded", "inv backup.run; inv backup.schedule"))
    elif now - last > max_age * 3600:
        checks.append(
            fail(
                "backup age",
                f"last good backup {(now - last) / 3600:.0f} h ago (limit {max_age} h)",
                "check <state_dir>/backup.log and the cron entry (inv backup.schedule)",
            )
        )
    else:
        checks.append(ok("backup age", f"last good backup {(now - last) / 3600:.1f} h ago"))
    verified = load_verified(session)
    checks.append(
        ok("backup verify", f"last verified {(now - max(verified.values())) / 3600:.1f} h ago")
        if verified
        else fail("backup verify", "no backup was ever verified", "inv backup.verify")
    )
    if kube is not None and last:
        keys = kube.list_objects(
            "v1",
            "Secret",
            session.cfg.secrets.controller_namespace,
            label_selector="sealedsecrets.bitnami.com/sealed-secrets-key",
        )
        if keys:
            newest = max(
                datetime.fromisoformat(str(k["metadata"]["creationTimestamp"]).replace("Z", "+00:00")) for k in keys
            )
            if newest.timestamp() > last:
                checks.append(fail("sealed secrets key", "renewed after the last backup", "inv secrets.backup-key"))
            else:
                checks.append(ok("sealed secrets key", "backed up after its latest renewal"))
    return checks


def velero_checks(session: Any, kube: Any) -> list[Check]:
    from homelab.backup.velero import doctor_checks

    return doctor_checks(session, kube)  # type: ignore[no-any-return]


def check_sealing_key(session: Any, kube: Any) -> list[Check]:
    """The pinned sealing certificate is one of the controller's keys, and no SealedSecret failed to decrypt."""
    from homelab.secrets import keys, pinning, sealing

    name, path = "sealing key", sealing.cert_path(session)
    try:
        current = keys.controller_certificates(kube, session.cfg.secrets.controller_namespace)
        broken = keys.undecryptable(kube)
    except HomelabError as err:
        return [warn(name, f"cannot read the controller's keys: {err}", "inv up")]
    try:
        pinned = sealing.pinned_certificate(path)
    except HomelabError as err:
        return [warn(name, str(err), "inv secrets.fetch-cert")]
    found = keys.check(pinned, current)
    checks = []
    if found.state == "no-controller":
        checks.append(warn(name, "the Sealed Secrets controller has no key yet", "inv up"))
    elif found.state == "no-pin":
        checks.append(warn(name, f"no certificate pinned at {path}", "inv secrets.fetch-cert"))
    elif found.state == "mismatch":
        _, uncovered = pinning.resealable(session)
        fix = (
            "inv up (the sandbox reseals itself)"
            if session.cfg.target == "sandbox"
            else keys.mismatch_fix(not uncovered)
        )
        checks.append(
            fail(name, f"pinned {found.pinned} is none of the controller's keys ({', '.join(found.current)})", fix)
        )
    else:
        checks.append(ok(name, f"pinned {found.pinned} is one of the controller's {len(current)} key(s)"))
    if broken:
        checks.append(fail("sealed secrets", f"{len(broken)} cannot be decrypted: {broken[0]}", "see 'sealing key'"))
    return checks


def check_sources(session: Any) -> Check:
    """The upstream sources (charts, images, K3S, Argo CD): from the 24 h cache, else asked; offline only warns."""
    from homelab.versions.check import doctor_row

    return Check("sources", *doctor_row(session))


def check_lan(session: Any) -> list[Check]:
    """Each app hostname as the Mac resolves it, and shared mode's forwarder (``homelab.net.doctor``).

    Not on the sandbox: its names exist nowhere, and asking the system resolver would send them out.
    """
    if session.cfg.target == "sandbox":
        return [ok("lan hostnames", "not checked on the sandbox: its hostnames exist only in its own render")]
    from homelab.net import doctor as lan

    return lan.checks(session.cfg)


def check_longhorn(session: Any) -> list[Check]:
    """What the owner must know about the Longhorn option as configured (``homelab.storage.longhorn.notices``)."""
    from homelab.storage import longhorn

    if not session.cfg.options.longhorn:
        return []
    found = longhorn.notices(session.cfg)
    if not found:
        return [ok("longhorn", f"{longhorn.replicas(session.cfg)} replica(s), backups to the offsite store")]
    fix = "docs/guide/backups.md, Longhorn: what it can and cannot protect on one Mac"
    return [warn("longhorn", notice, fix) for notice in found]


def run_checks(session: Any, host_facts: HostFacts | None = None) -> list[Check]:
    from homelab.config.checks import missing_secret_problems
    from homelab.core import cluster
    from homelab.host import tasks as host_layer

    checks = check_tools(session)
    secret_problems = missing_secret_problems(session.cfg)
    checks.append(
        ok("config", "valid")
        if not secret_problems
        else warn(
            "config",
            f"{len(secret_problems)} secret reference(s) missing: {secret_problems[0]}",
            "inv config.validate --secrets",
        )
    )
    checks.append(check_sources(session))
    checks += check_host_network(session, host_facts)
    checks += host_layer.doctor_checks(session)  # the Mac's settings and the nodes' sizing (homelab.host)
    checks += check_nodes(session)
    checks += check_tunnel_hostnames(session)
    checks += check_exposure(session)
    checks += check_lan(session)
    checks += check_longhorn(session)
    kube = None
    try:
        kube = cluster.connect(session)
        if not kube.ready(timeout=5):
            raise HomelabError("the API server does not answer")
        checks.append(ok("cluster", f"API server answers ({session.cfg.context_name()})"))
    except HomelabError as err:
        checks.append(fail("cluster", str(err), "inv up"))
        kube = None
    checks += check_k3s(session, kube)
    if kube is not None:
        if session.cfg.target == "sandbox":
            from homelab.gitops.local import SYNCED_ONLY

            checks += check_sandbox_controllers(session) + check_argocd(kube, SYNCED_ONLY)
            checks.append(ok("certificates", "not checked on the sandbox: no cert-manager runs there"))
        else:
            checks += check_argocd(kube) + check_certificates(kube)
        checks += check_load_balancers(session, kube)
        checks += check_node_requests(kube)
        checks += check_references(session, kube)
        checks += check_sealing_key(session, kube)
        checks += check_tunnel(session, kube)
    checks += check_backups(session, kube)
    checks += velero_checks(session, kube)
    return checks


def render(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in checks], indent=2)
    lines = []
    for c in checks:
        line = f"{c.status.upper():<5} {c.name:<32} {c.detail}"
        if c.fix:
            line += f"\n      fix: {c.fix}"
        lines.append(line)
    return "\n".join(lines)
