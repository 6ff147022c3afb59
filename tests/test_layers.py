"""The layering contract of apfdsp, checked on the source with `ast`.

Every import of an apfdsp module is found, at any depth (a lazy import inside a function counts as
much as one at the top), in its relative (``from .x import y``, ``from . import x``) and absolute
(``import apfdsp.x``, ``from apfdsp.x import y``, ``importlib.import_module("apfdsp.x")``) forms.
Three rules:

1. **Layers.** Each module of the package belongs to one layer of `LAYERS`; a module imports only
   modules of its own layer or of lower ones. A new module fails this test until it is placed.
2. **No cycles** in the import graph of the package (lazy imports included).
3. **No private names across modules.** No ``from .x import _y``, no ``x._y`` on an imported apfdsp
   module, no import of a private module (``apfdsp._validate``) from outside the package, and no
   ``obj._y`` whose ``_y`` the file does not define itself (a private method of another module's
   class): in apfdsp/, benchmarks/, scripts/ and examples/ (tests may use private names). A helper
   another module needs is made public (no underscore, a numpydoc docstring) or moved to the lower
   module that owns its concept.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "apfdsp"

#: The layers, lowest first. A module may import its own layer and the layers before it.
LAYERS = [
    {"_validate", "exceptions", "version", "threads"},  # no apfdsp imports but among these
    {"filters", "ranges"},  # section maths, parameter ranges
    {"cascade"},  # the cells and AllpassCascade
    {"layout", "model", "losses", "optim", "phase_objective", "tdfilter"},  # the fitting machinery
    {"estimate", "metrics", "confidence"},  # measurements of a pair of signals
    {"designs"},  # the classical designs
    {"fit", "fit_audio", "resample"},  # fits
    {"align"},  # the alignment
    {"audiofile", "streaming", "model_format", "align_files", "plot", "report", "pretrained", "demo"},
    {"io"},  # facade re-exporting audiofile, streaming and model_format
    {"cli"},
    {"__init__", "__main__"},  # the package's namespace and ``python -m apfdsp``
]

CHECKED_DIRS = ("apfdsp", "benchmarks", "scripts", "examples")


def _layer_of(module):
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    return None


def _package_modules():
    return sorted(path.stem for path in (ROOT / PACKAGE).glob("*.py"))


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Imports(ast.NodeVisitor):
    """Every reference of one file to an apfdsp module, and every private name it takes from one.

    ``edges``: (imported module, line) for each import of an apfdsp module (``__init__`` for a name taken
    from the package itself); ``private``: (module, name, line) for each private name used across modules.
    """

    def __init__(self, module, modules):
        self.module = module  # the file's own module name inside apfdsp, or None outside the package
        self.modules = set(modules)
        self.edges = []
        self.private = []
        self.bound = {}  # local name -> apfdsp module it is bound to ("__init__" for the package)

    def _resolve(self, node):
        """Dotted apfdsp module named by an ImportFrom (``None`` when not apfdsp)."""
        if node.level:
            if self.module is None:
                return None
            return node.module or ""  # apfdsp is flat: any level-1 import is relative to the package
        if node.module == PACKAGE:
            return ""
        if node.module and node.module.startswith(PACKAGE + "."):
            return node.module[len(PACKAGE) + 1:]
        return None

    def _use(self, target, line):
        """Record an import of apfdsp module `target` ("" = the package itself)."""
        first = target.split(".")[0] if target else "__init__"
        if (first in self.modules or first == "__init__") and (first, line) not in self.edges:
            self.edges.append((first, line))
            if self.module is None and _is_private(first):
                self.private.append((PACKAGE, first, line))

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                sub = alias.name[len(PACKAGE) + 1:]
                self._use(sub, node.lineno)
                if alias.asname:
                    self.bound[alias.asname] = sub.split(".")[0] if sub else "__init__"
                else:
                    self.bound[PACKAGE] = "__init__"
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        target = self._resolve(node)
        if target is None:
            return
        for alias in node.names:
            if target == "" and alias.name in self.modules:  # from . import x: the submodule x
                self._use(alias.name, node.lineno)
                self.bound[alias.asname or alias.name] = alias.name
                continue
            self._use(target, node.lineno)
            owner = target.split(".")[0] if target else "__init__"
            if _is_private(alias.name) and owner != self.module:
                self.private.append((owner, alias.name, node.lineno))

    def visit_Call(self, node):
        # importlib.import_module("apfdsp.x") and __import__("apfdsp.x")
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            text = node.args[0].value
            if isinstance(text, str) and (text == PACKAGE or text.startswith(PACKAGE + ".")):
                self._use(text[len(PACKAGE) + 1:], node.lineno)
            elif isinstance(text, str) and text.startswith(".") and self.module is not None:
                self._use(text.lstrip("."), node.lineno)  # import_module(".x", __package__)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        chain = []
        base = node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in self.bound:
            owner = self.bound[base.id]
            for attr in reversed(chain):
                if owner == "__init__" and attr in self.modules:
                    owner = attr  # apfdsp.x.y: walk down to the submodule
                    self._use(attr, node.lineno)
                    continue
                if _is_private(attr) and owner != self.module:
                    self.private.append((owner, attr, node.lineno))
                break
            return  # the inner attributes of this chain are done
        self.generic_visit(node)


def _scan(path, module, modules):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = _Imports(module, modules)
    names.visit(tree)  # first the names bound to apfdsp modules, wherever in the file they are bound
    visitor = _Imports(module, modules)
    visitor.bound = names.bound
    visitor.visit(tree)
    return visitor


#: Underscore attributes that Python itself gives objects (the namedtuple API): not a module's privates.
PYTHON_API = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}


def _foreign_private_attributes(path):
    """(line, text) of each ``obj._name`` whose `_name` the file neither defines nor assigns (obj not self/cls).

    Such an attribute belongs to an object of another module: its private method or field.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = set(PYTHON_API)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
    return [(node.lineno, ast.unparse(node)) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]


