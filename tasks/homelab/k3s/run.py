"""Carrying out K3S plans in the right order: server first, agents in parallel,
option changes and upgrades one node at a time, with drains that respect PDBs.

Each step is planned from what the nodes and the cluster hold now, then run by
the session's executor (or only printed, under ``--dry-run``). A step whose plan
depends on an earlier step having run (the kubeconfig, which exists once the
server runs K3S) is a note in the dry run. After acting, ``install`` and
``upgrade`` observe again and fail, naming what is left, unless nothing is.

A version change goes one Kubernetes minor at a time (``homelab.k3s.versions``):
both refuse a downgrade before changing anything; a target more than one minor
ahead of a node is refused too, except by ``upgrade`` with ``walk`` (``--yes``),
which rolls through each minor's release, observing the nodes again between steps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from homelab.core.cluster import kubeconfig_path
from homelab.core.errors import HomelabError
from homelab.core.kube.nodes import LIFTED_ANNOTATION, SINGLE_REPLICA_LABEL
from homelab.core.kubeconfig import merge_action
from homelab.core.pins import load as load_pins
from homelab.core.plan import Action, Note, Plan, Run
from homelab.core.secret_refs import Secret
from homelab.gitops import hold
from homelab.k3s import plan as k3s
from homelab.k3s import preflight, versions
from homelab.storage import longhorn


def observe(session: Any) -> dict[str, k3s.Observed]:
    def one(node: Any) -> k3s.Observed:
        return k3s.parse_probe(session.executor.observe(k3s.probe(node)).stdout)

    with ThreadPoolExecutor(max_workers=max(1, len(session.cfg.nodes))) as pool:
        return dict(zip([n.name for n in session.cfg.nodes], pool.map(one, session.cfg.nodes), strict=True))


def running(observed: dict[str, k3s.Observed]) -> dict[str, str]:
    """The version each node with K3S reports (nodes without it are left out)."""
    return {name: o.version for name, o in observed.items() if o.version}


def check_nodes(session: Any) -> tuple[dict[str, k3s.Observed], list[Action], Plan]:
    """Preflight and observe every node; also the notes for the plan and the tools to install first.

    Under ``--dry-run`` nodes that cannot be reached yet (VMs the same dry run
    would create) are planned as fresh, and the plan says so.
    """
    try:
        facts = preflight.check(session)
        return observe(session), [], preflight.install_missing_tools(facts)
    except HomelabError as err:
        if not session.dry_run:
            raise
        fresh = {n.name: k3s.Observed(None, None, None) for n in session.cfg.nodes}
        note = Note(f"nodes cannot be checked yet ({first_problem(err)}); planning a fresh install")
        return fresh, [note], preflight.install_missing_tools({})


SERVER_TOKEN = "/var/lib/rancher/k3s/server/token"  # noqa: S105 - where K3S keeps its token, a path


def require_no_cluster_yet(session: Any, observed: dict[str, k3s.Observed]) -> None:
    """Refuse to generate a cluster token while any node runs K3S: it holds data encrypted with the old one.

    K3S then refuses to start ("bootstrap data already found and encrypted with different
    token"). The token file goes missing with a new Mac or a restored checkout; the token
    itself is in every backup with the datastore, and on the server.
    """
    running = sorted(name for name, seen in observed.items() if seen.installed)
    if not running:
        return
    location = session.cfg.k3s.token.location()
    path = str(Path(str(location.file)).expanduser())
    server = session.endpoint(session.cfg.server)
    raise HomelabError(
        f"k3s.token: {path} does not exist, but {', '.join(running)} already run K3S with the cluster's token; "
        'a new token would lock K3S out of its own data ("bootstrap data already found and encrypted with '
        f"different token\"). Nothing was changed. Put the cluster's token back at {path} (mode 0600): "
        f"{token_in_backup(session, path)}or copy it from the server: ssh -p {server.port} {server.user}@{server.host} "
        f"sudo cat {SERVER_TOKEN} (the part after '::server:')"
    )


def token_in_backup(session: Any, path: str) -> str:
    """Where the newest backup that holds the token is, and the commands that put it back; '' when none is found."""
    if "datastore" not in session.cfg.backup.components:
        return ""
    try:
        from homelab.backup.restic import restic_for

        snapshots = [snap for snap in restic_for(session).snapshots() if snap.tag_value("status") == "complete"]
    except HomelabError:
        return ""  # no repository or no password here: the server still has it
    if not snapshots:
        return ""
    newest = max(snapshots, key=lambda snap: snap.time)
    return (
        f"backup snapshot {newest.id} ({newest.time[:19]}) holds it: inv backup.restore --snapshot {newest.id} "
        f"--component datastore --to /tmp/homelab-token && install -m 600 /tmp/homelab-token/datastore/token {path}; "
    )


def first_problem(err: HomelabError) -> str:
    """The first problem an error names, and how many more: not the preflight's header line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    problems = lines[1:] if len(lines) > 1 and lines[0].endswith(":") else lines
    more = f"; {len(problems) - 1} more" if len(problems) > 1 else ""
    return f"{problems[0]}{more}" if problems else type(err).__name__


def install(session: Any) -> bool:
    """Converge every node to the config, then re-check; True when anything changed."""
    cfg, executor = session.cfg, session.executor
    token, make_token = k3s.cluster_token(cfg.k3s.token.location())
    observed, notes, tools = check_nodes(session)
    if make_token:
        require_no_cluster_yet(session, observed)  # a new token for a running cluster locks K3S out of its data
    versions.plan(running(observed), cfg.k3s.version, load_pins())  # a downgrade or a skipped minor: refused here
    plans = k3s.plan_nodes(cfg, observed, token)
    server = cfg.server.name
    agents = Plan("install k3s agents in parallel")
    for name, plan in plans.install.items():
        if name != server:
            agents.extend(plan.actions)
    if server in plans.install and session.dry_run:  # the kubeconfig is planned once the server runs K3S
        plans.install[server].add(Note(kubeconfig_later(session)))
    first = [tools, Plan("k3s cluster token", [*notes, *make_token]), plans.install.get(server, Plan("k3s server"))]
    changed = run_steps(executor, first)  # the server first: agents join it
    changed = run_steps(executor, [agents], parallel=True) or changed
    changed = run_steps(executor, list(plans.reconfigure.values())) or changed  # one at a time: never two restarts
    if observed[server].installed or not session.dry_run:
        changed = run_steps(executor, [kubeconfig_plan(session)]) or changed
    if plans.upgrade:
        run_steps(executor, [recovery(session)])
        roll(session, plans.upgrade, cfg.k3s.version)
        changed = True
    if not changed:
        executor.execute(k3s.done_notes(plans))
        return False
    if not session.dry_run:
        require_converged(session, token)
    return not session.dry_run


def run_steps(executor: Any, plans: list[Plan], parallel: bool = False) -> bool:
    """Execute (or print) each plan that holds anything; True when one of them changes something."""
    changed = False
    for plan in plans:
        if not plan.actions:
            continue
        changed = changed or not plan.empty
        if parallel:
            executor.execute_concurrently(plan)
        else:
            executor.execute(plan)
    return changed


def require_converged(session: Any, token: Secret) -> None:
    """Observe the nodes and the kubeconfig again; fail naming whatever still differs."""
    observed = observe(session)
    left = k3s.pending(session.cfg, k3s.plan_nodes(session.cfg, observed, token), observed)
    if not kubeconfig_plan(session).empty:
        left.append(f"{kubeconfig_path(session)}: context {session.cfg.context_name()} is not the server's")
    if left:
        raise HomelabError("k3s did not converge; still pending:\n  " + "\n  ".join(left))


def kubeconfig_plan(session: Any, target: Path | None = None) -> Plan:
    """Merge the server's k3s.yaml into the target kubeconfig as the homelab's context (0600).

    Reads k3s.yaml on the server (a read-only observation, done under --dry-run too).
    """
    server = session.cfg.server
    path = target or kubeconfig_path(session)
    read = Run(("cat", k3s.KUBECONFIG_PATH), host=server.name, sudo=True, why="read the server's kubeconfig")
    source = yaml.safe_load(session.executor.observe(read).stdout)
    action = merge_action(path, source, session.cfg.context_name(), server=k3s.api_endpoint(session.cfg))
    return Plan(f"merge the server's kubeconfig into {path} as context {session.cfg.context_name()}", [action])


def kubeconfig_later(session: Any) -> str:
    return (
        f"then: merge the server's kubeconfig into {kubeconfig_path(session)} as context "
        f"{session.cfg.context_name()} (0600); planned once K3S runs on {session.cfg.server.name}"
    )


def upgrade_order(session: Any, names: list[str]) -> list[str]:
    """Server first, then agents in config order."""
    order = [n.name for n in session.cfg.nodes if n.role == "server"] + [
        n.name for n in session.cfg.nodes if n.role == "agent"
    ]
    return [n for n in order if n in names]


def node_upgrade(
    session: Any, name: str, version: str, allow_downtime: bool = False, left: list[hold.Paused] | None = None
) -> tuple[Plan, list[Action]]:
    """One node's upgrade as a plan, its Wait checking the node's own version and its readiness; and the
    actions that resume Argo CD if the plan stops after pausing it (``liftable_pdbs``)."""
    node = session.node(name)

    def pending() -> str | None:
        observed = k3s.parse_probe(session.executor.observe(k3s.probe(node)).stdout)
        if observed.version != version:
            return f"k3s reports {observed.version}"
        return None if session.executor.kube().ready_nodes().get(name) else "node not Ready"

    held = hold.Hold([], [])
    if allow_downtime:
        held = hold.observe(session.executor.kube(), liftable_pdbs(session.executor.kube(), name), left or [])
    steps = (held.pause(session.state_dir, f"the upgrade of {name}"), held.resume(session.state_dir))
    detached = longhorn.detached_check(session.executor.kube(), name) if session.cfg.options.longhorn else None
    return k3s.upgrade_plan(session.cfg, node, version, pending, allow_downtime, steps, detached), steps[1]


def liftable_pdbs(kube: Any, node: str) -> list[Any]:
    """The PDBs a lift on ``node`` may change: labelled ones in the namespaces of its pods (as ``LiftPdbs``)."""
    pods = kube.list_objects("v1", "Pod", field_selector=f"spec.nodeName={node}")
    return [
        pdb
        for namespace in sorted({p["metadata"]["namespace"] for p in pods})
        for pdb in kube.list_objects(
            "policy/v1", "PodDisruptionBudget", namespace, label_selector=f"{SINGLE_REPLICA_LABEL}=true"
        )
    ]


def recovery(session: Any) -> Plan:
    """Put back what an earlier, interrupted upgrade left (read from the cluster's annotations)."""
    kube = session.executor.kube()
    marked = [
        n["metadata"]["name"]
        for n in kube.list_objects("v1", "Node")
        if k3s.UPGRADING_ANNOTATION in (n["metadata"].get("annotations") or {})
    ]
    lifted = [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in kube.list_objects("policy/v1", "PodDisruptionBudget", label_selector=f"{SINGLE_REPLICA_LABEL}=true")
        if LIFTED_ANNOTATION in (p["metadata"].get("annotations") or {})
    ]
    return k3s.recovery_plan(marked, lifted)


def roll(session: Any, names: list[str], version: str, allow_downtime: bool = False) -> None:
    """Upgrade nodes one at a time; on any failure put the node back and stop before the next.

    ``allow_downtime`` lifts the PDBs of single-replica critical apps for each
    node's drain; they are restored once the node is back, or when it fails.
    """
    with hold.holding(session) as left:  # a killed run's pause of Argo CD is adopted or resumed; one holder
        _roll(session, names, version, allow_downtime, left)


def _roll(session: Any, names: list[str], version: str, allow_downtime: bool, left: list[hold.Paused]) -> None:
    order = upgrade_order(session, names)
    for index, name in enumerate(order):
        resume: list[Action] = []
        try:
            plan, resume = node_upgrade(session, name, version, allow_downtime, left)
            session.executor.execute(plan)
        except (HomelabError, KeyboardInterrupt) as err:
            done = put_node_back(session, name, resume)
            if isinstance(err, KeyboardInterrupt):
                raise
            untouched = ", ".join(order[index + 1 :]) or "none"
            hint = ""
            if "PodDisruptionBudget" in str(err) and not allow_downtime:
                hint = (
                    "\nIf a PodDisruptionBudget blocked the drain: scale the app to 2+ replicas, or accept a short "
                    "outage of single-replica apps with inv k3s.upgrade --allow-downtime."
                )
            raise HomelabError(
                f"upgrade of {name} to k3s {version} failed: {err}\n{done}\n"
                f"Nodes after {name} were not touched: {untouched}.{hint}\nFix the cause, then re-run."
            ) from None


def put_node_back(session: Any, name: str, resume: list[Action] | None = None) -> str:
    """Put a node whose upgrade failed back (and Argo CD, when it was held back); say what was restored."""
    try:
        results = session.executor.execute(Plan(f"put {name} back after its failed upgrade", k3s.put_back(name)))
        if resume:
            session.executor.execute(Plan("resume Argo CD automated sync", resume))
    except HomelabError as err:
        return (
            f"Putting {name} back failed too ({err}): {name} may still be cordoned and PodDisruptionBudgets lifted "
            f"(their old minAvailable is kept in their {LIFTED_ANNOTATION} annotation). "
            f"Re-run inv k3s.upgrade to put them back, or kubectl uncordon {name}."
        )
    restored = results[-1] if results else []
    pdbs = (
        f"PodDisruptionBudgets back at their old minAvailable: {', '.join(restored)}"
        if restored
        else "no PodDisruptionBudget was lifted"
    )
    return f"Restored: {name} uncordoned; {pdbs}."


def upgrade(session: Any, allow_downtime: bool = False, walk: bool = False) -> bool:
    """Put back what an interrupted run left, roll every node behind the config, then re-check.

    A downgrade is refused, and so is a target more than one minor ahead of a node
    unless ``walk``: then each step is a rolling upgrade of its own, and the nodes
    are observed again before the next. ``--dry-run`` prints every step.
    """
    cfg = session.cfg
    preflight.check(session)
    observed = observe(session)
    missing = [n.name for n in cfg.nodes if not observed[n.name].installed]
    if missing:
        raise HomelabError(f"k3s is not installed on {', '.join(missing)}; run inv k3s.install first")
    pins = load_pins()
    found = versions.plan(running(observed), cfg.k3s.version, pins, walk=walk or session.dry_run)
    changed = run_steps(session.executor, [recovery(session)])
    if not found:
        session.executor.execute(Plan(f"k3s upgrade to {cfg.k3s.version}", [Note("every node runs it")]))
        return changed and not session.dry_run
    total = len(found)
    if total > 1:
        way = versions.route(running(observed), found)
        needs = "" if walk else " (a real run needs --yes)"
        session.executor.out(f"k3s upgrade in {total} steps, one minor at a time: {way}{needs}")
    if session.dry_run:
        for number, step in enumerate(found, 1):
            announce(session, number, total, step)
            roll(session, list(step.nodes), step.version, allow_downtime)
        return False
    for number in range(1, total + 1):
        step = found[0]
        announce(session, number, total, step)
        roll(session, list(step.nodes), step.version, allow_downtime)
        observed = observe(session)  # the next step is planned from what the nodes run now
        found = versions.plan(running(observed), cfg.k3s.version, pins, walk=True)
        if not found:
            return True
        if found[0] == step or number == total:
            left = [f"{n}: runs k3s {observed[n].version}" for n in found[0].nodes]
            raise HomelabError(f"k3s upgrade to {step.version} did not converge:\n  " + "\n  ".join(left))
    return True


def announce(session: Any, number: int, total: int, step: versions.Step) -> None:
    """The header of one step of a multi-minor upgrade (nothing for a single step)."""
    if total > 1:
        session.executor.out(f"step {number} of {total}: k3s {step.version} on {', '.join(step.nodes)}")


def uninstall_plans(session: Any) -> tuple[Plan, Plan]:
    """Agents (run in parallel), then the server: K3S's own uninstall script where K3S is installed."""
    cfg = session.cfg
    observed = observe(session)

    def remove(node: Any, script: str) -> Action:
        if not observed[node.name].installed:
            return Note("k3s is not installed", host=node.name)
        guarded = f"[ ! -x {script} ] || {script}"
        return Run(("sh", "-c", guarded), host=node.name, sudo=True, why=f"remove k3s {node.role}")

    agents = Plan("uninstall k3s agents", [remove(n, "/usr/local/bin/k3s-agent-uninstall.sh") for n in cfg.agents])
    server = Plan("uninstall k3s server", [remove(cfg.server, "/usr/local/bin/k3s-uninstall.sh")])
    return agents, server


def uninstall(session: Any, plans: tuple[Plan, Plan] | None = None) -> bool:
    """Run the uninstall plans, then check that no node still runs K3S; True when anything was removed."""
    agents, server = plans or uninstall_plans(session)
    if agents.empty and server.empty:
        session.executor.execute(Plan("uninstall k3s", [*agents.actions, *server.actions]))
        return False
    session.executor.execute_concurrently(agents)
    session.executor.execute(server)
    if session.dry_run:
        return False
    left = [name for name, o in observe(session).items() if o.installed]
    if left:
        raise HomelabError(f"k3s is still installed on {', '.join(left)} after its uninstall script ran")
    return True
