"""Sessions CI and developers run: lint, unit tests, integration tests on real parts, benchmarks.

`nox` with no arguments runs them all, in that order; it is the README's test command.
`nox -s mutation` (not a default: it costs minutes of CPU) measures how many mutants
of the pure modules the unit tests kill.
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
    """ruff, mypy, yamllint, terraform fmt/validate, k8s/ render check, the manual, limactl validate on templates."""
    install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("yamllint", "--strict", *[d for d in YAML_DIRS if (ROOT / d).is_dir()])
    terraform_check(session)
    reference = {"HOMELAB_CONFIG": str(ROOT / "config" / "homelab.yaml")}
    session.run(*NO_NETWORK, "inv", "gitops.render", "--check", env=reference)
    session.run(*NO_NETWORK, "inv", "secrets.check", env=reference)
    docs_check(session)
    binaries(session, "lima")
    session.run("python", "scripts/validate_lima_templates.py", "config/homelab.yaml", "tests/configs/loopback.yaml")


def docs_check(session: nox.Session) -> None:
    """The generated reference pages match the code; the manual builds with no broken link or anchor."""
    session.run("python", "scripts/gen_docs.py", "--check")
    with tempfile.TemporaryDirectory() as site:
        session.run("mkdocs", "build", "--strict", "--quiet", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})


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


# Most integration tests wait (Argo CD syncing, VMs booting, backoffs), so two pytest-xdist workers
# overlap that waiting. A module stays on one worker (its module-scoped sandboxes are built once);
# the order is the conftest's, longest first. `nox -s integration -- -n 0` runs them one at a time.
INTEGRATION_WORKERS = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests against real parts: sandbox API server, sshd, terraform, real Lima VMs."""
    install(session, "test")
    binaries(session, "sandbox", "crds", "controllers", "lima", "amtool", "restic", "kubeseal", "boltdb", "versitygw")
    binaries(session, "coredns")  # tests/integration/test_lan_dns.py runs the real CoreDNS
    session.run("bash", "scripts/build-guest-image.sh", external=True)  # the real-VM tests boot it (cached)
    session.run("pytest", "tests/integration", *INTEGRATION_WORKERS, "--durations=30", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured against a baseline in the same run, printed as a table."""
    install(session, "test")
    binaries(session, "sandbox", "crds", "controllers", "restic")  # inv up --target sandbox starts the controllers
    session.run("python", "benchmarks/run.py", *session.posargs)


MUTMUT = "mutmut==3.8.1"
# The pure modules (config validation, plan and executor, preflight, K3S planning, retention,
# backup rules), whole, or only the named functions where the rest drives restic.
MUTATED: dict[str, list[str]] = {
    "homelab/config/schema.py": [],
    "homelab/config/kinds.py": [],
    "homelab/config/cron.py": [],
    "homelab/config/image_ref.py": [],
    "homelab/config/urls.py": [],
    "homelab/config/checks.py": [],
    "homelab/config/loader.py": [],
    "homelab/core/plan.py": [],
    "homelab/core/executor.py": [],
    "homelab/k3s/preflight.py": [],
    "homelab/k3s/plan.py": [],
    "homelab/backup/prune.py": ["_day", "_buckets", "plan"],  # prune_plan, execute: restic (integration tests)
    "homelab/backup/verify.py": ["choose", "check_manifest", "datastore_kind"],
}
# Tests left out of the mutation run, because each would cost minutes per surviving config mutant:
# the ones that drive the CLI in child processes (30-60 s each under mutmut, which imports the
# mutated package in every child; the same rules are checked in-process by test_config_*_rules.py
# and test_bad_config_is_rejected_naming_the_key), and the layout rules, which parse the source.
MUTATION_SKIPPED = [
    *(
        f"tests/unit/test_config.py::{name}"
        for name in (
            "test_bad_configs_exit_2_and_execute_nothing",
            "test_cli_flag_beats_env_for_target",
            "test_config_show_json_roundtrip_keeps_every_section",
            "test_validate_secrets_names_the_missing_reference",
            "test_show_lists_secret_references_not_values",
            "test_secret_pasted_as_value_is_never_echoed",
        )
    ),
    "tests/unit/test_layout.py",
]
MUTATION_DATA = ["config", "k8s", "lima", "scripts", "terraform"]  # what the unit tests read from the checkout


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over the pure modules with the unit tests; prints the kill rate. Posargs: mutant names to re-run."""
    install(session, "test")
    session.install(MUTMUT)
    stage = mutation_stage(Path(session.create_tmp()).resolve() / "mutation")
    session.chdir(stage)
    # PYTHONPATH: `inv` started by a test imports the mutated package too (mutmut sets the active mutant in the env)
    env = {"PYTHONPATH": str(stage / "mutants" / "src")}
    session.run("mutmut", "run", "--max-children", "2", *session.posargs, env=env)
    scope = [f"{path}:{','.join(functions)}" if functions else path for path, functions in MUTATED.items()]
    session.run("python", str(ROOT / "scripts" / "mutation_report.py"), str(stage), *scope)


def mutation_stage(stage: Path) -> Path:
    """A fresh copy of the repo laid out the way mutmut 3 imports it: the package under src/.

    mutmut names a mutant after its file path and strips only a ``src.`` prefix, so
    ``tasks/homelab`` becomes ``src/homelab`` here; tests, tasks.py and the
    directories the tests read (MUTATION_DATA) come along.
    """
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".terraform", "*.tfstate*")
    shutil.copytree(ROOT / "tasks" / "homelab", stage / "src" / "homelab", ignore=ignore)
    shutil.copytree(ROOT / "tests", stage / "tests", ignore=ignore)
    for data in MUTATION_DATA:
        shutil.copytree(ROOT / data, stage / data, ignore=ignore)
    shutil.copy2(ROOT / "tasks.py", stage / "tasks.py")
    only = ", ".join(f'"src/{path}"' for path in MUTATED)
    data = ", ".join(f'"{path}"' for path in MUTATION_DATA)
    skipped = ", ".join(f'"--deselect", "{test}"' for test in MUTATION_SKIPPED)
    settings = f"""
[tool.mutmut]
source_paths = ["src/homelab"]
only_mutate = [{only}]
also_copy = [{data}, "tasks.py"]
pytest_add_cli_args_test_selection = ["tests/unit"]
pytest_add_cli_args = ["-p", "no:cacheprovider", {skipped}]
"""
    (stage / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + settings)
    # mutmut runs the tests in mutants/, where helpers.py puts <checkout>/tasks first on sys.path: the mutated package
    (stage / "mutants").mkdir()
    (stage / "mutants" / "tasks").symlink_to("src")
    return stage
