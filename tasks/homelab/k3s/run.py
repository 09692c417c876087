"""Carrying out K3S plans in the right order: server first, agents in parallel,
option changes and upgrades one node at a time, with drains that respect PDBs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from homelab.core.cluster import kubeconfig_path
from homelab.core.errors import HomelabError
from homelab.core.kubeconfig import merge_kubeconfig
from homelab.core.plan import Action, Cordon, Drain, LiftPdbs, Plan, RestorePdbs, Run, Wait
from homelab.k3s import plan as k3s
from homelab.k3s import preflight


def observe(session: Any) -> dict[str, k3s.Observed]:
    def one(node: Any) -> k3s.Observed:
        return k3s.parse_probe(session.executor.observe(k3s.probe(node)).stdout)

    with ThreadPoolExecutor(max_workers=max(1, len(session.cfg.nodes))) as pool:
        return dict(zip([n.name for n in session.cfg.nodes], pool.map(one, session.cfg.nodes), strict=True))


def install(session: Any) -> bool:
    """Converge every node to the config; True when anything changed."""
    cfg = session.cfg
    token = k3s.ensure_token(cfg.k3s.token.location(), session.dry_run)
    try:
        preflight.check(session)
        observed = observe(session)
    except HomelabError as err:
        if not session.dry_run:
            raise
        print(f"  nodes cannot be checked yet ({str(err).splitlines()[0]}); planning a fresh install")
        observed = {n.name: k3s.Observed(None, None, None) for n in cfg.nodes}
    plans = k3s.plan_nodes(cfg, observed, token)
    if session.dry_run or plans.empty:
        session.executor.execute(k3s.summarize(plans))
        return False
    server = cfg.server.name
    if server in plans.install:
        session.executor.execute(plans.install[server])
    agents = Plan("install k3s agents in parallel")
    for name, plan in plans.install.items():
        if name != server:
            agents.extend(plan.actions)
    session.executor.execute_concurrently(agents)
    for plan in plans.reconfigure.values():  # one node at a time: never restart two at once
        session.executor.execute(plan)
    fetch_kubeconfig(session)
    if plans.upgrade:
        roll(session, plans.upgrade, cfg.k3s.version)
    return True


def upgrade_order(session: Any, names: list[str]) -> list[str]:
    """Server first, then agents in config order."""
    order = [n.name for n in session.cfg.nodes if n.role == "server"] + [
        n.name for n in session.cfg.nodes if n.role == "agent"
    ]
    return [n for n in order if n in names]


def node_upgrade(session: Any, name: str, version: str, allow_downtime: bool = False) -> Plan:
    """One node's upgrade as a plan: cordon, (lift), drain, install, wait Ready, uncordon, restore."""
    node = session.node(name)

    def pending() -> str | None:
        observed = k3s.parse_probe(session.executor.observe(k3s.probe(node)).stdout)
        if observed.version != version:
            return f"k3s reports {observed.version}"
        return None if session.executor.kube().ready_nodes().get(name) else "node not Ready"

    lift: list[Action] = [LiftPdbs(name)] if allow_downtime else []
    return Plan(
        f"upgrade {name} to k3s {version}",
        [
            Cordon(name),
            *lift,
            Drain(name, session.cfg.k3s.drain_timeout),
            *k3s.installer_files(session.cfg, node),
            k3s.installer_run(session.cfg, node, version),
            Wait(f"{name} to be Ready on {version}", pending, timeout=session.cfg.k3s.ready_timeout),
            *put_back(name),
        ],
    )


def put_back(name: str) -> list[Action]:
    """What every exit path of a node's upgrade ends with: schedulable again, PDBs as they were."""
    return [Cordon(name, uncordon=True), RestorePdbs()]


def roll(session: Any, names: list[str], version: str, allow_downtime: bool = False) -> None:
    """Upgrade nodes one at a time; on any failure put the node back and stop before the next.

    ``allow_downtime`` lifts the PDBs of single-replica critical apps for each
    node's drain; they are restored once the node is back, or when it fails.
    """
    for name in upgrade_order(session, names):
        try:
            session.executor.execute(node_upgrade(session, name, version, allow_downtime))
        except (HomelabError, KeyboardInterrupt) as err:
            session.executor.execute(Plan(f"put {name} back after the failed upgrade", put_back(name)))
            if isinstance(err, KeyboardInterrupt):
                raise
            raise HomelabError(
                f"{err}. {name} was uncordoned and its lifted PDBs restored; nodes after it were not touched. "
                "If a PodDisruptionBudget blocked the drain: scale the app to 2+ replicas, or accept a short "
                "outage of single-replica apps with inv k3s.upgrade --allow-downtime; then re-run"
            ) from None


def upgrade(session: Any, allow_downtime: bool = False) -> bool:
    """Roll every node whose version differs from the config."""
    preflight.check(session)
    observed = observe(session)
    behind = [
        n.name
        for n in session.cfg.nodes
        if observed[n.name].installed and observed[n.name].version != session.cfg.k3s.version
    ]
    missing = [n.name for n in session.cfg.nodes if not observed[n.name].installed]
    if missing:
        raise HomelabError(f"k3s is not installed on {', '.join(missing)}; run inv k3s.install first")
    if not behind:
        session.executor.out(f"k3s: every node runs {session.cfg.k3s.version}; nothing to do")
        return False
    roll(session, upgrade_order(session, behind), session.cfg.k3s.version, allow_downtime)
    return not session.dry_run


def fetch_kubeconfig(session: Any, target: Path | None = None) -> Path:
    """Merge the server's k3s.yaml into the target kubeconfig as the homelab's context."""
    server = session.cfg.server
    text = session.executor.observe(Run(("cat", k3s.KUBECONFIG_PATH), host=server.name, sudo=True)).stdout
    source = yaml.safe_load(text)
    path = target or kubeconfig_path(session)
    merge_kubeconfig(path, source, session.cfg.context_name(), server=k3s.api_endpoint(session.cfg))
    return path


def uninstall(session: Any) -> None:
    """Agents first (in parallel), then the server, with K3S's own uninstall scripts."""
    cfg = session.cfg
    agents = Plan("uninstall k3s agents")
    for node in cfg.agents:
        agents.add(
            Run(
                ("sh", "-c", "[ ! -x /usr/local/bin/k3s-agent-uninstall.sh ] || /usr/local/bin/k3s-agent-uninstall.sh"),
                host=node.name,
                sudo=True,
                why="remove k3s agent",
            )
        )
    server = Plan(
        "uninstall k3s server",
        [
            Run(
                ("sh", "-c", "[ ! -x /usr/local/bin/k3s-uninstall.sh ] || /usr/local/bin/k3s-uninstall.sh"),
                host=cfg.server.name,
                sudo=True,
                why="remove k3s server",
            )
        ],
    )
    session.executor.execute_concurrently(agents)
    session.executor.execute(server)
