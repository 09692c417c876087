"""Check and show the homelab config (config/homelab.yaml and its layers)."""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection

from homelab.core.tasks import task


@task(
    help={
        "secrets": "Also check that every secret reference points at something that exists (values are never read).",
        "target": "Validate as if --target were given (lima, sandbox, k3d or existing).",
    }
)
def validate(c: Any, secrets: bool = False, target: str | None = None) -> None:
    """Validate the config; exit 2 with one line per problem (warnings, such as an unsupported K3S, exit 0)."""
    from homelab.config.checks import missing_secret_problems
    from homelab.core.errors import ConfigError
    from homelab.core.session import Session

    s = Session(c, {"target": target})
    if secrets:
        problems = missing_secret_problems(s.cfg)
        if problems:
            raise ConfigError(problems)
    from homelab.config.checks import support_warnings, tunnel_warnings

    for warning in [*tunnel_warnings(s.cfg), *support_warnings(s.cfg)]:
        print(f"warning: {warning}")
    files = ", ".join(str(f) for f in s.loaded.files)
    apps = f"{len(s.cfg.deployed_apps)} apps deployed"
    print(f"config OK: {len(s.cfg.nodes)} nodes, {apps}, target {s.cfg.target} ({files})")
    if s.cfg.nodes:
        from homelab.apps import sizing

        print(sizing.summary(s.cfg))  # what the apps' requests leave; the live view is inv doctor's per node


@task(
    help={
        "origins": "Show which layer (default, file, local, env, cli) set each value.",
        "target": "Show the config as if --target were given.",
    }
)
def show(c: Any, origins: bool = False, target: str | None = None) -> None:
    """Print the effective config; secrets appear only as references."""
    from homelab.config.show import render
    from homelab.core.session import Session

    s = Session(c, {"target": target})
    print(render(s.loaded, with_origins=origins))


@task
def schema(c: Any) -> None:
    """Print the config's JSON Schema (for editors); config/homelab.schema.json is this output, committed."""
    from homelab.config.json_schema import text

    print(text(), end="")


ns = Collection("config", validate, show, schema)
