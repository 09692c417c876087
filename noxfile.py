"""Sessions CI and developers run: lint, unit tests, integration tests on real parts, benchmarks.

`nox` with no arguments runs them all, in that order; it is the README's test command.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "integration", "bench"]

ROOT = Path(__file__).parent
YAML_DIRS = ["config", "k8s", "lima", "tests/configs"]
# Runs with the reference config (nodes on 192.168.105.x) get loopback only: a mistake fails, sends nothing.
NO_NETWORK = ["python", "scripts/no_network.py"]


def install(session: nox.Session, extras: str) -> None:
    session.install("-e", f".[{extras}]")


def binaries(session: nox.Session, *targets: str) -> None:
    """Build or reuse the pinned binaries (a no-op with a warm cache)."""
    session.run("bash", "scripts/get-binaries.sh", *targets, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy, yamllint, terraform fmt/validate, k8s/ render check, limactl validate on every template."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("yamllint", "--strict", *[d for d in YAML_DIRS if (ROOT / d).is_dir()])
    terraform_check(session)
    reference = {"HOMELAB_CONFIG": str(ROOT / "config" / "homelab.yaml")}
    session.run(*NO_NETWORK, "inv", "gitops.render", "--check", env=reference)
    session.run(*NO_NETWORK, "inv", "secrets.check", env=reference)
    binaries(session, "lima")
    session.run("python", "scripts/validate_lima_templates.py", "config/homelab.yaml", "tests/configs/loopback.yaml")


def terraform_check(session: nox.Session) -> None:
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        session.error("terraform or tofu is required: run scripts/get-binaries.sh tofu")
    session.run(binary, "fmt", "-check", "-recursive", "terraform", external=True)
    with tempfile.TemporaryDirectory() as work:
        for tf in (ROOT / "terraform").glob("*.tf"):
            shutil.copy(tf, work)
        env = {"CHECKPOINT_DISABLE": "1"}
        session.run(binary, f"-chdir={work}", "init", "-input=false", "-no-color", external=True, env=env, silent=True)
        session.run(binary, f"-chdir={work}", "validate", "-no-color", external=True, env=env)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests: planning logic and task wiring (no external services)."""
    install(session, "test")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests against real parts: sandbox API server, sshd, terraform, limactl."""
    install(session, "test")
    binaries(session, "sandbox", "crds", "controllers", "lima", "amtool", "restic", "kubeseal")
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured against a baseline in the same run, printed as a table."""
    install(session, "test")
    binaries(session, "sandbox", "crds", "controllers", "restic")  # inv up --target sandbox starts the controllers
    session.run("python", "benchmarks/run.py", *session.posargs)
