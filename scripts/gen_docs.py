"""Write the manual's reference pages from the code: tasks, config schema, exit codes.

    python scripts/gen_docs.py           # rewrite docs/reference/*.md
    python scripts/gen_docs.py --check   # exit 1 naming every page that is stale (lint runs it)

The pages are a pure function of the code: the invoke collection (every task, its
docstring, the help of each flag as ``--help`` prints it), the pydantic schema (every
key with its type, default, bounds and the comment written beside it) and the exit
codes in ``homelab.core.errors``. Nothing here reads the machine, the config or the
time, so a regeneration after a merge is one command and gives the same bytes.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tasks"))

from invoke.collection import Collection  # noqa: E402
from pydantic import BaseModel, TypeAdapter, ValidationError  # noqa: E402

from homelab.cli import namespace  # noqa: E402
from homelab.config import kinds, schema, urls  # noqa: E402
from homelab.core import errors  # noqa: E402

REFERENCE = ROOT / "docs" / "reference"
HEADER = "<!-- Generated from {source} by scripts/gen_docs.py; do not edit: run python scripts/gen_docs.py -->\n"


def cell(text: str) -> str:
    """Text that fits in one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def escaped(text: str) -> str:
    """Prose for a table cell: `<` and `>` outside code spans shown as written, not read as HTML."""
    parts = cell(text).split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;").replace(">", "&gt;") for i, part in enumerate(parts))


def markdown(doc: str) -> str:
    """A docstring as Markdown: reST's double backticks become single ones."""
    return inspect.cleandoc(doc).replace("``", "`")


# --- tasks --------------------------------------------------------------------------------------


def collections(root: Collection) -> Iterator[tuple[str, Collection]]:
    """The root, then each namespace in the order the CLI adds them."""
    yield "", root
    yield from root.collections.items()


def namespace_doc(sub: Collection) -> str:
    """A namespace's help is its module's docstring (the module that ends with ``ns = Collection(...)``)."""
    modules = {task.body.__module__ for task in sub.tasks.values()}
    docs = [sys.modules[module].__doc__ or "" for module in sorted(modules)]
    return "\n\n".join(markdown(doc) for doc in docs if doc.strip())


def tasks_page() -> str:
    contexts = {context.name: context for context in namespace.to_contexts()}
    out = [
        HEADER.format(source="the invoke collection (homelab.cli)"),
        "# Tasks\n",
        "Every task the toolkit has, as `inv --help TASK` prints it. Run them as `inv TASK` in the",
        "checkout or `homelab TASK` from anywhere (the installed console script runs the same collection).",
        "Flags may also be given in their short form; a flag that takes a value shows its type.\n",
    ]
    for prefix, sub in collections(namespace):
        if prefix:
            out.append(f"## {prefix}\n")
            doc = namespace_doc(sub)
            if doc:
                out.append(doc + "\n")
        else:
            out.append("## The whole homelab\n")
        for name, task in sub.tasks.items():
            full = f"{prefix}.{name}" if prefix else name
            context = contexts[full]
            positional = " ".join(arg.name.upper() for arg in context.positional_args)
            usage = f"inv {full}" + (" [options]" if context.flags else "") + (f" {positional}" if positional else "")
            out.append(f"### {full}\n")
            aliases = sorted(alias for alias in context.aliases if alias != prefix)
            if aliases:
                out.append("Also: " + ", ".join(f"`inv {alias}`" for alias in aliases) + "\n")
            if sub.default == name and prefix:
                out.append(f"The namespace's default: `inv {prefix}` runs it.\n")
            out.append(f"```\n{usage}\n```\n")
            out.append(markdown(task.body.__doc__ or "(no description)") + "\n")
            rows = context.help_tuples()
            if rows:
                out.append("| option | what it does |\n|---|---|")
                out.extend(f"| `{cell(flag)}` | {cell(text) or '-'} |" for flag, text in rows)
                out.append("")
    return "\n".join(out)