def _package_graph():
    modules = _package_modules()
    return {m: _scan(ROOT / PACKAGE / f"{m}.py", m, modules) for m in modules}


def _checked_files():
    for directory in CHECKED_DIRS:
        yield from sorted((ROOT / directory).rglob("*.py"))


def _cycles(graph):
    """One shortest cycle (a tuple of modules) through each group of mutually importing modules.

    The groups are the strongly connected components of `graph` (module -> imported modules) with more
    than one module, or one module that imports itself; each cycle starts at the group's smallest name.
    """
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(node):  # Tarjan's algorithm (the graph has a few dozen nodes: recursion is fine)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while node not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:
        start = min(group)
        if len(group) == 1 and start not in graph[start]:
            continue
        paths, seen = [(start,)], set()  # breadth first inside the group, back to `start`
        while paths:
            path = paths.pop(0)
            succs = sorted(s for s in graph[path[-1]] if s in group)
            if start in succs:
                cycles.append(path)
                break
            for succ in succs:
                if succ not in seen:
                    seen.add(succ)
                    paths.append(path + (succ,))
    return sorted(cycles)


def test_every_module_has_a_layer():
    unplaced = [m for m in _package_modules() if _layer_of(m) is None]
    assert not unplaced, (
        f"apfdsp modules without a layer: {unplaced}; place each in tests/test_layers.py::LAYERS "
        f"(and in the layer picture of the docs)"
    )


