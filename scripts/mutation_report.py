"""Kill rate of a finished mutmut run, per module and in total, from mutmut's own result files.

Usage: mutation_report.py STAGE MODULE...   (MODULE as homelab/core/plan.py, or
homelab/backup/prune.py:plan,_buckets to count only those functions' mutants)

A mutant counts as killed when a test failed (or timed out) with it in place. Survivors,
mutants no unit test reaches ("no tests") and any other outcome count against the rate,
so the number is not flattered by code the tests never run. Survivors are listed by name;
`mutmut show NAME` in the stage prints the diff of one.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # test failure, pytest internal error, timeouts (mutmut's exit codes)
NO_TESTS = {5, 33}


def outcome(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code == 0:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    return "not checked" if code is None else f"other ({code})"


def function_of(mutant: str) -> str:
    """``_buckets`` for ``homelab.backup.prune.x__buckets__mutmut_3`` (methods: ``Class.method``)."""
    mangled = mutant.split("__mutmut_")[0].rsplit(".", 1)[1]
    if mangled.startswith("x\u01c1"):
        return ".".join(mangled[2:].split("\u01c1")[:2])
    return mangled.removeprefix("x_")


def main(stage: Path, modules: list[str]) -> int:
    total: Counter[str] = Counter()
    survivors: list[str] = []
    print(f"{'module':<40} {'killed':>6} {'of':>5} {'rate':>6}  other outcomes")
    for spec in modules:
        module, _, named = spec.partition(":")
        functions = set(named.split(",")) if named else None
        meta = stage / "mutants" / "src" / f"{module}.meta"
        codes = {
            name: code
            for name, code in json.loads(meta.read_text())["exit_code_by_key"].items()
            if functions is None or function_of(name) in functions
        }
        counts = Counter(outcome(code) for code in codes.values())
        survivors += [name for name, code in codes.items() if outcome(code) != "killed"]
        total.update(counts)
        n = sum(counts.values())
        others = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "killed")
        label = module + (" (part)" if functions else "")
        print(f"{label:<40} {counts['killed']:>6} {n:>5} {counts['killed'] / max(n, 1):>6.1%}  {others}")
    n = sum(total.values())
    print(f"{'total':<40} {total['killed']:>6} {n:>5} {total['killed'] / max(n, 1):>6.1%}")
    print("\nnot killed:")
    for name in sorted(survivors):
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("Usage: mutation_report.py STAGE MODULE...")
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
