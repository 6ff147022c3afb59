"""The allpass structures side by side: phase, group delay, and an exact SOS export checked with scipy."""

import argparse
import os
import tempfile

import numpy as np
from matplotlib.figure import Figure
from scipy import signal

from apfdsp import Allpass1, Allpass2, AllpassCascade
from apfdsp.plot import plot_group_delay, plot_phase


def structures(*, fs, pole_radius, fc_hz, warp, stretch, coef):
    """Name -> one-cell cascade: the same (R, fc) as traditional, warped and warped+stretched, and a 1st order."""
    cells = {
        "traditional": Allpass2(pole_radius, fc_hz),
        "warped": Allpass2(pole_radius, fc_hz, warp),
        f"warped+stretched K={stretch}": Allpass2(pole_radius, fc_hz, warp, stretch),
        "first order": Allpass1(coef),
    }
    return {name: AllpassCascade([cell], fs=fs) for name, cell in cells.items()}


def sos_error(cascade, freqs):
    """Largest |H_sos - H_exact| on `freqs`: the exported SOS evaluated by scipy vs the analytic response."""
    _, h_sos = signal.sosfreqz(cascade.sos, worN=freqs, fs=cascade.fs)
    return float(np.max(np.abs(h_sos - cascade.response(freqs))))


def figure(cascades, path):
    """One column per structure: phase on top, group delay below."""
    fig = Figure(figsize=(18, 8), layout="constrained")
    axes = fig.subplots(2, len(cascades))
    for column, (name, cascade) in enumerate(cascades.items()):
        ax = plot_phase(cascade, ax=axes[0, column])
        ax.set_title(f"{name}\n{cascade[0]}", fontsize="medium")
        ax.get_legend().remove()  # one curve per panel: the titles say what it is
        plot_group_delay(cascade, ax=axes[1, column]).set_title(f"{name}: group delay", fontsize="medium")
    fig.suptitle(f"One allpass cell, four structures (fs = {cascade.fs:g} Hz)", fontsize="x-large")
    fig.savefig(path, dpi=110)


def main(out_dir, *, fs, pole_radius, fc_hz, warp, stretch, coef, n_freqs):
    cascades = structures(fs=fs, pole_radius=pole_radius, fc_hz=fc_hz, warp=warp, stretch=stretch, coef=coef)
    linear = np.linspace(0.0, fs / 2, n_freqs)  # DC to Nyquist, for the SOS check
    log = np.geomspace(20.0, fs / 2, n_freqs)  # as on the figure's axis, for the group-delay peak
    print(f"{'structure':26s} order  SOS rows  group delay peak       max |H_sos - H_exact|")
    for name, cascade in cascades.items():
        gd = cascade.group_delay(log)
        peak = int(np.argmax(gd))
        print(f"{name:26s} {cascade.order:5d}  {cascade.sos.shape[0]:8d}  "
              f"{gd[peak]:6.1f} samples @ {log[peak]:5.0f} Hz  {sos_error(cascade, linear):.1e}")
    path = os.path.join(out_dir, "allpass_structures.png")
    figure(cascades, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters: one second-order cell (R, fc), its warp and stretch, and a first-order coefficient.
    FS = 48000
    POLE_RADIUS, FC_HZ = 0.9, 2000.0
    WARP = -0.6  # < 0 moves the pole down and sharpens it (more resolution at low frequencies); > 0: up
    STRETCH = 5  # K: the warped response repeats K times between 0 and fs/2
    COEF = -0.9  # first order: pole at z = 0.9, a 180-degree phase turn at low frequencies
    N_FREQS = 512 if args.quick else 8192

    main(args.out, fs=FS, pole_radius=POLE_RADIUS, fc_hz=FC_HZ, warp=WARP, stretch=STRETCH, coef=COEF,
         n_freqs=N_FREQS)
