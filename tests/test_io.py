"""Tests for apfdsp.io, the facade over audiofile, streaming and model_format, and for how those three fit together.

The behaviour of each module is tested in tests/test_audiofile.py, tests/test_streaming.py and
tests/test_model_format.py.
"""

import ast
import inspect

import pytest

import apfdsp.audiofile as audiofile
import apfdsp.io as apio
import apfdsp.model_format as model_format
import apfdsp.streaming as streaming

MODULES = (audiofile, streaming, model_format)
# What each module may import from the package: audiofile is the lowest of the three.
ALLOWED = {
    "audiofile": {"_validate", "exceptions"},
    "streaming": {"_validate", "exceptions", "cascade", "audiofile"},
    "model_format": {"_validate", "exceptions", "cascade", "version", "audiofile"},
    "io": {"audiofile", "streaming", "model_format"},
}


def package_imports(module):
    """``(imported module, names)`` of every relative import in `module`'s source, lazy ones included."""
    tree = ast.parse(inspect.getsource(module))
    return [(node.module or "", [alias.name for alias in node.names])
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1]


def test_facade_reexports_every_public_name():
    assert apio.__all__ == [name for module in MODULES for name in module.__all__]
    for module in MODULES:
        for name in module.__all__:
            assert getattr(apio, name) is getattr(module, name), name


def test_facade_keeps_the_names_io_had():
    before_the_split = {
        "read_audio", "write_audio", "apply_file", "save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION",
        "audio_info", "read_audio_blocks", "write_text", "os_error_text", "same_file", "check_output_name",
        "TEMPORARY_PREFIX",
    }
    assert before_the_split <= set(apio.__all__)


@pytest.mark.parametrize("module", MODULES + (apio,), ids=lambda module: module.__name__)
def test_layers(module):
    """Each module imports only the lower modules it may, and no `_`-name of another module."""
    name = module.__name__.rsplit(".", 1)[1]
    for imported, names in package_imports(module):
        assert imported in ALLOWED[name], f"{name} imports {imported}"
        private = [n for n in names if n.startswith("_") and not n.endswith("__")]  # __version__ is public
        assert not private, f"{name} imports private names of {imported}: {private}"


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_public_functions_have_a_runnable_example(module):
    assert "docs/" in module.__doc__  # the section of the docs it implements
    defined = {name for name, obj in vars(module).items()
               if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")}
    assert defined <= set(module.__all__), f"public but not in __all__: {defined - set(module.__all__)}"
    for name in defined:
        doc = inspect.getdoc(getattr(module, name))
        assert "Examples\n--------\n" in doc and ">>> " in doc, f"{module.__name__}.{name} lacks a runnable example"
