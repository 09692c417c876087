"""The manual's reference pages are the code's: fresh, and the exit-code table exactly the codes defined."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO
from homelab.core import errors


def test_every_exit_code_has_a_meaning() -> None:
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert set(errors.EXIT_CODES) == defined


def test_the_exit_code_table_matches_the_codes_in_errors() -> None:
    text = (REPO / "docs" / "reference" / "exit-codes.md").read_text()
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", text, re.MULTILINE)}
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert documented == defined


def test_generated_reference_pages_are_fresh() -> None:
    """scripts/gen_docs.py --check: a new task, flag, config key or exit code needs the pages regenerated."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_is_a_front_page_whose_links_resolve() -> None:
    """Under 250 lines; every relative link names a file in the checkout (the manual's pages)."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 250
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links to the manual"
    assert [target for target in local if not (REPO / target).exists()] == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/setup.sh && .venv/bin/inv up --target sandbox" in readme
    assert "\n.venv/bin/nox  " in readme and "\n.venv/bin/nox\n" in ci
