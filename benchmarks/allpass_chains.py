"""High-order allpass effects and the paper's Surveyor cascade: what the default `align` and `fit_audio` reach.

    python benchmarks/allpass_chains.py    # prints a Markdown table, writes benchmarks/results/allpass_chains.json

Cases (built with scipy.signal, not with apfdsp's own filters):

* allpass combs :math:`(g + z^{-M})/(1 + g z^{-M})`, g = 0.6, M = 10, 23, 40 samples (orders up to 40);
* the sum of a Linkwitz-Riley 4th-order crossover (two squared Butterworth pairs) at 1 kHz, and at 120 Hz;
* a chain of 12 first-order allpasses with break frequencies log-spaced over 40 Hz - 16 kHz, run as
  its 12 sections (``scipy.signal.sosfilt``), and the same chain run as one filter of order 12
  (``scipy.signal.lfilter`` of the expanded polynomials, "expanded"): in floating point the expanded
  polynomials are no longer an allpass (poles crowded near z = 1; its magnitude is off by up to 1 %
  near DC), so its perfect-phase floor is about -61 dB on noise;

all at 48 kHz on 5 s of white noise and on 5 s of the demo's music-like track; and the Surveyor
model (``apfdsp.pretrained.load("surveyor-192k")``) at 192 kHz on a 2 s log sweep 20 Hz - 20 kHz plus
white noise (the paper's kind of training data).

Columns: the null depth (`apfdsp.metrics.null_depth_db`, phase only: level-equalised per STFT bin) after
delay + polarity and after alignment; the perfect-phase floor (docs/maths.md, section 10.3: the dry
through the exact phase of the effect's impulse response, an FFT filter with unit magnitude, against
the wet; -200 dB for an exact allpass); the broadband null
(:math:`10\\log_{10} \\min_g \\|y - g x\\|^2 / \\|y\\|^2`, one gain for the whole signal); the number of
sections used; the wrapped RMS phase error of the model against the true response on 512 log-spaced
bins 20 Hz - 20 kHz; and the seconds. Every call uses the defaults.
"""

import argparse
import time

import numpy as np
from scipy import signal

import results_file
from apfdsp import pretrained
from apfdsp.align import align
from apfdsp.demo import demo_dry
from apfdsp.metrics import weighted_phase_error
from apfdsp.fit_audio import fit_audio
from apfdsp.metrics import null_depth_db

FS = 48000
F_CHECK = np.geomspace(20.0, 20000.0, 512)


def allpass_comb(delay, gain=0.6):
    """(b, a) of the allpass comb (g + z^-M) / (1 + g z^-M)."""
    b = np.zeros(delay + 1)
    b[0], b[-1] = gain, 1.0
    return b, b[::-1].copy()


def lr4_sum(fc, fs=FS):
    """SOS of the sum of the low and high outputs of a Linkwitz-Riley 4th-order crossover at `fc`."""
    low = signal.butter(2, fc, fs=fs, output="ba")
    high = signal.butter(2, fc, btype="high", fs=fs, output="ba")
    num = np.polyadd(np.polymul(low[0], low[0]), np.polymul(high[0], high[0]))
    den = np.polymul(low[1], low[1])
    return num, den


def first_order_sections(n=12, lo=40.0, hi=16000.0, fs=FS):
    """SOS of a chain of `n` first-order allpasses with break frequencies log-spaced in [lo, hi] Hz."""
    t = np.tan(np.pi * np.geomspace(lo, hi, n) / fs)
    c = (t - 1.0) / (t + 1.0)
    return np.column_stack([c, np.ones(n), np.zeros(n), np.ones(n), c, np.zeros(n)])


def first_order_chain(n=12, lo=40.0, hi=16000.0, fs=FS):
    """(b, a) of the chain of `first_order_sections`, as expanded polynomials."""
    b, a = np.ones(1), np.ones(1)
    for c in first_order_sections(n, lo, hi, fs)[:, 0]:
        b, a = np.polymul(b, [c, 1.0]), np.polymul(a, [1.0, c])
    return b, a


def effects():
    """Name -> (b, a) or SOS array of each allpass effect at 48 kHz."""
    return {
        "allpass comb M=10": allpass_comb(10),
        "allpass comb M=23": allpass_comb(23),
        "allpass comb M=40": allpass_comb(40),
        "LR4 crossover sum 1 kHz": lr4_sum(1000.0),
        "LR4 crossover sum 120 Hz": lr4_sum(120.0),
        "12 first-order allpasses": first_order_sections(),
        "12 first-order allpasses, expanded": first_order_chain(),
    }


def run_effect(effect, x):
    """`x` through the effect (SOS array: `scipy.signal.sosfilt`; (b, a): `scipy.signal.lfilter`)."""
    return signal.sosfilt(effect, x) if isinstance(effect, np.ndarray) else signal.lfilter(*effect, x)


def effect_response(effect, freqs, fs=FS):
    """Complex response of the effect at `freqs` (Hz)."""
    if isinstance(effect, np.ndarray):
        return signal.sosfreqz(effect, worN=freqs, fs=fs)[1]
    return signal.freqz(*effect, worN=freqs, fs=fs)[1]


