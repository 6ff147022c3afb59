"""Use a cascade's exported SOS in plain scipy code, block by block, and round-trip it through a JSON model file."""

import argparse
import json
import os
import tempfile

import numpy as np
from scipy import signal

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity
from apfdsp.demo import demo_dry
from apfdsp.io import load_model, save_model
from apfdsp.plot import model_figure


def example_cascade(*, fs):
    """A cascade like a fitted one: warped, stretched and first-order sections, a 12.4-sample delay, inverted."""
    return AllpassCascade([
        Allpass2(0.95, 300.0, warp=-0.3),
        Allpass2(0.8, 4000.0, warp=0.2, stretch=3),
        Allpass1(-0.6),
        Delay(12.4),  # = 11-sample shift (outside the SOS) + a Thiran allpass for the 1.4 (inside)
        Polarity(-1),  # folded into the first SOS row
    ], fs=fs)


def read_sos(path):
    """What any language can do with a model file: read the SOS rows and the integer delay from plain JSON."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return np.array(doc["sos"]), int(doc["integer_delay"])


def stream(sos, integer_delay, x, *, block_size):
    """Plain scipy: sosfilt block by block, carrying zi, then an integer delay line (also carried)."""
    zi = np.zeros((sos.shape[0], 2))
    line = np.zeros(integer_delay)
    out = []
    for start in range(0, x.size, block_size):
        y, zi = signal.sosfilt(sos, x[start : start + block_size], zi=zi)
        joined = np.concatenate([line, y])
        out.append(joined[: y.size])
        line = joined[y.size :]
    return np.concatenate(out)


def main(out_dir, *, fs, duration_s, block_size):
    cascade = example_cascade(fs=fs)
    print(f"{len(cascade)} cells -> sos {cascade.sos.shape}, integer delay {cascade.integer_delay} samples, "
          f"polarity {cascade.polarity:+d}")
    model_path = os.path.join(out_dir, "model.json")
    save_model(model_path, cascade, metadata={"source": "examples/export_sos.py"})
    print(f"wrote {model_path}")

    x = demo_dry(fs=fs, duration_s=duration_s)
    sos, integer_delay = read_sos(model_path)
    y_scipy = stream(sos, integer_delay, x, block_size=block_size)
    y_apfdsp = cascade.apply(x)
    print(f"plain scipy, {block_size}-sample blocks, vs cascade.apply: max |difference| "
          f"{np.max(np.abs(y_scipy - y_apfdsp)):.1e}")

    loaded, metadata = load_model(model_path)
    same = (loaded == cascade, np.array_equal(loaded.sos, cascade.sos), np.array_equal(loaded.apply(x), y_apfdsp))
    print(f"load_model: cells equal {same[0]}, sos bit-for-bit {same[1]}, output bit-for-bit {same[2]}, "
          f"metadata {metadata}")

    figure_path = model_figure(loaded, os.path.join(out_dir, "export_sos_model.png"), title="The exported model")
    print(f"wrote {figure_path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the model file and the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters
    FS = 48000
    DURATION_S = 0.25 if args.quick else 5.0
    BLOCK_SIZE = 1000  # any size works, also one that does not divide the signal length

    main(args.out, fs=FS, duration_s=DURATION_S, block_size=BLOCK_SIZE)
