"""Tests for apfdsp.model_format: saving and loading model files, and the refusal of damaged ones."""

import json
import os

import numpy as np
import pytest

import apfdsp.model_format as model_format
from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.exceptions import ModelFileError, ParameterError
from apfdsp.model_format import load_model, save_model
from io_helpers import FS, example_cascade, listing

pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # no clipping warning unless a test expects it


@pytest.fixture
def cascade():
    return example_cascade()


# -- model files ---------------------------------------------------------------------------------------------
def test_model_round_trip_bit_exact(tmp_path, rng):
    cells = [
        Allpass2(rng.uniform(0, 0.99), rng.uniform(20, 20000), rng.uniform(-0.9, 0.9), 2),
        Allpass2(0.1 + 0.2, 1000.0 / 3),
        Allpass1(rng.uniform(-0.99, 0.99), rng.uniform(-0.9, 0.9)),
        Delay(rng.uniform(1, 40)),
        Delay(7),
        Polarity(-1),
    ]
    cascade = AllpassCascade(cells, fs=44100.0)
    metadata = {"loss": np.float64(1 / 3), "n_iter": np.int64(500), "history": np.linspace(1, 0, 4),
                "source": ("dry.wav", "wet.wav"), "converged": np.bool_(True), "note": None}
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata=metadata)
    loaded, meta = load_model(path)
    assert loaded == cascade
    assert np.array_equal(loaded.sos, cascade.sos)
    doc = json.loads(path.read_text())
    assert np.array_equal(np.array(doc["sos"]), cascade.sos)  # the stored SOS is bit-exact too
    assert doc["format"] == "apfdsp-model" and doc["format_version"] == 1
    assert doc["integer_delay"] == cascade.integer_delay and doc["polarity"] == -1
    assert meta == {"loss": 1 / 3, "n_iter": 500, "history": np.linspace(1, 0, 4).tolist(),
                    "source": ["dry.wav", "wet.wav"], "converged": True, "note": None}
    assert type(meta["n_iter"]) is int
    assert listing(tmp_path) == ["model.json"]
    assert path.read_text().startswith('{\n  "format"')  # indent=2


def test_model_round_trip_anticausal(tmp_path, rng):
    cells = [Allpass2(0.9, 1000.0, 0.3),
             Allpass2(rng.uniform(0, 0.99), rng.uniform(20, 20000), 0.2, 2, anticausal=True),
             Allpass1(1 / 3, anticausal=True), Allpass1(-0.5), Delay(-7.3), Polarity(-1)]
    cascade = AllpassCascade(cells, fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata={"how": "test"})
    loaded, meta = load_model(path)
    assert loaded == cascade and not loaded.causal and meta == {"how": "test"}
    assert np.array_equal(loaded.sos, cascade.sos) and np.array_equal(loaded.sos_anticausal, cascade.sos_anticausal)
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 2  # a version-1 reader (sos + integer_delay only) refuses it
    assert list(doc)[:7] == ["format", "format_version", "apfdsp_version", "fs", "cascade", "sos", "sos_anticausal"]
    assert np.array_equal(np.array(doc["sos_anticausal"]), cascade.sos_anticausal)  # bit-exact
    assert [cell.get("anticausal", False) for cell in doc["cascade"]["cells"]] == [False, True, True, False, False,
                                                                                     False]
    # what the Notes of save_model tell readers in other languages to do
    from scipy import signal
    x = rng.standard_normal(3000)
    y = signal.sosfilt(doc["sos"], x)
    y = signal.sosfilt(doc["sos_anticausal"], y[::-1])[::-1]
    y = np.concatenate([y[-doc["integer_delay"]:], np.zeros(-doc["integer_delay"])])
    np.testing.assert_array_equal(y, cascade.apply(x))


