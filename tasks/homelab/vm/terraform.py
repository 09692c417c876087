"""Drive the ``terraform/`` module with terraform or tofu, in the state directory.

The module's files are copied into ``<state_dir>/terraform`` so that state,
plans and ``.terraform`` never land in the checkout. Inputs go in a JSON var
file; every command is an argv with ``-chdir``.

``terraform init`` writes into the directory it runs in (``.terraform``, a lock
file) and ``plan`` takes the state lock, so in the real workspace both count as
changes: ``init`` is an action of the plan, run just before ``apply`` or
``destroy``. Finding out what Terraform would do is an observation instead:
``scratch_plan`` runs ``init`` and ``plan`` in a throwaway copy of the workspace
holding the files the plan would write, so ``--dry-run``, ``vm.plan`` and the
re-check after acting never touch the state directory.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homelab.config.kinds import size_mib
from homelab.config.schema import HomelabConfig
from homelab.core.paths import project_root
from homelab.core.plan import Run, WriteFile
from homelab.vm.lima import identity_hash, lima_nodes, spec_hash

MODULE_DIR = Path("terraform")
VAR_FILE = "homelab.auto.tfvars.json"
ENV = (("CHECKPOINT_DISABLE", "1"), ("TF_IN_AUTOMATION", "1"))
# What an apply or destroy shows as it goes (creating a VM takes minutes): Terraform's own line
# for each step of each resource, not the provisioners' output, and one "still ..." line a minute.
PROGRESS = (
    r"^terraform_data\.\S+: (Creating|Modifying|Destroying|Creation complete|Modifications complete"
    r"|Destruction complete|Still \w+\.\.\. \[\d+m0s elapsed\])"
)


@dataclass(frozen=True)
class Workspace:
    """Where one homelab's Terraform state lives and which binary runs it."""

    directory: Path
    binary: str
    # What every limactl Terraform starts must see too (the QEMU accelerator on Linux hosts).
    extra_env: tuple[tuple[str, str], ...] = ()

    def run(self, *args: str, why: str = "", progress: str = "") -> Run:
        argv = (self.binary, f"-chdir={self.directory}", *args)
        return Run(argv, why=why, env=ENV + self.extra_env, progress=progress)

    def init(self) -> Run:
        return self.run("init", "-input=false", "-no-color", why="prepare the module")

    def plan(self, targets: list[str], destroy: bool = False) -> Run:
        mode = ("-destroy",) if destroy else ()
        return self.run("plan", "-input=false", "-no-color", "-detailed-exitcode", *mode, *_target_args(targets))

    def apply(self, targets: list[str], parallelism: int) -> Run:
        return self.run(
            "apply",
            "-input=false",
            "-no-color",
            "-auto-approve",
            f"-parallelism={parallelism}",
            *_target_args(targets),
            why="create or replace VMs whose spec changed",
            progress=PROGRESS,
        )

    def destroy(self, targets: list[str]) -> Run:
        argv = ("destroy", "-input=false", "-no-color", "-auto-approve", *_target_args(targets))
        return self.run(*argv, why="delete VMs", progress=PROGRESS)

    def output(self) -> Run:
        return self.run("output", "-no-color", "-json", "vms")


@dataclass(frozen=True)
class Planned:
    """What ``terraform plan`` said: whether anything would change, and its report."""

    changes: bool
    report: str


