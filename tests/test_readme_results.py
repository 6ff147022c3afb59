"""The README's result tables are made from the benchmarks' results files (benchmarks/readme_tables.py)."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tables_module():
    spec = importlib.util.spec_from_file_location("readme_tables", os.path.join(ROOT, "benchmarks", "readme_tables.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLES = tables_module()
with open(os.path.join(ROOT, "README.md")) as f:
    README_BLOCKS = TABLES.blocks(f.read())


def test_the_readme_has_result_tables():
    assert {name for name, _ in README_BLOCKS} >= {"speed_memory"}


@pytest.mark.parametrize("name, body", README_BLOCKS, ids=[name for name, _ in README_BLOCKS])
def test_readme_table_equals_its_results_file(name, body):
    assert body == TABLES.render(name), (
        f"README table {name!r} differs from benchmarks/results/{name}.json: "
        f"run python benchmarks/readme_tables.py")


@pytest.mark.parametrize("name", sorted({name for name, _ in README_BLOCKS}))
def test_results_files_say_where_they_come_from(name):
    with open(os.path.join(ROOT, "benchmarks", "results", f"{name}.json")) as f:
        results = json.load(f)
    assert results["commit"] and results["date"] and results["script"].startswith("benchmarks/")
    assert {"numpy", "scipy", "autograd"} <= set(results["versions"])
    assert os.path.exists(os.path.join(ROOT, results["script"]))


def test_a_changed_number_is_caught(tmp_path):
    name, body = README_BLOCKS[0]
    changed = body.replace("|", "| 9", 1)
    text = f"<!-- results: {name} -->\n{changed}<!-- /results -->"
    [(_, parsed)] = TABLES.blocks(text)
    assert parsed != TABLES.render(name)
