"""Make the README's result tables from the benchmark results files, so that they cannot go stale.

    python benchmarks/readme_tables.py           # rewrite every marked table of README.md
    python benchmarks/readme_tables.py --check   # exit 1 if a table differs from its results file

A table in README.md sits between ``<!-- results: NAME -->`` and ``<!-- /results -->``. It is made from
``benchmarks/results/NAME.json`` (written by ``benchmarks/NAME.py``) by that script's own ``table(results)``
function, followed by the line that says where the numbers come from (script, commit, date, load,
versions: `results_file.provenance`). ``tests/test_readme_results.py`` fails when a table and its
results file disagree.
"""

import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
BLOCK = re.compile(r"(<!-- results: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _script(name):
    """The benchmark script ``benchmarks/NAME.py`` as a module (its directory on the path for its imports)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(name):
    """The Markdown of README block `name`: the script's table of its results file, and its provenance."""
    results_file = _script("results_file")
    results = results_file.load(name)
    return _script(name).table(results) + "\n\n" + results_file.provenance(results) + "\n"


def blocks(text):
    """(name, body) of every results block of a README text."""
    return [(m.group("name"), m.group("body")) for m in BLOCK.finditer(text)]


def rewrite(text):
    """`text` with every results block made anew from its results file."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(README) as f:
        text = f.read()
    if "--check" in argv:
        stale = [name for name, body in blocks(text) if body != render(name)]
        print("stale: " + ", ".join(stale) if stale else "the README tables agree with the results files")
        return 1 if stale else 0
    new = rewrite(text)
    if new != text:
        with open(README, "w") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
