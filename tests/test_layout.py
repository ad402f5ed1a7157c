"""The tree's import rules, checked on the source (AST) so a stray import fails here, not in review:

- data flows one way: the core (`concepts/*.py`, `concepts/sae/`) imports no panel and no toy code;
- a panel (`concepts/steer/`, `concepts/evolve/`, `concepts/edit/`) imports the core only, never
  another panel and never the toy world (it asks the world object, `ModelWorld.knowledge`);
- nothing outside `concepts/toy/` and `concepts/lessons/` (the app, the UI, the core, panels,
  training) imports `concepts.toy`;
- the lessons (`concepts/lessons/`) are experiments on the toy world that compose the panels, as the
  command line wires them: they may import every panel and the toy world, and only the UI and the
  command line import them;
- `concepts/` never imports gradio.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PANELS = ("steer", "evolve", "edit")
ENTRY_POINTS = {"concepts.cli", "concepts.train", "concepts.__main__"}
"""The command line wires every panel together, as `app.py` does: it may import them all."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module a source imports, relative imports resolved, lazy (in-function) imports included."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import steer`
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def kind(module: str) -> str:
    """core, a panel's name, toy, training, lessons, entry or ui."""
    parts = module.split(".")
    if parts[0] != "concepts":
        return "ui"
    if module in ENTRY_POINTS:
        return "entry"
    if len(parts) > 1 and parts[1] in (*PANELS, "toy", "training", "lessons"):
        return parts[1]
    return "core"


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


ALL = [*sources("concepts", "ui"), ROOT / "app.py"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layout(path):
    me = kind(module_name(path))
    bad = []
    for target in imports(path):
        if me not in ("toy", "lessons") and within(target, "concepts.toy"):
            bad.append(f"{target} (only concepts/toy imports the toy world; ask ModelWorld.knowledge)")
        if me in ("core", "training") and any(within(target, f"concepts.{p}") for p in PANELS):
            bad.append(f"{target} (the core and training import no panel)")
        if me in PANELS and any(within(target, f"concepts.{p}") for p in PANELS if p != me):
            bad.append(f"{target} (a panel imports no other panel)")
        if me not in ("ui", "entry", "lessons") and within(target, "concepts.lessons"):
            bad.append(f"{target} (only the UI and the command line run lessons)")
        if me != "ui" and within(target, "gradio"):
            bad.append(f"{target} (concepts/ never imports gradio)")
    assert not bad, f"{path.relative_to(ROOT)} imports " + "; ".join(sorted(bad))


def test_the_scan_sees_relative_lazy_and_package_imports():
    """The rules above are only as good as the scan: a relative, an in-function and a `from . import`
    import of forbidden modules are all found."""
    source = "def f():\n    from ..toy import world\n    from ..steer import service\n    from . import rates\n"
    found = imports_in(source, "concepts.edit.probe")
    assert {"concepts.toy.world", "concepts.steer.service", "concepts.edit.rates"} <= found


def test_every_panel_and_tab_has_its_room():
    """The tree shows the architecture: one package per panel, one UI module per tab, each small."""
    for panel in PANELS:
        assert (ROOT / "concepts" / panel / "__init__.py").is_file(), panel
    for tab in ("generate", "steer", "evolution", "erase"):
        lines = len((ROOT / "ui" / f"{tab}.py").read_text().splitlines())
        assert lines <= 250, f"ui/{tab}.py has {lines} lines"
    assert len((ROOT / "app.py").read_text().splitlines()) <= 80