# --- config -------------------------------------------------------------------------------------

SOURCE = inspect.getsource(schema)
TREE = ast.parse(SOURCE)
ALIASES: dict[str, ast.expr] = {
    node.targets[0].id: node.value
    for node in TREE.body
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
}
BOUNDS = {
    "ge": "≥ {}",
    "gt": "> {}",
    "le": "≤ {}",
    "lt": "< {}",
    "min_length": "at least {} items",
    "max_length": "at most {} items",
}


def comments() -> dict[int, tuple[str, bool]]:
    """Every comment in schema.py by line: its text, and whether it stands on a line of its own."""
    found: dict[int, tuple[str, bool]] = {}
    lines = SOURCE.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(SOURCE).readline):
        if token.type == tokenize.COMMENT:
            row = token.start[0]
            alone = not lines[row - 1][: token.start[1]].strip()
            found[row] = (token.string.lstrip("#").strip(), alone)
    return found


COMMENTS = comments()


def field_comment(assign: ast.AnnAssign) -> str:
    """The comment lines right above a field and the comment at the end of its line."""
    above: list[str] = []
    row = assign.lineno - 1
    while row in COMMENTS and COMMENTS[row][1]:
        above.insert(0, COMMENTS[row][0])
        row -= 1
    trailing = COMMENTS.get(assign.lineno)
    parts = [*above]
    if trailing and not trailing[1] and not trailing[0].startswith(("type:", "noqa")):
        parts.append(trailing[0])
    return " ".join(parts)


def model_fields(model: type[BaseModel]) -> list[ast.AnnAssign]:
    node = next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == model.__name__)
    return [s for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]


KIND_NAMES = {
    name
    for module in (kinds, urls)
    for name, value in vars(module).items()
    if typing.get_origin(value) is typing.Annotated
}


def type_text(node: ast.expr) -> str:
    """A field's annotation as a reader wants it: kinds linked, Literal values listed, Annotated dropped."""
    if isinstance(node, ast.Name):
        if node.id in ALIASES and isinstance(ALIASES[node.id], ast.Subscript):
            return type_text(ALIASES[node.id])
        section = getattr(schema, node.id, None)
        if node.id in KIND_NAMES:
            return f"[{node.id}](#{node.id.lower()})"
        if section is schema.SecretRef:
            return "[secret reference](#secret-references)"
        return node.id
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        right = node.right
        if isinstance(right, ast.Constant) and right.value is None:
            return f"{type_text(node.left)} or unset"
        return f"{type_text(node.left)} or {type_text(right)}"
    if isinstance(node, ast.Subscript):
        base = ast.unparse(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Annotated":
            return type_text(args[0])
        if base == "Literal":
            return " or ".join(f"`{ast.literal_eval(arg)}`" for arg in args)
        if base == "list":
            return f"list of {type_text(args[0])}"
        if base == "dict":
            return f"map of {type_text(args[0])} to {type_text(args[1])}"
    return f"`{ast.unparse(node)}`"


def bounds_text(model: type[BaseModel], assign: ast.AnnAssign) -> str:
    """Bounds written in the annotation or the Field(...) default: ge, le, lengths; Unique.

    The values are pydantic's (``2**31 - 1`` shown as the number), read from the source
    only where pydantic keeps them inside an optional type.
    """
    found: list[str] = []
    kept = {
        attr: getattr(item, attr)
        for item in model.model_fields[assign.target.id].metadata  # type: ignore[union-attr]
        for attr in BOUNDS
        if getattr(item, attr, None) is not None
    }
    for node in ast.walk(ast.Module(body=[assign], type_ignores=[])):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Field":
            for keyword in node.keywords:
                if keyword.arg in BOUNDS:
                    value = kept.get(keyword.arg, ast.unparse(keyword.value))
                    found.append(BOUNDS[keyword.arg].format(value))
        if isinstance(node, ast.Name) and node.id == "Unique":
            found.append("no repeats")
    return ", ".join(found)


def yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, schema.SecretRef):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.model_dump(exclude_none=True).items()) + "}"
    if isinstance(value, BaseModel):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.model_dump().items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_text(model: type[BaseModel], assign: ast.AnnAssign, nested: dict[str, str]) -> str:
    name = assign.target.id  # type: ignore[union-attr]
    info = model.model_fields[name]
    if info.is_required():
        return "required"
    if assign.value is not None and "pins." in ast.unparse(assign.value):
        return "pinned in `versions.toml`"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if name in nested and isinstance(value, BaseModel) and not isinstance(value, schema.SecretRef):
        return f"see [{nested[name]}](#{anchor(nested[name])})"
    if value in ({}, []):
        return "empty"
    return f"`{cell(yaml_value(value))}`"


