"""Reproduce the phase and group delay of the paper's pretrained "surveyor" allpass model (fs = 192 kHz)."""

import argparse
import os
import tempfile

import numpy as np
from matplotlib.figure import Figure

from apfdsp import Allpass1, Allpass2, AllpassCascade
from apfdsp.plot import plot_group_delay, plot_phase


def from_coefficients(c, d, warp, coef1, warp1, *, fs):
    """Cascade from the notebook's printed numbers: c = R^2 and d = -2 R cos(2 pi fc / fs) per warped section."""
    pole_radius = np.sqrt(c)
    fc_hz = fs / (2 * np.pi) * np.arccos(-np.asarray(d) / (2 * pole_radius))
    cells = [Allpass2(float(r), float(f), float(a)) for r, f, a in zip(pole_radius, fc_hz, warp)]
    return AllpassCascade(cells + [Allpass1(coef1, warp1)], fs=fs)


def pretrained(name):
    """The shipped model `name`, or None when this apfdsp has no pretrained models (or not this one)."""
    try:
        from apfdsp import pretrained as module

        loaded = module.load(name)
    except (ImportError, LookupError, OSError, ValueError):
        return None
    return loaded[0] if isinstance(loaded, tuple) else loaded


def figure(cascade, path, *, phase_at_hz, gd_at_hz, source):
    """Phase and group delay side by side, with the printed points marked."""
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax_phase, ax_gd = fig.subplots(1, 2)
    plot_phase(cascade, ax=ax_phase).get_legend().remove()
    phases = cascade.phase(phase_at_hz)
    ax_phase.plot(phase_at_hz, phases, "o", color="C3", ms=7)
    for i, (f, p) in enumerate(zip(phase_at_hz, phases)):
        # Labels above the falling curve, right of their point (the first one left, clear of the second).
        ax_phase.annotate(f"{f:g} Hz: {p:.2f} rad", (f, p), textcoords="offset points",
                          xytext=(-4 if i == 0 else 4, 9), fontsize="small", ha="right" if i == 0 else "left")
    plot_group_delay(cascade, ax=ax_gd)
    delays = cascade.group_delay(gd_at_hz)
    peak = cascade.group_delay(np.geomspace(20.0, cascade.fs / 2, 20000)).max()
    ax_gd.set_ylim(0, 1.25 * delays.max())
    ax_gd.plot(gd_at_hz, delays, "o", color="C3", ms=7)
    for f, gd in zip(gd_at_hz, delays):
        ax_gd.annotate(f"{f:g} Hz: {gd:.0f} samples", (f, gd), textcoords="offset points", xytext=(10, 0),
                       fontsize="small", va="center")
    ax_gd.set_title(f"Group delay (the peaks near 1.3 kHz, up to {peak:.0f} samples, are clipped)")
    fig.suptitle(f'The "surveyor" model at {cascade.fs / 1000:g} kHz ({source})', fontsize="x-large")
    fig.savefig(path, dpi=110)


def main(out_dir, *, fs, coefficients, name, phase_at_hz, gd_at_hz):
    from_numbers = from_coefficients(**coefficients, fs=fs)
    shipped = pretrained(name)
    cascade, source = (shipped, f"apfdsp.pretrained {name!r}") if shipped is not None else (
        from_numbers, "the notebook's printed coefficients")
    print(f"model from {source}:")
    print(cascade)
    if shipped is not None:
        f = np.geomspace(20.0, fs / 2, 256)
        print(f"max phase difference to the printed coefficients: "
              f"{np.max(np.abs(shipped.phase(f) - from_numbers.phase(f))):.1e} rad")
    for f, phase in zip(phase_at_hz, cascade.phase(phase_at_hz)):
        print(f"phase at {f:6g} Hz: {phase:7.2f} rad ({phase / np.pi:+.2f} pi)")
    for f, gd in zip(gd_at_hz, cascade.group_delay(gd_at_hz)):
        print(f"group delay at {f:g} Hz: {gd:.0f} samples ({1e3 * gd / fs:.2f} ms)")
    path = os.path.join(out_dir, "surveyor_phase.png")
    figure(cascade, path, phase_at_hz=phase_at_hz, gd_at_hz=gd_at_hz, source=source)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests; same output here)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters: the reference notebook's printed coefficients of the pretrained "surveyor" model.
    FS = 192000
    COEFFICIENTS = dict(
        c=[0.998039, 0.002789, 0.998465],  # R^2 of the three warped second-order sections
        d=[-1.653425, 0.101380, -1.695402],  # -2 R cos(2 pi fc / fs)
        warp=[-0.864498, -0.307401, -0.865795],
        coef1=-0.972990, warp1=-0.964903,  # the warped first-order section
    )
    NAME = "surveyor-192k"
    PHASE_AT_HZ = np.array([500.0, 1000.0, 2000.0, 10000.0])
    GD_AT_HZ = np.array([20.0])

    main(args.out, fs=FS, coefficients=COEFFICIENTS, name=NAME, phase_at_hz=PHASE_AT_HZ, gd_at_hz=GD_AT_HZ)
