"""The model file format: a fitted cascade saved as JSON (`save_model`) and loaded back, verified (`load_model`).

One job: the on-disk form of a model (docs/adding.md, sections 1.3 and 3). A model file holds the
cells of the cascade and, for readers in other languages, its second-order sections, integer delay
and polarity (`save_model`'s Notes give the reader's algorithm). Loading checks everything a damaged,
hand-edited or crafted file could get wrong before and after building the filter: size and nesting
of the JSON, the bounds of `apfdsp._validate.LIMITS`, the stored sections against the cells, and
stability. Files are written atomically through `apfdsp.audiofile.write_text`.
"""

import json
import numbers
import os

import numpy as np

from ._validate import LIMITS, json_depth
from .audiofile import error_line, path_str, write_text
from .cascade import AllpassCascade
from .exceptions import ModelFileError, ParameterError
from .version import __version__

__all__ = ["save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT = "apfdsp-model"
"""Value of the ``"format"`` key of a model file."""

MODEL_FORMAT_VERSION = 2
"""Newest model-file format version this apfdsp reads.

`save_model` writes version 1 for causal cascades (the files are as they always were) and version 2
for cascades with anticausal sections, whose ``"sos_anticausal"`` a version-1 reader would ignore.
"""

_REQUIRED_MODEL_KEYS = ("fs", "cascade", "sos", "integer_delay", "polarity")


def _json_safe(value, where):
    """Convert numpy scalars/arrays and tuples to plain JSON types; refuse the rest."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"metadata{where}: keys must be strings, got {key!r}")
            out[str(key)] = _json_safe(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            raise ParameterError(f"metadata{where} is {value!r}; JSON cannot store NaN or Inf (use None)")
        return value
    raise TypeError(f"metadata{where} has type {type(value).__name__}, which a JSON model file cannot store")



def save_model(path, cascade, *, metadata=None):
    """Save a cascade as a JSON model file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ``*.json``.
    cascade : AllpassCascade
        The filter to store.
    metadata : dict, optional
        How the model was fitted (loss, iterations, source files, ...). Values must be JSON types,
        numpy scalars or numpy arrays (converted to numbers and lists).

    Raises
    ------
    TypeError
        If `cascade` is not an `AllpassCascade` or `metadata` holds a type JSON cannot store.
    ParameterError
        If `metadata` holds NaN or Inf.
    OutputError
        If `path` cannot be written.

    See Also
    --------
    load_model

    Notes
    -----
    The document holds ``format`` (``"apfdsp-model"``), ``format_version``, ``apfdsp_version``,
    ``fs``, ``cascade`` (`AllpassCascade.to_dict`), ``sos`` (the causal sections, polarity folded
    in, for readers in other languages), ``integer_delay`` (the shift applied outside the SOS),
    ``polarity`` and ``metadata``. Floats are written with their shortest round-trip representation,
    so loading gives the same filter bit for bit.

    A cascade with anticausal sections (cells with ``"anticausal": true``, run backwards in time)
    also stores ``sos_anticausal`` (`AllpassCascade.sos_anticausal`) after ``sos``, and its file
    has ``format_version`` 2, so that a reader of version 1, which knows only ``sos`` and
    ``integer_delay``, refuses it instead of filtering wrongly. Such a reader's filter is
    ``y = sosfilt(sos, x)``, then ``y = sosfilt(sos_anticausal, y[::-1])[::-1]``, then the shift
    by ``integer_delay`` (keeping the length). Files of causal cascades have neither the key nor
    the new version: they are as they were before anticausal sections existed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.json")
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(2.3)], fs=48000)
    >>> save_model(path, cascade, metadata={"loss": np.float64(0.01)})
    >>> loaded, meta = load_model(path)
    >>> loaded == cascade, bool(np.array_equal(loaded.sos, cascade.sos)), meta
    (True, True, {'loss': 0.01})
    >>> tmp.cleanup()
    """
    if not isinstance(cascade, AllpassCascade):
        raise TypeError(f"cascade must be an AllpassCascade, got {type(cascade).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    sos_anticausal = cascade.sos_anticausal
    doc = {
        "format": MODEL_FORMAT,
        "format_version": 2 if len(sos_anticausal) else 1,
        "apfdsp_version": __version__,
        "fs": cascade.fs,
        "cascade": cascade.to_dict(),
        "sos": cascade.sos.tolist(),
        **({"sos_anticausal": sos_anticausal.tolist()} if len(sos_anticausal) else {}),
        "integer_delay": cascade.integer_delay,
        "polarity": cascade.polarity,
        "metadata": _json_safe(metadata, ""),
    }
    write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def _check_stored_sos(path, key, value, sos):
    """Refuse a stored SOS (`key` of a model file) that is not rows of 6 numbers or disagrees with `sos`."""
    try:
        stored = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        stored = None
    if stored is None or not (stored.ndim == 2 and stored.shape[1] == 6 or stored.shape == (0,)):
        raise ModelFileError(f"model file {path!r}: {key!r} must be a list of rows of 6 numbers")
    stored = stored.reshape(-1, 6)
    if stored.shape != sos.shape:
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} has shape {stored.shape}, "
            f"the cells give {sos.shape}"
        )
    if not np.allclose(stored, sos, rtol=1e-9, atol=1e-12):
        worst = float(np.max(np.abs(stored - sos)))
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} disagrees with the cells "
            f"(max difference {worst:.3g})"
        )


def _read_model_json(path):
    """The parsed JSON of a model file, refusing files too large or nested too deeply (before parsing)."""
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ModelFileError(f"model file {path!r} {what}")
    limit, depth = LIMITS["model_bytes"], LIMITS["model_depth"]
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise ModelFileError(f"cannot read model file {path!r}: {error_line(err)}") from None
    if len(raw) > limit:
        raise ModelFileError(f"model file {path!r} is larger than {limit} bytes, the most apfdsp reads: it is not a model")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelFileError(f"model file {path!r} is not JSON (it is not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(f"model file {path!r} is not JSON ({err})") from None
    except RecursionError:
        doc = None
    if doc is None or json_depth(doc) > depth:
        raise ModelFileError(f"model file {path!r} is nested more than {depth} levels deep: it is not a model")
    return doc


def _check_model_bounds(path, data):
    """Refuse, before any filter is built, a cascade dict whose sizes exceed `LIMITS` (see `apfdsp._validate`)."""
    def refuse(what):
        return ModelFileError(f"model file {path!r}: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise refuse("bad cascade: it must be an object with a list of 'cells'")
    fs, (lo, hi) = data.get("fs"), LIMITS["sample_rate_hz"]
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not lo <= fs <= hi:
        raise refuse(f"bad cascade: fs must be a sample rate in [{lo}, {hi}] Hz, got {fs!r:.40}")
    cells, limit = data["cells"], LIMITS["model_cells"]
    if len(cells) > limit:
        raise refuse(f"it has {len(cells)} cells, more than the {limit} apfdsp accepts")
    (k_lo, k_hi), rows, delay = LIMITS["model_stretch"], 0, 0.0
    for i, cell in enumerate(cells):
        cell = cell if isinstance(cell, dict) else {}
        stretch = cell.get("stretch", 1)
        if isinstance(stretch, numbers.Real) and not isinstance(stretch, bool) and not k_lo <= stretch <= k_hi:
            raise refuse(f"cell {i}: stretch must be an integer in [{k_lo}, {k_hi}], got {stretch!r:.40}")
        if cell.get("type") in ("allpass1", "allpass2"):
            rows += stretch if isinstance(stretch, int) else 1
        samples = cell.get("samples", 0) if cell.get("type") == "delay" else 0
        if isinstance(samples, numbers.Real) and not isinstance(samples, bool) and np.isfinite(samples):
            delay += abs(samples)
            rows += 1
    if rows > LIMITS["model_sos_rows"]:
        raise refuse(f"it needs {rows} second-order sections, more than the {LIMITS['model_sos_rows']} apfdsp accepts")
    max_s = LIMITS["model_delay_s"]
    if delay > max_s * fs:
        raise refuse(f"its delays add up to {delay:.6g} samples ({delay / fs:.3g} s), more than the {max_s} s "
                     "apfdsp accepts")


def load_model(path):
    """Load and verify a JSON model file written by `save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        Model file.

    Returns
    -------
    cascade : AllpassCascade
        The stored filter, equal bit for bit to the one saved.
    metadata : dict
        The stored metadata (empty if none).

    Raises
    ------
    ModelFileError
        If the file is missing, not JSON, larger or more deeply nested than a model can be, not an
        apfdsp model, exceeds a model bound of `apfdsp._validate.LIMITS` (cells, stretch factor,
        sections, delay, sample rate: checked before any filter is built), of a newer format version, lacks a
        key (``sos_anticausal`` too when the cells include anticausal sections), holds bad cell
        values, if its stored SOS (``sos``, ``sos_anticausal``), delay, polarity or fs disagree with
        the cells (a corrupt or hand-edited file), or if the filter is unstable.

    See Also
    --------
    save_model

    Examples
    --------
    >>> import json, os, tempfile
    >>> from apfdsp.cascade import Allpass2, AllpassCascade, Delay
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.json")
    >>> save_model(path, AllpassCascade([Allpass2(0.9, 1000.0), Delay(12)], fs=48000), metadata={"loss": 0.5})
    >>> cascade, metadata = load_model(path)
    >>> cascade.integer_delay, metadata
    (12, {'loss': 0.5})

    A file whose stored sections disagree with its cells is refused:

    >>> doc = json.load(open(path))
    >>> doc["sos"][0][1] += 0.01
    >>> with open(path, "w") as f:
    ...     json.dump(doc, f)
    >>> load_model(path)
    Traceback (most recent call last):
    ...
    apfdsp.exceptions.ModelFileError: model file '...model.json' is corrupt or was edited: stored sos disagrees ...
    >>> tmp.cleanup()
    """
    path = path_str(path, "path")
    doc = _read_model_json(path)
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path!r} is not an apfdsp model file (it lacks \"format\": \"{MODEL_FORMAT}\")")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"model file {path!r}: format_version must be a positive integer, got {version!r}")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path!r} has format_version {version}, newer than this apfdsp ({__version__}) "
            f"reads (up to {MODEL_FORMAT_VERSION}); upgrade apfdsp"
        )
    missing = [key for key in _REQUIRED_MODEL_KEYS if key not in doc]
    if missing:
        raise ModelFileError(f"model file {path!r} is missing the key(s) {', '.join(map(repr, missing))}")
    _check_model_bounds(path, doc["cascade"])
    try:
        cascade = AllpassCascade.from_dict(doc["cascade"])
    except (ParameterError, TypeError) as err:
        raise ModelFileError(f"model file {path!r}: bad cascade: {err}") from None
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError(f"model file {path!r}: 'metadata' must be an object, got {type(metadata).__name__}")

    def disagree(key, stored, actual):
        return ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} {stored!r} disagrees with "
            f"the cells ({actual!r})"
        )

    if doc["fs"] != cascade.fs or isinstance(doc["fs"], bool):
        raise disagree("fs", doc["fs"], cascade.fs)
    for key, actual in (("integer_delay", cascade.integer_delay), ("polarity", cascade.polarity)):
        if isinstance(doc[key], bool) or doc[key] != actual:
            raise disagree(key, doc[key], actual)
    sos_anticausal = cascade.sos_anticausal
    if len(sos_anticausal) and "sos_anticausal" not in doc:
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: its cells include anticausal sections (run "
            f"backwards in time, {len(sos_anticausal)} SOS row(s)) but it lacks the key 'sos_anticausal' "
            "that stores them"
        )
    _check_stored_sos(path, "sos", doc["sos"], cascade.sos)
    if "sos_anticausal" in doc:
        _check_stored_sos(path, "sos_anticausal", doc["sos_anticausal"], sos_anticausal)
    radius = np.abs(cascade.poles())
    if radius.size and np.max(radius) >= 1:
        raise ModelFileError(
            f"model file {path!r} describes an unstable filter (pole radius {np.max(radius):.12g} >= 1)"
        )
    if radius.size and np.max(radius) > LIMITS["model_pole_radius"]:
        ring_s = 1.0 / (1.0 - np.max(radius)) / cascade.fs
        raise ModelFileError(
            f"model file {path!r} describes a filter on the edge of stability (pole radius {np.max(radius):.12g} > "
            f"{LIMITS['model_pole_radius']}: it would ring for about {ring_s:.3g} s); no fit makes such a model"
        )
    return cascade, metadata

