"""The house rules of the import graph, read from the source with `ast` (function-local imports too).

- `data_pipelines` imports nothing from `talkingmem`; nothing in the library imports `configs`,
  `experiments` or `tests`;
- the shared library (everything in `talkingmem/` outside a paper's folder) imports no paper, and
  one paper never imports the other;
- no import circles between modules;
- no module uses another module's private (underscore) name; no test imports another test file.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("talkingmem", "data_pipelines")
PAPERS = ("talkingmem.mcnet", "talkingmem.memface")


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, pathlib.Path]:
  return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The project module that `name` (a module or a name inside one) refers to."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def imports_of(path: pathlib.Path, modules: dict[str, pathlib.Path]):
  """(imported module, private names taken from it, line) for every import in the file."""
  tree = ast.parse(path.read_text(), str(path))
  aliases: dict[str, str] = {}
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        target = resolve(alias.name, modules)
        if target:
          found.append((target, [], node.lineno))
          aliases[alias.asname or alias.name] = target
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        if full in modules:  # `from package import module`
          found.append((full, [], node.lineno))
          aliases[alias.asname or alias.name] = full
        elif resolve(node.module, modules):
          private = [alias.name] if alias.name.startswith("_") else []
          found.append((resolve(node.module, modules), private, node.lineno))
  for node in ast.walk(tree):  # module_alias._private
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")):
      found.append((aliases[node.value.id], [node.attr], node.lineno))
  return found


@pytest.fixture(scope="module")
def graph():
  """(library modules, {source: imports}); experiments and configs are sources only (top layer)."""
  modules = project_modules()
  edges = {m: imports_of(p, modules) for m, p in modules.items()}
  for folder in ("experiments", "configs"):
    for path in sorted((ROOT / folder).glob("*.py")):
      edges[module_name(path)] = imports_of(path, modules)
  return modules, edges


def paper_of(module: str) -> str | None:
  return next((p for p in PAPERS if module == p or module.startswith(p + ".")), None)


def test_imports_run_one_way(graph):
  modules, edges = graph
  wrong = []
  for source, targets in edges.items():
    if source not in modules:  # experiments and configs are the top layer: they may import anything.
      continue
    for target, _, line in targets:
      where = f"{source}:{line} imports {target}"
      if source.startswith("data_pipelines") and target.startswith("talkingmem"):
        wrong.append(f"{where} (data_pipelines never imports talkingmem)")
      elif paper_of(target) and paper_of(source) != paper_of(target):
        wrong.append(f"{where} (" + ("one paper imports the other" if paper_of(source)
                                     else "shared code imports a paper") + ")")
  for pkg in PACKAGES:
    for path in (ROOT / pkg).rglob("*.py"):
      tree = ast.parse(path.read_text())
      for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in ("configs", "experiments", "tests")]
  assert not wrong, "\n".join(wrong)


def test_no_import_circles(graph):
  _, edges = graph
  adjacency = {m: sorted({t for t, _, _ in targets if t != m and not m.startswith(t + ".")})
               for m, targets in edges.items()}
  # A package's __init__ is imported with its modules; only module -> module arrows make circles.
  state: dict[str, int] = {}
  circles = []

  def visit(node: str, stack: list[str]) -> None:
    state[node] = 1
    stack.append(node)
    for nxt in adjacency.get(node, []):
      if state.get(nxt) == 1:
        circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, stack)
    stack.pop()
    state[node] = 2

  for module in sorted(adjacency):
    if module not in state:
      visit(module, [])
  assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_private_name_used_across_modules(graph):
  modules, edges = graph
  wrong = [f"{source}:{line} uses {target}.{name}"
           for source, targets in edges.items() for target, names, line in targets
           for name in names if target != source]
  assert not wrong, "\n".join(wrong)


def test_tests_do_not_import_each_other():
  test_files = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
  wrong = []
  for path in (ROOT / "tests").glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
      wrong += [f"tests/{path.name}:{node.lineno} imports {n}" for n in names
                if n.split(".")[0] in test_files or n.startswith("tests.")]
  assert not wrong, "shared test helpers belong in a helper module, not a test file:\n" + "\n".join(wrong)
