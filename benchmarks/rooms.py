"""Alignment in simulated rooms (pyroomacoustics): delay of the direct path and the phase fit's share.

    python benchmarks/rooms.py                      # all rooms; writes benchmarks/results/rooms.json
    python benchmarks/rooms.py --only hall          # the cases whose name contains "hall"

Each case is a shoebox room (image-source method, deterministic: no randomised image sources, seeded
sources) with one source and two microphones. The signal of the first microphone is the dry, that of
the second the wet. For each case:

* **delay error**: `apfdsp.align`'s bulk delay minus the direct-path difference
  ``(|m2 - s| - |m1 - s|) fs / c`` (samples; acceptance: within 1 sample on every case);
* the null depth (dB, lower is better) of the dry as given, after delay + polarity, after `align`, and
  the **perfect-phase floor**: the dry filtered by the exact phase of the true relative response
  ``RIR2 / RIR1`` (an FFT filter of unit magnitude), the best any phase-only correction can do;
* **share**: ``(delay+polarity - align) / (delay+polarity - floor)``, the fraction of the perfect-phase
  improvement over delay + polarity that the fit reaches (acceptance: median >= 50 %); the same on the
  level-equalised mix loss;
* `align`'s confidence verdict and warnings.
"""

import argparse
import time

import numpy as np
from scipy import signal

from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.metrics import mix_loss_db, null_depth_db

DURATION_S = 3.0


def source_signal(kind, fs, seed):
    """A seeded mono source: "music" (`demo_dry`), "pink" noise, or "lowpass" (music-like, nothing above 11 kHz)."""
    n = int(DURATION_S * fs)
    rng = np.random.default_rng(seed)
    if kind == "music":
        return demo_dry(fs=fs, duration_s=DURATION_S, seed=seed)
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    if kind == "pink":
        return 0.3 * pink / np.std(pink)
    if kind == "lowpass":  # music plus pink noise, then an elliptic low-pass: < -100 dB above 11 kHz
        sos = signal.ellip(10, 0.1, 100, 10000, fs=fs, output="sos")
        mix = demo_dry(fs=fs, duration_s=DURATION_S, seed=seed) + 0.1 * pink / np.std(pink)
        return signal.sosfiltfilt(sos, mix)
    raise ValueError(kind)


#: name -> (room dimensions m, RT60 s, source position, mic 1 position, mic 2 position, source kind, fs)
ROOMS = {
    "booth 3x2.5x2.4 RT60 0.15 s, close 25 cm / 1.5 m": ([3, 2.5, 2.4], 0.15, [1.0, 1.2, 1.3], [1.25, 1.2, 1.3], [2.5, 1.3, 1.2], "music", 32000),
    "living room 5x4x2.7 RT60 0.4 s, close / 2 m": ([5, 4, 2.7], 0.4, [1.5, 2.0, 1.2], [1.75, 2.0, 1.2], [3.5, 2.1, 1.4], "music", 32000),
    "studio 7x5x3 RT60 0.6 s, close / 3 m": ([7, 5, 3], 0.6, [2.0, 2.5, 1.5], [2.25, 2.5, 1.5], [5.0, 2.3, 1.6], "pink", 32000),
    "tiled room 4x3x2.5 RT60 1.0 s, close / 1.5 m": ([4, 3, 2.5], 1.0, [1.2, 1.4, 1.1], [1.45, 1.4, 1.1], [2.7, 1.6, 1.3], "music", 32000),
    "classroom 9x7x3.2 RT60 0.8 s, spaced pair 1.2 m / 1.8 m": ([9, 7, 3.2], 0.8, [3.0, 3.5, 1.5], [4.2, 3.2, 1.6], [4.6, 4.4, 1.6], "music", 32000),
    "hall 25x18x10 RT60 2.0 s, close 25 cm / 2.5 m": ([25, 18, 10], 2.0, [6.0, 5.0, 1.5], [6.25, 5.0, 1.5], [8.5, 5.1, 1.5], "music", 32000),
    "hall 25x18x10 RT60 2.0 s, close / 6 m": ([25, 18, 10], 2.0, [6.0, 5.0, 1.5], [6.25, 5.0, 1.5], [12.0, 5.5, 1.8], "pink", 32000),
    "church 30x15x15 RT60 3.0 s, close / 4 m": ([30, 15, 15], 3.0, [5.0, 7.5, 1.6], [5.25, 7.5, 1.6], [9.0, 7.0, 2.0], "music", 32000),
    "living room, band-limited source (nothing above 11 kHz), close / 2 m": ([5, 4, 2.7], 0.4, [1.5, 2.0, 1.2], [1.75, 2.0, 1.2], [3.5, 2.1, 1.4], "lowpass", 48000),
    "hall, band-limited source (nothing above 11 kHz), close / 2.5 m": ([25, 18, 10], 2.0, [6.0, 5.0, 1.5], [6.25, 5.0, 1.5], [8.5, 5.1, 1.5], "lowpass", 48000),
}

#: Highest image-source order (halls would otherwise need ~80: minutes of simulation for little change).
MAX_ORDER = 24


