"""Pretrained models shipped with apfdsp: `list_models`, `load`, `load_with_metadata`, `load_path`.

The models are JSON model files (`apfdsp.io.save_model`) installed as package data under
``apfdsp/pretrained/``: the pretrained "surveyor" cascade of Bargum et al. (192 kHz) and models that
apfdsp fitted to effects of Spotify's pedalboard (48 kHz). ``pretrained/README.md`` in the source tree
is their model card: what each model is, how it was made (``scripts/make_pretrained.py``), and how
well it aligns. On the command line: ``apfdsp pretrained`` lists them and
``apfdsp apply pretrained:NAME IN -o OUT`` applies one. The module's place in the package is
docs/architecture.md, section 2.24; the file format is docs/maths.md, section 2.6.

A model only fits audio at its own sample rate; `apfdsp.resample.resample_cascade` re-fits one for
another rate.
"""

import atexit
import contextlib
import importlib.resources
import json
import pathlib

from .model_format import load_model

__all__ = ["list_models", "load", "load_with_metadata", "load_path"]

_SUFFIX = ".json"
_extracted = contextlib.ExitStack()  # files extracted from a zipped install, removed at exit
atexit.register(_extracted.close)


def _directory():
    return importlib.resources.files(__package__) / "pretrained"


def _files():
    """Model name -> resource, sorted by name (empty when no model files are installed)."""
    directory = _directory()
    if not directory.is_dir():
        return {}
    found = {entry.name[: -len(_SUFFIX)]: entry for entry in directory.iterdir()
             if entry.name.endswith(_SUFFIX) and entry.is_file()}
    return dict(sorted(found.items()))


def list_models():
    """The installed pretrained models.

    Returns
    -------
    models : list of dict
        One dict per model, sorted by name: ``name`` (for `load`), ``description`` (one line) and
        ``fs`` (the sample rate in Hz the model was fitted at).

    Examples
    --------
    >>> models = list_models()
    >>> any(m["name"] == "surveyor-192k" and m["fs"] == 192000 for m in models)
    True
    """
    models = []
    for name, resource in _files().items():
        doc = json.loads(resource.read_text(encoding="utf-8"))
        metadata = doc.get("metadata", {})
        models.append({"name": name, "description": metadata.get("description", ""), "fs": doc.get("fs")})
    return models


def load_path(name):
    """The file of the pretrained model `name`.

    Parameters
    ----------
    name : str
        A name from `list_models`.

    Returns
    -------
    path : pathlib.Path
        The JSON model file (readable with `apfdsp.io.load_model`).

    Raises
    ------
    TypeError
        If `name` is not a string.
    KeyError
        If there is no model of that name; the message lists the names there are.

    Examples
    --------
    >>> path = load_path("surveyor-192k")
    >>> path.name, path.is_file()
    ('surveyor-192k.json', True)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a model name from list_models()), got {type(name).__name__}")
    files = _files()
    if name not in files:
        available = ", ".join(files) if files else "none are installed"
        raise KeyError(f"unknown pretrained model {name!r}; available: {available}")
    resource = files[name]
    if isinstance(resource, pathlib.Path):
        return resource
    return _extracted.enter_context(importlib.resources.as_file(resource))  # zipped install


def load_with_metadata(name):
    """Load the pretrained model `name` with its metadata.

    Parameters
    ----------
    name : str
        A name from `list_models`.

    Returns
    -------
    cascade : AllpassCascade
        The model, at the sample rate it was fitted at (``cascade.fs``).
    metadata : dict
        How it was made: source, effect and settings, null depths on training and held-out audio
        (see ``pretrained/README.md``).

    Raises
    ------
    KeyError
        If there is no model of that name.
    ModelFileError
        If the installed file is damaged.

    Examples
    --------
    >>> cascade, metadata = load_with_metadata("surveyor-192k")
    >>> cascade.fs, metadata["name"]
    (192000.0, 'surveyor-192k')
    """
    return load_model(load_path(name))


def load(name):
    """Load the pretrained model `name` as an `AllpassCascade`.

    Parameters
    ----------
    name : str
        A name from `list_models`.

    Returns
    -------
    cascade : AllpassCascade

    Raises
    ------
    KeyError
        If there is no model of that name; the message lists the names there are.

    See Also
    --------
    load_with_metadata, apfdsp.resample.resample_cascade

    Examples
    --------
    >>> import numpy as np
    >>> cascade = load("surveyor-192k")
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> cascade(x).shape
    (1000,)
    """
    return load_with_metadata(name)[0]
