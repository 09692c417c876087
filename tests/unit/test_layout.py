"""The folder tree is the map: one package per namespace, a shared core that depends on no layer.

These are the layout rules of the code base, checked on the source itself, so a
module placed in the wrong package or reaching into another layer's private
helpers fails here rather than in review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / "tasks" / "homelab"
NAMESPACES = [
    "apps",
    "backup",
    "config",
    "gitops",
    "host",
    "k3d",
    "k3s",
    "net",
    "sandbox",
    "secrets",
    "storage",
    "tls",
    "versions",
    "vm",
]
# The config model is what every layer reads; core may import its schema and loader, nothing else of a layer.
CORE_MAY_IMPORT = {"homelab.config.schema", "homelab.config.loader"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every ``from homelab... import`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("homelab"):
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("name", NAMESPACES)
def test_each_namespace_is_a_package_holding_its_collection(name: str) -> None:
    from homelab.cli import namespace

    tasks_module = PACKAGE / name / "tasks.py"
    assert tasks_module.is_file(), f"homelab/{name}/tasks.py should declare the {name} namespace"
    assert name in namespace.collections, f"the root collection has no {name} namespace"
    source = tasks_module.read_text()
    assert f'Collection("{name}"' in source, f"homelab/{name}/tasks.py does not build Collection({name!r})"


def test_the_root_collection_has_no_namespace_without_a_package() -> None:
    from homelab.cli import namespace

    assert sorted(namespace.collections) == NAMESPACES


def test_no_module_imports_another_packages_private_names() -> None:
    offenders = []
    for path in modules():
        own = package_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module, names in imports_of(path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and package_of(module) != own:
                offenders.append(f"{path.relative_to(REPO)} imports {private} from {module}")
    assert not offenders, "\n".join(offenders)


def test_core_imports_no_layer() -> None:
    offenders = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for module, _ in imports_of(path):
            if not module.startswith("homelab.core") and module not in CORE_MAY_IMPORT:
                offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_listing_tasks_imports_no_heavy_library() -> None:
    """``inv --list`` loads every tasks module: they must defer pydantic, fabric and kubernetes."""
    probe = (
        "import sys; sys.path.insert(0, 'tasks'); import homelab.cli; "
        "print(sorted(m for m in ('pydantic', 'fabric', 'kubernetes', 'paramiko') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"importing the task tree pulled in {done.stdout.strip()}"