def anchor(path: str) -> str:
    """The heading id of a section: its key path, lowercase, with every run of other characters a '-'."""
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "top-level"


def section_of(node: ast.expr) -> type[BaseModel] | None:
    """The schema section a field holds, through Optional, list and dict (SecretRef is documented once)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            candidate = getattr(schema, sub.id, None)
            if (
                isinstance(candidate, type)
                and issubclass(candidate, schema.Strict)
                and candidate is not schema.SecretRef
            ):
                return candidate
    return None


def child_path(path: str, name: str, node: ast.expr) -> str:
    key = f"{path}.{name}" if path else name
    text = ast.unparse(node)
    if text.startswith("list["):
        return f"{key}[]"
    if text.startswith("dict["):
        return f"{key}.<name>"
    return key


def config_sections() -> list[tuple[str, type[BaseModel]]]:
    order: list[tuple[str, type[BaseModel]]] = []
    seen: set[type[BaseModel]] = set()

    def walk(path: str, model: type[BaseModel]) -> None:
        seen.add(model)
        order.append((path, model))
        for assign in model_fields(model):
            sub = section_of(assign.annotation)
            if sub is not None and sub not in seen:
                walk(child_path(path, assign.target.id, assign.annotation), sub)  # type: ignore[union-attr]

    walk("", schema.HomelabConfig)
    return order


def kind_text(kind: Any) -> str:
    """What a value kind accepts, in the words its validator uses to refuse a bad value."""
    for probe in ("?%", 0.5):
        try:
            TypeAdapter(kind).validate_python(probe)
        except ValidationError as refused:
            message = str(refused.errors()[0]["msg"]).removeprefix("Value error, ")
            message = message.removeprefix(f"{probe!r} ")
            if message.startswith("is not "):
                return message.removeprefix("is not ").split(": ", 1)[0]
            if message.startswith("must be "):
                return message.removeprefix("must be ").rsplit(": ", 1)[0]
            if message.startswith(("Input should be", "is relative")):
                continue
            return message
    if typing.get_args(kind)[0] in (int, kinds.Int):
        limits = [
            f"{word} {getattr(item, attr)}"
            for item in typing.get_args(kind)[1:]
            for attr, word in (("ge", "at least"), ("le", "at most"))
            if getattr(item, attr, None) is not None
        ]
        for item in typing.get_args(kind)[1:]:
            for bound in getattr(item, "metadata", []):
                for attr, word in (("ge", "at least"), ("le", "at most")):
                    if getattr(bound, attr, None) is not None:
                        limits.append(f"{word} {getattr(bound, attr)}")
        return ", ".join(["a whole number (not true or false)", *limits])
    return "any text on one line (no control characters)"


def config_page() -> str:
    sections = config_sections()
    paths = {model: path for path, model in sections}
    out = [
        HEADER.format(source="the pydantic schema (homelab.config.schema)"),
        "# Config reference\n",
        "Every key of `config/homelab.yaml`, with its type, default and bounds. Unknown keys are errors.",
        "Values are checked by kind (the [value kinds](#value-kinds) below) when the config loads; rules",
        "that relate several keys (a pool inside the subnet, unique hostnames, private paths) are checked",
        "after that, each naming its key. See [Configuration](../configuration.md) for the layers and",
        "the rules.\n",
    ]
    for path, model in sections:
        title = f"`{path}`" if path else "top level"
        out.append(f"## {title} {{ #{anchor(path)} }}\n")
        if model.__doc__:
            out.append(markdown(model.__doc__) + "\n")
        nested = {}
        for assign in model_fields(model):
            sub = section_of(assign.annotation)
            if sub is not None:
                nested[assign.target.id] = paths[sub]  # type: ignore[union-attr]
        out.append("| key | type | default | bounds | notes |\n|---|---|---|---|---|")
        for assign in model_fields(model):
            name = assign.target.id  # type: ignore[union-attr]
            sub = section_of(assign.annotation)
            shown = type_text(assign.annotation)
            if sub is not None:
                shown = (
                    f"[{sub.__name__}](#{anchor(paths[sub])})"
                    if "[" not in ast.unparse(assign.annotation)
                    else (shown.replace(sub.__name__, f"[{sub.__name__}](#{anchor(paths[sub])})"))
                )
            default = default_text(model, assign, nested)
            bounds = cell(bounds_text(model, assign))
            out.append(f"| `{name}` | {cell(shown)} | {default} | {bounds} | {escaped(field_comment(assign))} |")
        out.append("")
    out.append("## secret references { #secret-references }\n")
    out.append(markdown(schema.SecretRef.__doc__ or "") + "\n")
    out.append(
        "Written as `{file: PATH}` (a file only you can read, mode 0600), `{env: NAME}` or "
        "`{keychain: ITEM}` (macOS). A secret is never a value in the config.\n"
    )
    out.append("## value kinds { #value-kinds }\n")
    out.append("| kind | accepts |\n|---|---|")
    for module in (kinds, urls):
        for name, value in vars(module).items():
            if typing.get_origin(value) is typing.Annotated and name in KIND_NAMES and not name.startswith("Secret"):
                out.append(f"| <a id='{name.lower()}'></a>`{name}` | {escaped(kind_text(value))} |")
    out.append("")
    return "\n".join(out)


# --- exit codes ---------------------------------------------------------------------------------

SIGNALS = """\
Ctrl-C or SIGTERM end any task with the code above and its one line, whatever the running
tool printed; the tools it started (restic, terraform, limactl, kubectl) are stopped too:
they get the same signal again after 3 s if still running, SIGTERM after 6 s and SIGKILL
after 15 s. An interrupted `backup.run` stores nothing, reports "backup INTERRUPTED" and
pings the dead man's switch's `/fail`; every task finishes interrupted work on re-run.

An unexpected error (a bug) is one redacted line and exit 1; `HOMELAB_DEBUG=1` adds the
traceback, redacted too: every resolved secret, bot tokens, URL passwords and credential
query parameters are masked wherever text leaves the process.
"""


def exit_codes_page() -> str:
    out = [
        HEADER.format(source="homelab.core.errors.EXIT_CODES"),
        "# Exit codes\n",
        "Every task, and the `homelab` command a scheduler runs, ends with one of these codes.\n",
        "| code | name | meaning |\n|---|---|---|",
    ]
    names = {value: name for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    for code, meaning in sorted(errors.EXIT_CODES.items()):
        out.append(f"| {code} | `{names[code]}` | {cell(meaning)} |")
    out.append("")
    out.append(SIGNALS)
    return "\n".join(out)


PAGES: dict[str, Callable[[], str]] = {
    "tasks.md": tasks_page,
    "config.md": config_page,
    "exit-codes.md": exit_codes_page,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    args = parser.parse_args()
    stale = []
    for name, render in PAGES.items():
        path = REFERENCE / name
        text = textwrap.dedent(render()).rstrip("\n") + "\n"
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(map(str, stale))}; run python scripts/gen_docs.py and commit", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
