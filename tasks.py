"""Entry point for `inv` at the repo root.

Invoke prefers this file over the `tasks/` directory; `tasks/` is the source
root that holds the `homelab` package (one module per namespace under
`tasks/homelab/ns/`). This file only exposes that package's root collection, so
`inv` here and the installed `homelab` command run the very same tasks.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))

from homelab.cli import namespace

ns = namespace
