"""Parallel compression: a 50/50 mix of dry and a compressed, high-passed bus, with and without alignment."""

import argparse
import os
import tempfile

import numpy as np
import pedalboard
from matplotlib.figure import Figure
from scipy import signal

from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.io import write_audio
from apfdsp.metrics import mix_loss_db, stft_settings
from apfdsp.plot import plot_mix_loss


def compressed_bus(x, *, fs, threshold_db, ratio, attack_ms, release_ms, cutoff_hz, resonance):
    """The wet path: Compressor, then a LadderFilter high-pass (its phase shift is the problem), level-matched."""
    board = pedalboard.Pedalboard([
        pedalboard.Compressor(threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms, release_ms=release_ms),
        pedalboard.LadderFilter(mode=pedalboard.LadderFilter.Mode.HPF12, cutoff_hz=cutoff_hz, resonance=resonance),
    ])
    wet = board(x.astype(np.float32), fs).astype(np.float64)
    return wet * np.sqrt(np.mean(x**2) / np.mean(wet**2))  # make-up gain: same RMS as the dry


def octave_levels(signals, *, fs, centres_hz):
    """Level in dB of each signal (a complex STFT or a real magnitude array) in octave bands around `centres_hz`."""
    nfft, hop = stft_settings(fs)
    stft = signal.ShortTimeFFT(signal.windows.hann(nfft, sym=False), hop, fs)
    freqs = stft.f
    levels = []
    for spectrum in signals:
        power = np.sum(np.abs(spectrum) ** 2, axis=-1)  # sum over frames
        band = [power[(freqs >= fc / np.sqrt(2)) & (freqs < fc * np.sqrt(2))].sum() for fc in centres_hz]
        levels.append(10 * np.log10(np.maximum(band, 1e-30)))
    return np.array(levels)


def band_table(dry, wet, aligned, *, fs, centres_hz):
    """Per octave: level of each 50/50 mix relative to the in-phase sum 0.5 (|D| + |W|) (0 dB: nothing cancels)."""
    nfft, hop = stft_settings(fs)
    stft = signal.ShortTimeFFT(signal.windows.hann(nfft, sym=False), hop, fs)
    D, A, W = (stft.stft(v) for v in (dry, aligned, wet))
    levels = octave_levels([0.5 * (np.abs(D) + np.abs(W)), 0.5 * (D + W), 0.5 * (A + W)], fs=fs,
                           centres_hz=centres_hz)
    return levels[1] - levels[0], levels[2] - levels[0]


def figure(dry, wet, aligned, path, *, fs, centres_hz, dips):
    """Left: mix loss per 1/6 octave (plot_mix_loss). Right: the octave-band dip of each 50/50 mix."""
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax_loss, ax_bands = fig.subplots(1, 2)
    plot_mix_loss(dry, wet, aligned, fs=fs, ax=ax_loss)
    x = np.arange(len(centres_hz))
    ax_bands.bar(x - 0.2, dips[0], 0.4, color="C3", label="dry as given")
    ax_bands.bar(x + 0.2, dips[1], 0.4, color="C2", label="dry aligned")
    ax_bands.set_xticks(x, [f"{fc / 1000:g}k" if fc >= 1000 else f"{fc:g}" for fc in centres_hz])
    ax_bands.set_xlabel("Octave band centre (Hz)")
    ax_bands.set_ylabel("50/50 mix vs in-phase sum (dB)")
    ax_bands.set_title("Level the parallel mix loses per octave")
    ax_bands.axhline(0, color="0.3", lw=0.8)
    ax_bands.grid(True, axis="y", alpha=0.4)
    ax_bands.legend(loc="lower right")
    fig.suptitle("Parallel compression: dry + (Compressor -> LadderFilter HPF12)", fontsize="x-large")
    fig.savefig(path, dpi=110)


def main(out_dir, *, fs, duration_s, bus, n_sections, align_options, centres_hz):
    dry = demo_dry(fs=fs, duration_s=duration_s)
    wet = compressed_bus(dry, fs=fs, **bus)
    result = align(dry, wet, fs=fs, n_sections=n_sections, **align_options)
    aligned = result.aligned
    print(f"alignment: {result.method}, {len(result.cascade)} cells, {result.elapsed_s:.2f} s")
    print(f"mix loss (dB): plain {mix_loss_db(dry, wet, fs=fs):.2f}, aligned {mix_loss_db(aligned, wet, fs=fs):.2f}")
    dips = band_table(dry, wet, aligned, fs=fs, centres_hz=centres_hz)
    print("octave band (Hz)     " + "".join(f"{fc:>7g}" for fc in centres_hz))
    for label, dip in zip(("plain mix (dB)", "aligned mix (dB)"), dips):
        print(f"{label:21s}" + "".join(f"{v:7.1f}" for v in dip))
    outputs = {
        "mix_plain.wav": lambda path: write_audio(path, 0.5 * dry + 0.5 * wet, fs, subtype="FLOAT"),
        "mix_aligned.wav": lambda path: write_audio(path, 0.5 * aligned + 0.5 * wet, fs, subtype="FLOAT"),
        "parallel_compression.png": lambda path: figure(dry, wet, aligned, path, fs=fs, centres_hz=centres_hz,
                                                        dips=dips),
    }
    for name, write in outputs.items():
        path = os.path.join(out_dir, name)
        write(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "apfdsp-examples"),
                        help="directory for the mixes and the figure (default: %(default)s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Hyperparameters
    FS = 48000
    DURATION_S = 1.0 if args.quick else 5.0
    BUS = dict(threshold_db=-30.0, ratio=6.0, attack_ms=3.0, release_ms=120.0,  # a squashed bus ...
               cutoff_hz=250.0, resonance=0.3)  # ... with its low end cleaned up by a resonant high-pass
    N_SECTIONS = 2 if args.quick else 4
    ALIGN_OPTIONS = (dict(max_bins=256, fit_options=dict(max_iter=40, n_random=0, n_keep=1)) if args.quick
                     else dict(max_bins=1024))
    CENTRES_HZ = (31.25, 62.5, 125, 250, 500, 1000, 2000, 4000, 8000, 16000)

    main(args.out, fs=FS, duration_s=DURATION_S, bus=BUS, n_sections=N_SECTIONS, align_options=ALIGN_OPTIONS,
         centres_hz=CENTRES_HZ)
