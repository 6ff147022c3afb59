"""Alignment quality on real effects rendered with pedalboard (the README's effect table).

    python benchmarks/align_effects.py            # 5 s clips at 48 kHz: benchmarks/results/align_effects.json

For each effect and test signal: the phase-only null (dB, levels matched in every band) of dry vs wet
as given, after delay + polarity alignment only, and after `apfdsp.align`; the broadband null (what a
DAW's polarity-flip-and-sum shows with the fader set right, `apfdsp.metrics.broadband_null_db`) at
the same three stages; the seconds `align` took; and the "perfect-phase floor":
the null of the dry filtered by the exact phase of the effect's impulse response (an FFT filter with
unit magnitude), the best any phase-only correction can do under the level-equalised STFT metric
(magnitude slopes inside one STFT bin and nonlinearity keep it above -infinity). Only for effects
whose response an impulse captures (the linear ones); `LTI residual` says how linear the effect
really is (the energy of wet minus the impulse-response prediction, relative to the wet).
"""

import argparse
import time

import numpy as np

import results_file
from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.metrics import null_depth_db

FS = 48000
CAUSAL = False


def effects():
    """Name -> (pedalboard.Pedalboard, is_linear)."""
    import pedalboard as pb

    return {
        "HighpassFilter 200 Hz": (pb.Pedalboard([pb.HighpassFilter(cutoff_frequency_hz=200)]), True),
        "LowpassFilter 3 kHz": (pb.Pedalboard([pb.LowpassFilter(cutoff_frequency_hz=3000)]), True),
        "LadderFilter LPF12 800 Hz": (pb.Pedalboard([pb.LadderFilter(mode=pb.LadderFilter.Mode.LPF12, cutoff_hz=800, resonance=0.3, drive=1.0)]), True),
        "LadderFilter HPF12 300 Hz": (pb.Pedalboard([pb.LadderFilter(mode=pb.LadderFilter.Mode.HPF12, cutoff_hz=300, resonance=0.3, drive=1.0)]), True),
        "PeakFilter 1 kHz +9 dB": (pb.Pedalboard([pb.PeakFilter(cutoff_frequency_hz=1000, gain_db=9, q=1.0)]), True),
        "Distortion 20 dB -> Lowpass 5 kHz": (pb.Pedalboard([pb.Distortion(drive_db=20), pb.LowpassFilter(cutoff_frequency_hz=5000)]), False),
        "Compressor -20 dB 4:1": (pb.Pedalboard([pb.Compressor(threshold_db=-20, ratio=4, attack_ms=5, release_ms=100)]), False),
    }


def signals(duration_s, seed=0):
    """Name -> mono test signal."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1)), n)
    t = np.arange(n) / FS
    sweep = np.sin(2 * np.pi * 20 * (1000 ** (t / duration_s) - 1) * duration_s / np.log(1000))
    return {
        "music": demo_dry(fs=FS, duration_s=duration_s, seed=seed),
        "pink noise": 0.3 * pink / np.std(pink),
        "log sweep": 0.5 * sweep + 0.01 * white,
    }


def perfect_phase(board, dry):
    """(null depth of the dry through the effect's exact phase, LTI residual in dB) for a linear effect."""
    n, padded = dry.size, np.r_[dry, np.zeros(FS)]
    wet = board(padded.astype(np.float32)[None, :], FS)[0].astype(np.float64)
    impulse = np.zeros(padded.size)
    impulse[0] = 1.0
    response = np.fft.rfft(board(impulse.astype(np.float32)[None, :], FS)[0].astype(np.float64))
    spectrum = np.fft.rfft(padded)
    perfect = np.fft.irfft(spectrum * np.exp(1j * np.angle(response)), padded.size)[:n]
    predicted = np.fft.irfft(spectrum * response, padded.size)[:n]
    residual = 10 * np.log10(np.sum((predicted - wet[:n]) ** 2) / np.sum(wet[:n] ** 2))
    return null_depth_db(perfect, wet[:n], fs=FS), residual


def run(duration_s=5.0, seed=0):
    rows = []
    for effect_name, (board, linear) in effects().items():
        for signal_name, dry in signals(duration_s, seed).items():
            wet = board(dry.astype(np.float32)[None, :], FS)[0].astype(np.float64)
            start = time.perf_counter()
            result = align(dry, wet, fs=FS, seed=seed, causal=CAUSAL)
            seconds = time.perf_counter() - start
            floor, lti = perfect_phase(board, dry) if linear else (None, None)
            rows.append({
                "effect": effect_name, "signal": signal_name, "linear": linear,
                "before": result.before["null_db"], "delay_polarity": result.delay_polarity["null_db"],
                "apfdsp": result.after["null_db"], "method": result.summary()["method_label"], "seconds": seconds,
                "bb_before": result.before["broadband_null_db"], "bb_after": result.after["broadband_null_db"],
                "bb_delay_polarity": result.delay_polarity["broadband_null_db"],
                "floor": floor, "lti_residual": lti,
                "anticausal": int(sum(1 for c in result.cascade
                                      if getattr(c, "anticausal", False))),
            })
    return rows


def table(results):
    """The README's Markdown table of an align_effects results dict (NaN floors are stored as null)."""
    rows = results["rows"]
    lines = ["| effect | signal | phase-only null before (dB) | delay+polarity (dB) | apfdsp (dB) "
             "| perfect-phase floor (dB) | broadband null before -> delay+polarity -> apfdsp (dB) "
             "| LTI residual (dB) | method | anticausal sections | s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        floor = "" if r["floor"] is None else f"{r['floor']:.1f}"
        lti = "" if r["lti_residual"] is None else f"{r['lti_residual']:.0f}"
        lines.append(f"| {r['effect']} | {r['signal']} | {r['before']:.1f} | {r['delay_polarity']:.1f} | "
                     f"{r['apfdsp']:.1f} | {floor} | {r['bb_before']:.1f} -> {r['bb_delay_polarity']:.1f} -> "
                     f"{r['bb_after']:.1f} | {lti} | {r['method']} | {r['anticausal']} | {r['seconds']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--causal", action="store_true", help="align(..., causal=True)")
    args = parser.parse_args()
    CAUSAL = args.causal
    load_before = results_file.start()
    t0 = time.perf_counter()
    rows = run(args.duration, args.seed)
    results = {"rows": rows}
    if not args.causal and args.duration == 5.0 and args.seed == 0:  # the README's settings
        import pedalboard

        results = results_file.save("align_effects", "benchmarks/align_effects.py", rows, load_before=load_before,
                                    pedalboard=pedalboard.__version__, total_s=round(time.perf_counter() - t0, 1))
    print(table(results))
