"""The README's exit-code table lists exactly the codes the toolkit defines."""

from __future__ import annotations

import re

from helpers import REPO
from homelab.core import errors


def test_the_exit_code_table_matches_the_codes_in_errors() -> None:
    text = (REPO / "README.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert documented == defined