def test_causal_model_files_unchanged(tmp_path, monkeypatch):
    """Causal cascades are saved as before anticausal sections existed: version 1, no new key, and the
    shipped pretrained files are re-created byte for byte."""
    import glob

    paths = sorted(glob.glob(os.path.join(os.path.dirname(model_format.__file__), "pretrained", "*.json")))
    assert len(paths) >= 7
    for path in paths:
        cascade, metadata = load_model(path)
        doc = json.loads(open(path, encoding="utf-8").read())
        assert doc["format_version"] == 1 and "sos_anticausal" not in doc and cascade.causal
        monkeypatch.setattr(model_format, "__version__", doc["apfdsp_version"])
        save_model(tmp_path / "again.json", cascade, metadata=metadata)
        assert (tmp_path / "again.json").read_bytes() == open(path, "rb").read(), path


def test_save_model_refuses_unsafe_metadata(tmp_path, cascade):
    with pytest.raises(ParameterError, match=r"metadata\['loss'\].*NaN"):
        save_model(tmp_path / "m.json", cascade, metadata={"loss": float("nan")})
    with pytest.raises(TypeError, match=r"metadata\['x'\] has type complex"):
        save_model(tmp_path / "m.json", cascade, metadata={"x": 1j})
    with pytest.raises(TypeError, match="keys must be strings"):
        save_model(tmp_path / "m.json", cascade, metadata={1: 2})
    assert listing(tmp_path) == []


@pytest.fixture
def model_doc(tmp_path):
    """A valid saved model: returns (path, doc) with doc the parsed JSON to edit."""
    cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(2.3), Polarity(-1)], fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade, metadata={"how": "test"})
    return path, json.loads(path.read_text())


def _edit(path, doc, change):
    change(doc)
    path.write_text(json.dumps(doc))


def _del(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_cell(field, value):
    return lambda d: d["cascade"]["cells"][0].__setitem__(field, value)


def _nudge_sos(d):
    d["sos"][0][1] *= 1 + 1e-6


@pytest.mark.parametrize(
    "change, match",
    [
        (_set("format", "something-else"), "not an apfdsp model file"),
        (_del("format"), "not an apfdsp model file"),
        (_set("format_version", 3), "format_version 3, newer than .* upgrade apfdsp"),
        (_set("format_version", "1"), "format_version must be a positive integer"),
        (_del("sos"), "missing the key.*'sos'"),
        (_del("cascade"), "missing the key.*'cascade'"),
        (_set_cell("pole_radius", 1.5), r"model\.json'.*bad cascade: .*pole_radius"),
        (_set_cell("type", "allpass9"), "bad cascade: cell 0: 'type'"),
        (_set_cell("colour", "red"), r"bad cascade: cell 0: unknown field"),
        (lambda d: d["cascade"].__setitem__("cells", 5), "bad cascade"),
        (lambda d: d["cascade"].__setitem__("fs", -1), "bad cascade: fs"),
        (_nudge_sos, "corrupt or was edited: stored sos disagrees"),
        (lambda d: d["sos"].pop(), r"stored sos has shape \(2, 6\)"),
        (_set("sos", [[1, 2], [3]]), "'sos' must be a list of rows"),
        (_set("integer_delay", 3), "stored integer_delay 3 disagrees"),
        (_set("polarity", 1), "stored polarity 1 disagrees"),
        (_set("fs", 44100.0), "stored fs 44100.0 disagrees"),
        (_set("metadata", [1, 2]), "'metadata' must be an object"),
    ],
)
def test_load_model_errors(model_doc, change, match):
    path, doc = model_doc
    _edit(path, doc, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


@pytest.fixture
def anticausal_model_doc(tmp_path):
    cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5, anticausal=True),
                              Allpass2(0.8, 300.0, anticausal=True), Delay(-2.3)], fs=FS)
    path = tmp_path / "model.json"
    save_model(path, cascade)
    return path, json.loads(path.read_text())


def _nudge(key):
    def change(d):
        d[key][0][4] *= 1 + 1e-6
    return change


