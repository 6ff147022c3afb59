"""Align a dry track with its copy rendered through a pedalboard LadderFilter, then check the null."""

import argparse
import os
import tempfile

import numpy as np
import pedalboard

from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.io import write_audio
from apfdsp.plot import align_report


def render(x, *, fs, mode, cutoff_hz, resonance, drive):
    """The wet track: `x` through a pedalboard LadderFilter (float32 inside, float64 out)."""
    ladder = pedalboard.LadderFilter(mode=getattr(pedalboard.LadderFilter.Mode, mode), cutoff_hz=cutoff_hz,
                                     resonance=resonance, drive=drive)
    return pedalboard.Pedalboard([ladder])(x.astype(np.float32), fs).astype(np.float64)


def report(result):
    """Print the delay, polarity and model, and the null depth before -> delay + polarity -> after."""
    s = result.summary()
    print(f"delay {s['delay_samples']:+.3f} samples, polarity {'inverted' if s['polarity'] < 0 else 'normal'}, "
          f"kept: {s['method']}, {s['n_sections']} allpass sections, {s['elapsed_s']:.2f} s")
    print(f"null depth (dB): before {s['null_db_before']:.1f}, delay+polarity {s['null_db_delay_polarity']:.1f}, "
          f"after {s['null_db_after']:.1f}")
    print(f"mix loss (dB):   before {s['mix_loss_db_before']:.2f}, delay+polarity "
          f"{s['mix_loss_db_delay_polarity']:.2f}, after {s['mix_loss_db_after']:.2f}")


def main(out_dir, *, fs, duration_s, effect, n_sections, align_options):
    dry = demo_dry(fs=fs, duration_s=duration_s)
    wet = render(dry, fs=fs, **effect)
    result = align(dry, wet, fs=fs, n_sections=n_sections, **align_options)
    report(result)
    outputs = {
        "dry_aligned.wav": lambda path: write_audio(path, result.aligned, fs, subtype="FLOAT"),
        "wet.wav": lambda path: write_audio(path, wet, fs, subtype="FLOAT"),
        "align_report.png": lambda path: align_report(
            result, dry, wet, path, fs=fs, title=f"LadderFilter {effect['mode']} {effect['cutoff_hz']:g} Hz"),
    }
    for name, write in outputs.items():
        path = os.path.join(out_dir, name)
        write(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the audio and the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters
    FS = 48000
    DURATION_S = 1.0 if args.quick else 5.0
    EFFECT = dict(mode="HPF12", cutoff_hz=300.0, resonance=0.3, drive=1.0)  # a resonant 2-pole high-pass
    N_SECTIONS = 2 if args.quick else 4
    ALIGN_OPTIONS = (dict(max_bins=256, fit_options=dict(max_iter=40, n_random=0, n_keep=1)) if args.quick
                     else dict(max_bins=1024))

    main(args.out, fs=FS, duration_s=DURATION_S, effect=EFFECT, n_sections=N_SECTIONS, align_options=ALIGN_OPTIONS)