def simulate(name, seed=0):
    """(dry, wet, fs, direct-path difference in samples, rir1, rir2) of one room case."""
    import pyroomacoustics as pra

    dims, rt60, src, m1, m2, kind, fs = ROOMS[name]
    absorption, order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=fs, materials=pra.Material(absorption), max_order=min(order, MAX_ORDER),
                       use_rand_ism=False, air_absorption=False)
    room.add_source(src, signal=source_signal(kind, fs, seed))
    room.add_microphone_array(np.array([m1, m2], dtype=float).T)
    room.simulate()
    n = int(DURATION_S * fs)
    dry, wet = room.mic_array.signals[0][:n], room.mic_array.signals[1][:n]
    src, m1, m2 = (np.asarray(p, dtype=float) for p in (src, m1, m2))
    direct = (np.linalg.norm(m2 - src) - np.linalg.norm(m1 - src)) / room.c * fs
    return dry, wet, fs, direct, np.asarray(room.rir[0][0]), np.asarray(room.rir[1][0])


def perfect_phase(dry, wet, rir1, rir2, fs):
    """Null depth of the dry through the exact phase of RIR2 / RIR1 against the wet (the phase-only floor)."""
    n = dry.size
    size = 2 * n + max(rir1.size, rir2.size)
    ratio = np.fft.rfft(rir2, size) * np.conj(np.fft.rfft(rir1, size))  # same phase as RIR2 / RIR1
    perfect = np.fft.irfft(np.fft.rfft(dry, size) * np.exp(1j * np.angle(ratio)), size)[:n]
    return perfect


def run_case(name, seed=0):
    dry, wet, fs, direct, rir1, rir2 = simulate(name, seed)
    start = time.perf_counter()
    result = align(dry, wet, fs=fs, seed=seed)
    seconds = time.perf_counter() - start
    perfect = perfect_phase(dry, wet, rir1, rir2, fs)
    floor, floor_mix = null_depth_db(perfect, wet, fs=fs), mix_loss_db(perfect, wet, fs=fs)
    dp, after = result.delay_polarity, result.after

    def share(key, best):  # null depth: lower is better; mix loss: higher (closer to 0 dB) is better
        possible = best - dp[key]
        return float((after[key] - dp[key]) / possible) if abs(possible) > 0.05 else float("nan")

    summary = result.summary()
    return {
        "room": name, "fs": fs, "direct_delay": float(direct), "delay": float(result.delay_samples),
        "delay_error": float(result.delay_samples - direct), "delay_choice": summary.get("delay_choice"),
        "null_before": result.before["null_db"], "null_delay_polarity": dp["null_db"],
        "null_align": after["null_db"], "null_floor": float(floor), "share_null": share("null_db", floor),
        "mix_delay_polarity": dp["mix_loss_db"], "mix_align": after["mix_loss_db"], "mix_floor": float(floor_mix),
        "share_mix": share("mix_loss_db", floor_mix), "method": result.method,
        "n_sections": summary["n_sections"], "confidence": getattr(result, "confidence", None),
        "warnings": list(getattr(result, "warnings", [])), "seconds": seconds,
    }


def table(rows):
    lines = ["| room | delay error (samples) | choice | null d+p (dB) | align (dB) | floor (dB) | share null | "
             "mix loss d+p / align / floor (dB) | share mix loss | sections | confidence | warnings | s |",
             "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---|---|---:|"]
    for r in rows:
        lines.append(
            f"| {r['room']} | {r['delay_error']:+.2f} | {r['delay_choice']} | {r['null_delay_polarity']:.1f} | "
            f"{r['null_align']:.1f} | {r['null_floor']:.1f} | {100 * r['share_null']:.0f} % | "
            f"{r['mix_delay_polarity']:.2f} / {r['mix_align']:.2f} / {r['mix_floor']:.2f} | {100 * r['share_mix']:.0f} % | {r['n_sections']} | {r['confidence']} | "
            f"{'; '.join(r['warnings']) or '-'} | {r['seconds']:.1f} |")
    shares = [r["share_null"] for r in rows]
    worst = max(abs(r["delay_error"]) for r in rows)
    lines.append("")
    lines.append(f"median share (null): {100 * np.nanmedian(shares):.0f} %; median share (mix loss): "
                 f"{100 * np.nanmedian([r['share_mix'] for r in rows]):.0f} %; worst |delay error|: "
                 f"{worst:.2f} samples")
    return "\n".join(lines)


if __name__ == "__main__":
    import results_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run the cases whose name contains this text (no results file)")
    args = parser.parse_args()
    load_before = results_file.start()
    rows = [run_case(name, args.seed) for name in ROOMS if args.only in name]
    print(table(rows))
    if not args.only:
        results_file.save("rooms", "benchmarks/rooms.py", rows, load_before=load_before, seed=args.seed,
                          summary={"median_share_null": float(np.nanmedian([r["share_null"] for r in rows])),
                                   "median_share_mix": float(np.nanmedian([r["share_mix"] for r in rows])),
                                   "worst_abs_delay_error": float(max(abs(r["delay_error"]) for r in rows))})
