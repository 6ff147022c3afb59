"""Why `align` may run some allpass sections backwards in time: a high-pass filter's phase.

A causal allpass has a phase that starts at 0 (or pi) and only falls. A first-order high-pass has a
phase of +pi/2 at low frequencies that falls to 0: no causal allpass follows it, whatever its order.
An anticausal section (a stable section run backwards in time) has the opposite phase, so a mixed
cascade can. This script aligns a dry track with its high-passed copy both ways and plots the phases.
"""

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from apfdsp.align import align  # noqa: E402
from apfdsp.demo import demo_dry  # noqa: E402
from apfdsp.plot import plot_phase  # noqa: E402


def main(out_dir, *, fs, duration_s, cutoff_hz, n_sections, align_options):
    dry = demo_dry(fs=fs, duration_s=duration_s)
    sos = signal.butter(1, cutoff_hz, "highpass", fs=fs, output="sos")
    wet = signal.sosfilt(sos, dry)

    results = {
        "causal": align(dry, wet, fs=fs, n_sections=n_sections, causal=True, **align_options),
        "default (anticausal allowed)": align(dry, wet, fs=fs, n_sections=n_sections, **align_options),
    }
    for name, result in results.items():
        n_back = result.cascade.sos_anticausal.shape[0]
        print(f"{name:30s} null depth {result.after['null_db']:6.1f} dB  "
              f"({result.cascade.sos.shape[0]} SOS rows forwards, {n_back} backwards)")

    # The target: the high-pass's own phase; each model's phase against it.
    f = np.geomspace(20.0, 0.45 * fs, 400)
    _, response = signal.sosfreqz(sos, worN=f, fs=fs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (name, result) in zip(axes, results.items()):
        plot_phase(result.cascade, freqs=f, target=response, ax=ax)
        ax.set_title(f"{name}: null {result.after['null_db']:.1f} dB")
    fig.tight_layout()
    path = os.path.join(out_dir, "causal_vs_anticausal.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters
    FS = 48000
    DURATION_S = 1.0 if args.quick else 5.0
    CUTOFF_HZ = 200.0
    N_SECTIONS = 4
    ALIGN_OPTIONS = dict(max_bins=256, fit_options=dict(max_iter=60, n_random=0)) if args.quick else {}

    main(args.out, fs=FS, duration_s=DURATION_S, cutoff_hz=CUTOFF_HZ, n_sections=N_SECTIONS,
         align_options=ALIGN_OPTIONS)
