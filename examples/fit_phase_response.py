"""Fit allpass cascades to two phase targets: a random allpass cascade and a Butterworth band-pass."""

import argparse
import os
import tempfile

import numpy as np
from matplotlib.figure import Figure
from scipy import signal

from apfdsp import Allpass2, AllpassCascade, fit_phase
from apfdsp.plot import plot_phase


def random_cascade(n_sections, *, fs, rng):
    """Ground truth: warped second-order sections with random pole radius, frequency and warp."""
    cells = [
        Allpass2(rng.uniform(0.5, 0.95), np.exp(rng.uniform(np.log(50.0), np.log(15e3))), rng.uniform(-0.5, 0.5))
        for _ in range(n_sections)
    ]
    return AllpassCascade(cells, fs=fs)


def butterworth_response(freqs, *, fs, order, band_hz):
    """Complex response of a Butterworth band-pass: minimum phase, not an allpass."""
    sos = signal.butter(order, band_hz, "bandpass", fs=fs, output="sos")
    return signal.sosfreqz(sos, worN=freqs, fs=fs)[1]


def wrapped_error(cascade, freqs, target_phase):
    """Model minus target phase, wrapped to (-pi, pi]."""
    return np.angle(np.exp(1j * (cascade.phase(freqs) - target_phase)))


def figure(fits, freqs, path, *, every=4):
    """Top: model phase against each target (plot_phase, every `every`-th target point). Bottom: the error."""
    fig = Figure(figsize=(14, 9), layout="constrained")
    axes = fig.subplots(2, len(fits), height_ratios=[2, 1], sharex="col")
    for column, (name, (result, target_phase)) in enumerate(fits.items()):
        ax = plot_phase(result.cascade, freqs=freqs[::every], target=target_phase[::every], ax=axes[0, column])
        ax.legend(ax.get_legend().legend_handles, ["fitted allpass", "target"], loc="lower left")
        ax.set_xlabel("")  # shared with the error panel below
        ax.set_title(f"{name}\nfit: {len(result.cascade)} cells, RMS error {result.phase_error_rad:.2g} rad, "
                     f"{result.elapsed_s:.2f} s", fontsize="medium")
        ax = axes[1, column]
        ax.plot(freqs, wrapped_error(result.cascade, freqs, target_phase), color="C3")
        ax.set_xlabel("Frequency (Hz)")
        ax.set_ylabel("Model - target (rad)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("fit_phase: allpass model vs target phase", fontsize="x-large")
    fig.savefig(path, dpi=110)


def main(out_dir, *, fs, n_freqs, n_true, n_sections, butter_order, band_hz, fit_options, seed):
    rng = np.random.default_rng(seed)
    freqs = np.geomspace(20.0, 20e3, n_freqs)
    truth = random_cascade(n_true, fs=fs, rng=rng)
    targets = {
        f"random cascade ({n_true} warped sections)": truth.phase(freqs),
        f"Butterworth band-pass {band_hz[0]:g}-{band_hz[1]:g} Hz, order {2 * butter_order}":
            np.angle(butterworth_response(freqs, fs=fs, order=butter_order, band_hz=band_hz)),
    }
    fits = {}
    for name, target_phase in targets.items():
        result = fit_phase(freqs, target_phase, fs=fs, n_sections=n_sections, seed=seed, **fit_options)
        fits[name] = (result, target_phase)
        print(f"{name}: {len(result.cascade)} cells (order {result.cascade.order}), "
              f"RMS phase error {result.phase_error_rad:.2e} rad, {result.elapsed_s:.2f} s")
    path = os.path.join(out_dir, "fit_phase_response.png")
    figure(fits, freqs, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters
    FS = 48000
    SEED = 1
    N_FREQS = 128 if args.quick else 512  # log-spaced fitting grid, 20 Hz - 20 kHz
    N_TRUE = 2 if args.quick else 4  # sections of the random ground truth
    N_SECTIONS = 3 if args.quick else 6  # largest model fit_phase may use (it prunes what it does not need)
    BUTTER_ORDER, BAND_HZ = 4, (300.0, 3000.0)  # scipy band-pass of order 2 * 4 = 8
    FIT_OPTIONS = dict(max_iter=40, n_random=0, n_keep=1) if args.quick else dict(max_iter=300, n_random=2)

    main(args.out, fs=FS, n_freqs=N_FREQS, n_true=N_TRUE, n_sections=N_SECTIONS, butter_order=BUTTER_ORDER,
         band_hz=BAND_HZ, fit_options=FIT_OPTIONS, seed=SEED)