@pytest.mark.parametrize(
    "change, match",
    [
        (_del("sos_anticausal"), r"model\.json' is corrupt or was edited: its cells include anticausal sections "
                                 r"\(run backwards in time, 2 SOS row\(s\)\) but it lacks the key 'sos_anticausal'"),
        (_nudge("sos_anticausal"), r"stored sos_anticausal disagrees with the cells \(max difference"),
        (lambda d: d["sos_anticausal"].pop(), r"stored sos_anticausal has shape \(1, 6\), the cells give \(2, 6\)"),
        (_set("sos_anticausal", []), r"stored sos_anticausal has shape \(0, 6\), the cells give \(2, 6\)"),
        (_set("sos_anticausal", [[1, 2], [3]]), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (_set("sos_anticausal", "none"), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (_set("sos_anticausal", [[0.5] * 5] * 2), "'sos_anticausal' must be a list of rows of 6 numbers"),
        (lambda d: d["sos_anticausal"][1].__setitem__(0, None), "stored sos_anticausal disagrees"),  # null: NaN
        (lambda d: d["sos_anticausal"][1].__setitem__(3, float("nan")), "stored sos_anticausal disagrees"),
        # the rows of the two parts swapped, or an anticausal flag dropped: the stored rows no longer fit
        (lambda d: d.update(sos=d["sos_anticausal"], sos_anticausal=d["sos"]), "stored sos disagrees"),
        (lambda d: d["cascade"]["cells"][1].pop("anticausal"),
         r"stored sos has shape \(2, 6\), the cells give \(3, 6\)"),
        (lambda d: d["cascade"]["cells"][0].__setitem__("anticausal", True), r"stored sos has shape \(2, 6\), "
                                                                            r"the cells give \(1, 6\)"),
        (_set("format_version", 3), "format_version 3, newer"),
    ],
)
def test_load_model_anticausal_errors(anticausal_model_doc, change, match):
    path, doc = anticausal_model_doc
    _edit(path, doc, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_load_model_sos_anticausal_on_a_causal_model(model_doc):
    path, doc = model_doc
    _edit(path, doc, _set("sos_anticausal", []))  # empty: agrees with the cells
    assert load_model(path)[0].causal
    _edit(path, doc, _set("sos_anticausal", [[1.0, 0.5, 0, 1.0, 0.5, 0]]))
    with pytest.raises(ModelFileError, match=r"stored sos_anticausal has shape \(1, 6\), the cells give \(0, 6\)"):
        load_model(path)


def test_load_model_anticausal_flag_added_by_hand(model_doc):
    path, doc = model_doc
    _edit(path, doc, _set_cell("anticausal", True))  # the stored rows are all causal
    with pytest.raises(ModelFileError, match="lacks the key 'sos_anticausal'"):
        load_model(path)
    _edit(path, doc, _set_cell("anticausal", "yes"))
    with pytest.raises(ModelFileError, match="bad cascade: .*anticausal must be True or False"):
        load_model(path)


def test_load_model_accepts_tiny_sos_noise(model_doc):
    path, doc = model_doc
    _edit(path, doc, lambda d: d["sos"][0].__setitem__(1, d["sos"][0][1] * (1 + 1e-12)))
    cascade, meta = load_model(path)
    assert meta == {"how": "test"} and len(cascade) == 4


def test_load_model_missing(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.json' does not exist"):
        load_model(tmp_path / "nope.json")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage"])
def test_load_model_not_json(tmp_path, content):
    (tmp_path / "m.json").write_bytes(content)
    with pytest.raises(ModelFileError, match=r"m\.json' is not JSON"):
        load_model(tmp_path / "m.json")


@pytest.mark.parametrize("content", ["[1, 2]", '"apfdsp-model"', "{}"])
def test_load_model_not_a_model(tmp_path, content):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(ModelFileError, match="not an apfdsp model file"):
        load_model(tmp_path / "m.json")


def test_load_model_unstable(model_doc, monkeypatch):
    # Cell validation keeps every pole inside the unit circle, so fake an unstable result.
    path, _ = model_doc
    monkeypatch.setattr(AllpassCascade, "poles", lambda self: np.array([0.5, 1.0001 + 0j]))
    with pytest.raises(ModelFileError, match=r"unstable filter \(pole radius 1.0001"):
        load_model(path)

