"""tsoda uses only what auto_annotate exports on purpose: the names in a module's __all__.

Read from the source (no import), so the check needs neither TensorFlow nor Apache Beam.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "auto_annotate"


def _source(module: str) -> Path | None:
    """The file of an auto_annotate module (a package's ``__init__.py``); None if none."""
    path = REPO.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def exported(module: str) -> frozenset[str] | None:
    """The names in a module's ``__all__``; None when it has none."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return frozenset(ast.literal_eval(node.value))
    return None


def _uses(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) for every name a tsoda file takes from auto_annotate: the names
    of ``from auto_annotate[.x] import name``, and ``alias.name`` where ``alias`` is an
    auto_annotate module it imported (``from auto_annotate import voc``, ``import
    auto_annotate.voc as voc``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == PACKAGE:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _source(full) is not None:  # a submodule: its own names are checked
                    modules[alias.asname or alias.name] = full
                uses.append((node.lineno, node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in modules:
            uses.append((node.lineno, modules[node.value.id], node.attr))
    return uses


def _problem(module: str, name: str) -> str | None:
    if name.startswith("_"):
        return "a private name"
    if _source(module) is None:
        return "no such auto_annotate module"
    names = exported(module)
    if names is None:
        return f"{module} has no __all__"
    submodule = f"{module}.{name}"
    if name in names or (_source(submodule) is not None and exported(submodule) is not None):
        return None
    return f"not in {module}.__all__"


TSODA_FILES = sorted((REPO / "tsoda").rglob("*.py"))
# the project's own tools use auto_annotate the same way
USERS = TSODA_FILES + sorted((REPO / "scripts").rglob("*.py")) + \
    sorted((REPO / "bench").rglob("*.py"))


def test_the_check_sees_tsodas_imports():
    found = {(m, n) for path in TSODA_FILES for _, m, n in _uses(path)}
    assert ("auto_annotate.manifest", "read_manifest") in found
    assert ("auto_annotate.voc", "read_voc") in found  # through `from auto_annotate import voc`
    assert ("auto_annotate", "predict_stream") in found


@pytest.mark.parametrize("path", USERS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_tsoda_imports_only_what_auto_annotate_exports(path):
    problems = [f"{path.relative_to(REPO)}:{line}: {module}.{name}: {problem}"
                for line, module, name in _uses(path)
                if (problem := _problem(module, name)) is not None]
    assert not problems, "\n".join(problems)


def test_every_auto_annotate_module_says_what_it_exports():
    """A new module must declare its public names too (``__main__`` modules run, nothing
    imports them)."""
    modules = [path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
               .removesuffix(".__init__") for path in sorted((REPO / PACKAGE).rglob("*.py"))
               if path.name != "__main__.py"]
    assert len(modules) > 20
    assert [module for module in modules if exported(module) is None] == []
