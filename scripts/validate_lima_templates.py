#!/usr/bin/env python3
"""Render every Lima template from a config and check each with the real `limactl validate`.

limactl refuses to run as root, and VZ templates only validate for the host's
own architecture. So on a root CI machine the check runs limactl as `nobody`
(from a world-readable copy), and the arch is switched to the host's when it
differs, which the output says. The rest of each template is checked as is.

Usage: scripts/validate_lima_templates.py [CONFIG.yaml ...]   (default: config/homelab.yaml)
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tasks"))

from homelab.config import loader  # noqa: E402
from homelab.core.tools import require  # noqa: E402
from homelab.vm import lima  # noqa: E402

HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}[platform.machine()]
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHomelabTemplateValidationKeyOnly000000 validate"


def validate_files(files: list[Path]) -> list[tuple[Path, int, str]]:
    """Run `limactl validate` on each file; returns (file, exit code, output)."""
    limactl = require("limactl")
    results = []
    with tempfile.TemporaryDirectory(prefix="lima-validate-") as scratch:
        work = Path(scratch)
        os.chmod(work, 0o755)
        command = [limactl]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LIMA_HOME": str(work / ".lima")}
        if os.geteuid() == 0:
            copy = work / "limactl"
            shutil.copy(limactl, copy)
            os.chmod(copy, 0o755)
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(copy)]
            os.chmod(work, 0o777)
        for source in files:
            target = work / source.name
            shutil.copy(source, target)
            os.chmod(target, 0o644)
            done = subprocess.run([*command, "validate", str(target)], env=env, capture_output=True, text=True)
            results.append((source, done.returncode, (done.stdout + done.stderr).strip()))
    return results


def render_config(config: Path, out_dir: Path) -> list[Path]:
    cfg = loader.load(config, environ={}).config
    if cfg.lima.arch != HOST_ARCH:
        print(f"{config.name}: lima.arch {cfg.lima.arch} switched to host arch {HOST_ARCH} for validation")
        cfg = cfg.model_copy(update={"lima": cfg.lima.model_copy(update={"arch": HOST_ARCH})})
    files = []
    for name, text in lima.render_all(cfg, TEST_KEY).items():
        path = out_dir / f"{config.stem}-{name}.yaml"
        path.write_text(text)
        files.append(path)
    return files


def main(configs: list[str]) -> int:
    paths = [Path(c) for c in configs] or [ROOT / "config" / "homelab.yaml"]
    with tempfile.TemporaryDirectory() as out:
        files = [f for config in paths for f in render_config(config, Path(out))]
        failed = 0
        for path, code, output in validate_files(files):
            print(f"{'ok  ' if code == 0 else 'FAIL'} {path.name}" + ("" if code == 0 else f": {output}"))
            failed += code != 0
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