def test_a_lower_layer_never_imports_a_higher_one():
    problems = []
    for module, scan in _package_graph().items():
        for imported, line in scan.edges:
            own, other = _layer_of(module), _layer_of(imported)
            if own is None or other is None or other <= own:
                continue
            problems.append(
                f"apfdsp/{module}.py:{line} imports apfdsp.{imported} (layer {other}: {sorted(LAYERS[other])}) "
                f"from layer {own} ({sorted(LAYERS[own])}): a lower layer never imports a higher one"
            )
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_no_import_cycles():
    graph = {m: sorted({i for i, _ in scan.edges if i != m})
             for m, scan in _package_graph().items()}
    graph = {m: [i for i in succ if i in graph] for m, succ in graph.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (lazy imports included), one per group of modules that import each other:\n" + (
        "\n".join(" -> ".join(c + (c[0],)) for c in cycles))


def test_no_private_names_across_modules():
    modules = _package_modules()
    problems = []
    for path in _checked_files():
        own = path.stem if path.parent == ROOT / PACKAGE else None
        for owner, name, line in _scan(path, own, modules).private:
            problems.append(f"{path.relative_to(ROOT)}:{line} uses the private name {name!r} of apfdsp.{owner}"
                            if owner != PACKAGE else
                            f"{path.relative_to(ROOT)}:{line} imports the private module apfdsp.{name}")
    assert not problems, (
        "private names used across modules (make them public with a docstring, or move them to the "
        "module that owns the concept):\n" + "\n".join(problems))


def test_no_private_attributes_of_other_modules_objects():
    problems = [f"{path.relative_to(ROOT)}:{line} uses {text}, a private attribute defined elsewhere"
                for path in _checked_files() for line, text in _foreign_private_attributes(path)]
    assert not problems, "private attributes of other modules' objects:\n" + "\n".join(problems)


# -- the checker itself -------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "edges", "private"), [
    ("from .cli import main", ["cli"], []),
    ("def f():\n    from .cli import main\n", ["cli"], []),
    ("import apfdsp.cli", ["cli"], []),
    ("import apfdsp.cli as c\nc._x", ["cli"], [("cli", "_x")]),
    ("from apfdsp import cli\ncli._x()", ["cli"], [("cli", "_x")]),
    ("from . import io as _io\n_io.read_audio\n_io._same_file", ["io"], [("io", "_same_file")]),
    ("import apfdsp\napfdsp.fit._Layout", ["__init__", "fit"], [("fit", "_Layout")]),
    ("from apfdsp.estimate import _valid_pair, gcc_phat", ["estimate"], [("estimate", "_valid_pair")]),
    ("from apfdsp import AllpassCascade", ["__init__"], []),
    ("from apfdsp.version import __version__", ["version"], []),
    ("import importlib\nimportlib.import_module('apfdsp.align')", ["align"], []),
    ("import importlib\nimportlib.import_module('.plot', __package__)", ["plot"], []),
    ("from .cascade import _check_real", ["cascade"], []),  # its own private name
])
def test_the_checker_sees_every_form(tmp_path, source, edges, private):
    path = tmp_path / "cascade.py"
    path.write_text(source)
    scan = _scan(path, "cascade", _package_modules())
    assert [e for e, _ in scan.edges] == edges
    assert [(o, n) for o, n, _ in scan.private] == private


def test_the_checker_sees_private_attributes_of_objects(tmp_path):
    path = tmp_path / "plot.py"
    path.write_text("def f(cascade, result):\n    self._a, cls._b\n    result._replace(x=1)\n"
                    "    cascade._sos_rows_text()\n    _own(cascade)._c\n\ndef _own(x):\n    x._c = 1\n")
    assert _foreign_private_attributes(path) == [(4, "cascade._sos_rows_text")]


def test_the_checker_finds_cycles():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [("a", "b", "c")]
    assert _cycles({"a": ["b", "c"], "b": ["a"], "c": ["d"], "d": ["c"]}) == [("a", "b"), ("c", "d")]
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a", "b"]}) == [("a", "b", "c")]  # one per group
    assert _cycles({"a": ["b"], "b": []}) == []
    assert _cycles({"a": ["a"]}) == [("a",)]