def perfect_phase_floor(effect, dry, fs=FS):
    """Null depth of the dry through the exact phase of the impulse response of `effect` (a function of a
    signal; one second of zero padding, magnitude set to 1) against the wet (docs/maths.md, section 10.3)."""
    padded = np.r_[dry, np.zeros(int(fs))]
    impulse = np.zeros(padded.size)
    impulse[0] = 1.0
    phase = np.angle(np.fft.rfft(effect(impulse)))
    perfect = np.fft.irfft(np.fft.rfft(padded) * np.exp(1j * phase), padded.size)[: dry.size]
    return null_depth_db(perfect, effect(padded)[: dry.size], fs=fs)


def broadband_null_db(x, y):
    """10 log10 of the residual of y after the best single gain on x, relative to y (one gain overall)."""
    gain = np.dot(x, y) / max(np.dot(x, x), np.finfo(float).tiny)
    return float(10 * np.log10(max(np.sum((y - gain * x) ** 2) / np.sum(y**2), 1e-20)))


def true_phase_error(cascade, effect, fs):
    """Wrapped RMS phase error (rad) of `cascade` against the effect on 512 log-spaced bins."""
    return weighted_phase_error(cascade.phase(F_CHECK), np.angle(effect_response(effect, F_CHECK, fs)))


def chain_rows(duration_s=5.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    dries = {"white noise": rng.standard_normal(n), "music": demo_dry(fs=FS, duration_s=duration_s, seed=seed)}
    rows = []
    for name, effect in effects().items():
        for signal_name, dry in dries.items():
            wet = run_effect(effect, dry)
            start = time.perf_counter()
            result = align(dry, wet, fs=FS)
            seconds = time.perf_counter() - start
            rows.append({
                "effect": name, "signal": signal_name, "route": "align",
                "delay_polarity_db": result.delay_polarity["null_db"], "null_db": result.after["null_db"],
                "floor_db": perfect_phase_floor(lambda x: run_effect(effect, x), dry),
                "broadband_db": broadband_null_db(result.aligned, wet),
                "n_sections": int(result.summary()["n_sections"]), "method": result.method,
                "phase_error_rad": true_phase_error(result.cascade, effect, FS), "seconds": seconds,
            })
    return rows


def surveyor_pair(duration_s=2.0, seed=0):
    """(dry, wet, truth) at 192 kHz: a log sweep 20 Hz - 20 kHz plus white noise through the Surveyor."""
    truth = pretrained.load("surveyor-192k")
    fs = truth.fs
    t = np.arange(int(duration_s * fs)) / fs
    sweep = signal.chirp(t, 20.0, t[-1], 20000.0, method="logarithmic")
    dry = sweep + 0.5 * np.random.default_rng(seed).standard_normal(t.size)
    return dry, truth(dry), truth


def surveyor_rows(duration_s=2.0, seed=0):
    dry, wet, truth = surveyor_pair(duration_s, seed)
    fs = truth.fs
    rows = []
    for route in ("align", "fit_audio"):
        start = time.perf_counter()
        result = align(dry, wet, fs=fs) if route == "align" else fit_audio(dry, wet, fs=fs)
        seconds = time.perf_counter() - start
        aligned = result.aligned if route == "align" else result.cascade.apply(dry)
        rows.append({
            "effect": "Surveyor, 192 kHz", "signal": "log sweep + noise", "route": route,
            "delay_polarity_db": result.delay_polarity["null_db"] if route == "align" else None,
            "null_db": null_depth_db(aligned, wet, fs=fs), "floor_db": perfect_phase_floor(truth, dry, fs),
            "broadband_db": broadband_null_db(aligned, wet),
            "n_sections": int(sum(1 for c in result.cascade if hasattr(c, "anticausal"))), "method": result.method,
            "phase_error_rad": weighted_phase_error(result.cascade.phase(F_CHECK), truth.phase(F_CHECK)),
            "seconds": seconds,
        })
    return rows


def table(results):
    """The README's Markdown table of an allpass_chains results dict."""
    rows = results["rows"]
    lines = ["| effect | signal | route | delay+polarity (dB) | null (dB) | perfect-phase floor (dB) | "
             "broadband null (dB) | sections | phase error (rad) | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        dp = "" if r["delay_polarity_db"] is None else f"{r['delay_polarity_db']:.1f}"
        lines.append(f"| {r['effect']} | {r['signal']} | {r['route']} | {dp} | {r['null_db']:.1f} | "
                     f"{r['floor_db']:.1f} | {r['broadband_db']:.1f} | {r['n_sections']} | "
                     f"{r['phase_error_rad']:.2g} | {r['seconds']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of the 48 kHz material")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("chains", "surveyor"), help="run one half only")
    args = parser.parse_args()
    load_before = results_file.start()
    t0 = time.perf_counter()
    rows = []
    if args.only != "surveyor":
        rows += chain_rows(args.duration, args.seed)
    if args.only != "chains":
        rows += surveyor_rows(seed=args.seed)
    results = results_file.save("allpass_chains", "benchmarks/allpass_chains.py", rows, load_before=load_before,
                                settings=vars(args), total_s=round(time.perf_counter() - t0, 1))
    print(table(results))