def scratch_plan(
    executor: Any, ws: Workspace, writes: list[WriteFile], targets: list[str], destroy: bool = False
) -> Planned:
    """``terraform plan`` as if ``writes`` were done, run in a copy of the workspace (an observation).

    The copy holds the workspace's files (state included, ``.terraform`` and
    lock files left out) with the pending ``writes`` into the workspace laid over
    them; whatever init and plan write there is thrown away with it.
    """
    from homelab.core.errors import CommandFailed

    with tempfile.TemporaryDirectory(prefix="homelab-terraform-") as tmp:
        scratch = Path(tmp) / "workspace"
        if ws.directory.is_dir():
            skip = shutil.ignore_patterns(".terraform", ".terraform.tfstate.lock.info")
            shutil.copytree(ws.directory, scratch, symlinks=True, ignore=skip)
        scratch.mkdir(parents=True, exist_ok=True)
        for write in writes:
            path = Path(write.path)
            if path.parent == ws.directory:
                (scratch / path.name).write_bytes(write.data())
        copy = Workspace(scratch, ws.binary)
        executor.observe(copy.init())
        result = executor.observe(copy.plan(targets, destroy), check=False)
    if result.exited not in (0, 2):
        raise CommandFailed("local", "terraform plan", result.exited, result.stderr or result.stdout)
    report = str(result.stdout).replace(str(scratch), str(ws.directory))
    return Planned(result.exited == 2, report)


def outputs(executor: Any, ws: Workspace) -> dict[str, Any]:
    """The ``vms`` output of the workspace's state ({} before the first apply); reading it writes nothing."""
    if not (ws.directory / "terraform.tfstate").is_file():
        return {}
    result = executor.observe(ws.output(), check=False)
    found: dict[str, Any] = json.loads(result.stdout or "{}") if result.exited == 0 else {}
    return found


def _target_args(names: list[str]) -> list[str]:
    return [f'-target=terraform_data.{kind}["{name}"]' for name in names for kind in ("vm", "size")]


REPLACED = re.compile(r'^\s*# terraform_data\.(vm|size)\["([^"]+)"\] must be replaced$', re.MULTILINE)


def replacements(report: str) -> tuple[list[str], list[str]]:
    """From a plan's report: (VMs that would be deleted and created again, VMs resized in place).

    A tainted VM (its create or start failed) reads "is tainted, so must be replaced":
    finishing it loses nothing, so it is not among the first.
    """
    found: dict[str, list[str]] = {"vm": [], "size": []}
    for kind, name in REPLACED.findall(report):
        found[kind].append(name)
    return sorted(found["vm"]), sorted(found["size"])


def module_files(ws: Workspace) -> list[WriteFile]:
    """Copy the module into the workspace (only changed files are rewritten)."""
    files = []
    for source in sorted((project_root() / MODULE_DIR).glob("*.tf")):
        target = ws.directory / source.name
        text = source.read_text()
        if not target.is_file() or target.read_text() != text:
            files.append(WriteFile(str(target), text, 0o644, why="terraform module"))
    return files


def variables(cfg: HomelabConfig, templates: dict[str, Path], rendered: dict[str, str], limactl: str) -> dict[str, Any]:
    """The module's inputs: per VM its template, what replaces it (``spec_hash``) and what resizes it in place."""
    vms = {}
    for node in lima_nodes(cfg):
        memory, disk = size_mib(node.memory), size_mib(node.disk)
        vms[node.name] = {
            "template": str(templates[node.name]),
            "spec_hash": identity_hash(rendered[node.name]),
            "size_hash": spec_hash(f"{node.cpus} {memory} {disk}"),
            "ip": node.ip,
            "role": node.role,
            "cpus": node.cpus,
            "memory": node.memory,
            "disk": node.disk,
            # limactl edit takes GiB; limactl list reports bytes
            "memory_gib": f"{memory / 1024:g}",
            "disk_gib": f"{disk / 1024:g}",
            "memory_bytes": str(memory * 1024 * 1024),
            "disk_bytes": str(disk * 1024 * 1024),
        }
    return {"limactl": limactl, "vms": vms}


def var_file(ws: Workspace, values: dict[str, Any]) -> list[WriteFile]:
    text = json.dumps(values, indent=2, sort_keys=True) + "\n"
    target = ws.directory / VAR_FILE
    if target.is_file() and target.read_text() == text:
        return []
    return [WriteFile(str(target), text, 0o644, why="inputs for the VM module")]


def choose_binary(preferred: str) -> str:
    """The configured binary, or the other one if only that is installed."""
    from homelab.core.tools import find, require

    if find(preferred):
        return require(preferred)
    other = "tofu" if preferred == "terraform" else "terraform"
    return shutil.which(other) or require(preferred)
