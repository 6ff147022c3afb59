"""Regenerate apfdsp's pretrained models (apfdsp/pretrained/*.json) and print their null-depth table.

    python scripts/make_pretrained.py                    # all models, into apfdsp/pretrained/
    python scripts/make_pretrained.py --only peak-48k --out-dir /tmp/models

Deterministic (fixed seeds, fixed excitation); about a minute on one core. Two kinds of model:

* ``surveyor-192k``: the paper's pretrained "surveyor" cascade, from the coefficients its notebook prints;
* ``*-48k``: allpass models that apfdsp fits to pedalboard effects at 48 kHz. The excitation is 10 s of
  seeded pink noise followed by 10 s of `apfdsp.demo.demo_dry`; the fit is checked on a held-out
  `demo_dry` of another seed.

The pedalboard models are fitted causally (no advance of the dry signal), so that
``apfdsp apply pretrained:NAME`` can stream them: see `fit_causal`.
"""

import argparse
import importlib.metadata
import os
import sys

import numpy as np
import pedalboard

from apfdsp import Allpass1, Allpass2, AllpassCascade, Delay, Polarity, __version__, fit_phase
from apfdsp.demo import demo_dry
from apfdsp.estimate import estimate, reduce_grid
from apfdsp.io import save_model
from apfdsp.metrics import null_depth_db

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = "python scripts/make_pretrained.py"


# -- the surveyor model ---------------------------------------------------------------------------------
def surveyor(*, fs, c, d, warp, coef1, warp1):
    """The cascade from the notebook's numbers: per warped section c = R^2, d = -2 R cos(2 pi fc / fs)."""
    pole_radius = np.sqrt(c)
    fc_hz = fs / (2 * np.pi) * np.arccos(-np.asarray(d) / (2 * pole_radius))
    cells = [Allpass2(float(r), float(f), float(a)) for r, f, a in zip(pole_radius, fc_hz, warp)]
    cascade = AllpassCascade(cells + [Allpass1(coef1, warp1)], fs=fs)
    # The conversion must give back the printed numbers.
    np.testing.assert_allclose(pole_radius**2, c, rtol=1e-12)
    np.testing.assert_allclose(-2 * pole_radius * np.cos(2 * np.pi * fc_hz / fs), d, rtol=1e-12, atol=1e-15)
    return cascade


def surveyor_metadata(cascade, *, name, coefficients, phase_at_hz, gd_at_hz):
    return {
        "name": name,
        "description": "the paper's pretrained 'surveyor' cascade (3 warped 2nd-order + 1 warped 1st-order sections)",
        "source": {
            "paper": "A. R. Bargum, S. Serafin, C. Erkut, J. D. Parker, 'Differentiable Allpass Filters for "
                     "Phase Response Estimation and Automatic Signal Alignment', DAFx 2023, arXiv:2306.00860",
            "coefficients": "printed by the notebook of the paper's repository (github.com/abargum/diff-apf), "
                            "pretrained 'surveyor' model, fs = 192 kHz, as quoted in the apfdsp issue",
            "printed": coefficients,
            "conversion": "pole_radius = sqrt(c), fc_hz = fs / (2 pi) * arccos(-d / (2 pole_radius)); "
                          "warp and the first-order coefficient as printed; apfdsp's warping allpass "
                          "(a + z^-1) / (1 + a z^-1) is the original code's",
        },
        "checks": {
            "phase_rad": {f"{f:g}": round(float(p), 4) for f, p in zip(phase_at_hz, cascade.phase(phase_at_hz))},
            "group_delay_samples": {f"{f:g}": round(float(g), 2)
                                    for f, g in zip(gd_at_hz, cascade.group_delay(gd_at_hz))},
        },
        "max_pole_radius": round(float(np.max(np.abs(cascade.poles()))), 8),
        "command": COMMAND,
    }


# -- the pedalboard models ------------------------------------------------------------------------------
def pink_noise(*, fs, duration_s, seed, rms_dbfs):
    """Seeded pink noise (1/f power from 1 Hz up, no DC) at the given RMS level."""
    n = int(round(duration_s * fs))
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(np.maximum(f[1:], 1.0))
    x = np.fft.irfft(spectrum, n)
    return x * 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(x**2))


def excitation(spec, *, fs):
    """Concatenate the parts of an excitation spec ({"pink_noise": {...}, "demo_dry": {...}}), in order."""
    makers = {"pink_noise": pink_noise, "demo_dry": demo_dry}
    return np.concatenate([makers[kind](fs=fs, **options) for kind, options in spec.items()])


def board(chain):
    """A pedalboard.Pedalboard from [(plugin name, params)]; a LadderFilter mode is given by name."""
    plugins = []
    for plugin, params in chain:
        params = dict(params)
        if plugin == "LadderFilter":
            params["mode"] = getattr(pedalboard.LadderFilter.Mode, params["mode"])
        plugins.append(getattr(pedalboard, plugin)(**params))
    return pedalboard.Pedalboard(plugins)


def render(chain, x, *, fs):
    """`x` through the effect chain (pedalboard works in float32), from a reset state, as float64."""
    return board(chain)(x.astype(np.float32), fs, reset=True).astype(np.float64)


def delay_polarity(dry, wet, *, fs, max_delay_s):
    """The delay + polarity alignment (GCC-PHAT), as `apfdsp.align` computes its baseline."""
    est = estimate(dry, wet, fs=fs, max_delay_s=max_delay_s)
    return AllpassCascade([Delay(est.delay_samples)] + ([Polarity(-1)] if est.polarity < 0 else []), fs=fs)


def fit_causal(dry, wet, *, fs, n_sections, structure, seed, max_delay_s, max_bins):
    """Fit an allpass model to the relative response of (dry, wet) that never advances the dry signal.

    `apfdsp.align.fit_alignment` puts the estimated integer delay back into the model even when it is
    negative (the wet leads), realises a delay between 0 and 0.5 samples with a one-sample advance,
    and by default may use anticausal sections: such models apply to files (`apfdsp.io.apply_file`),
    but cannot run in real time, which a shipped model should. Here the phase of the whole
    relative response (latency included) is fitted; with a latency below one sample there is no delay
    term at all (allpass sections carry sub-sample delays), otherwise the delay starts at the estimate
    and its shift stays >= 0 (`apfdsp.fit_phase`).
    """
    est = estimate(dry, wet, fs=fs, max_delay_s=max_delay_s)
    freqs, H, weights = reduce_grid(est.freqs, est.H, est.x_psd, est.weights, max_bins)
    H = H * np.exp(-2j * np.pi * freqs / fs * est.integer_delay)  # put the latency back
    delay = est.delay_samples if est.delay_samples >= 1 else None
    result = fit_phase(freqs, H, fs=fs, weights=weights, n_sections=n_sections, structure=structure,
                       seed=seed, delay=delay)
    return result, est


def nulls(cascade, dry, wet, *, fs, max_delay_s):
    """Null depth (dB) of the dry as given, after delay + polarity, and after the model."""
    return {
        "before": round(null_depth_db(dry, wet, fs=fs), 2),
        "delay_polarity": round(null_depth_db(delay_polarity(dry, wet, fs=fs, max_delay_s=max_delay_s)(dry), wet,
                                              fs=fs), 2),
        "after": round(null_depth_db(cascade(dry), wet, fs=fs), 2),
    }


def make_effect_model(name, description, chain, *, fs, training, held_out, fit_settings):
    dry = excitation(training, fs=fs)
    wet = render(chain, dry, fs=fs)
    result, est = fit_causal(dry, wet, fs=fs, **fit_settings)
    cascade = result.cascade
    if cascade.integer_delay < 0:
        raise RuntimeError(f"{name}: the model advances the dry signal ({cascade!r})")
    dry_held = excitation(held_out, fs=fs)
    wet_held = render(chain, dry_held, fs=fs)
    options = dict(fs=fs, max_delay_s=fit_settings["max_delay_s"])
    null_db = {"training": nulls(cascade, dry, wet, **options),
               "held_out": nulls(cascade, dry_held, wet_held, **options)}
    for part, values in null_db.items():
        if not values["after"] < values["delay_polarity"]:
            raise RuntimeError(f"{name}: the allpass model does not beat delay + polarity on the {part} "
                               f"audio ({values}); choose other effect settings")
    metadata = {
        "name": name,
        "description": description,
        "source": "fitted by apfdsp to a pedalboard effect",
        "effect": {"chain": [{"plugin": plugin, "params": params} for plugin, params in chain],
                   "pedalboard_version": importlib.metadata.version("pedalboard")},
        "excitation": {"training": training, "held_out": held_out,
                       "note": "parts concatenated in order; mono; rendered through the effect from a reset "
                               "state in float32"},
        "settings": {**fit_settings, "method": "fit_causal in scripts/make_pretrained.py (estimate + fit_phase)"},
        "estimate": {"delay_samples": round(est.delay_samples, 4), "polarity": est.polarity},
        "fit": {"phase_error_rad": round(result.phase_error_rad, 5), "loss": float(f"{result.loss:.5g}"),
                "start": result.start},
        "null_db": null_db,
        "streamable": True,
        "apfdsp_version": __version__,
        "command": COMMAND,
    }
    return cascade, metadata


# -- output -----------------------------------------------------------------------------------------------
def table(rows):
    """The null-depth table of the model card (Markdown)."""
    lines = ["| model | cells | training: before / delay+polarity / after | held-out: before / delay+polarity / after |",
             "|---|---|---|---|"]
    for name, cascade, meta in rows:
        cells = ", ".join(str(c) for c in cascade)
        parts = [" / ".join(f"{meta['null_db'][k][m]:.1f}" for m in ("before", "delay_polarity", "after"))
                 for k in ("training", "held_out")]
        lines.append(f"| `{name}` | {cells} | {parts[0]} | {parts[1]} |")
    return "\n".join(lines)


def main(out_dir, *, only, surveyor_spec, effects, fs, training, held_out, fit_settings):
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    names = [surveyor_spec["name"]] + list(effects)
    unknown = set(only or ()) - set(names)
    if unknown:
        print(f"unknown model(s) {sorted(unknown)}; choose from {names}", file=sys.stderr)
        return 2
    for name in names:
        if only and name not in only:
            continue
        if name == surveyor_spec["name"]:
            cascade = surveyor(fs=surveyor_spec["fs"], **surveyor_spec["coefficients"])
            metadata = surveyor_metadata(cascade, name=name, coefficients=surveyor_spec["coefficients"],
                                         phase_at_hz=surveyor_spec["phase_at_hz"], gd_at_hz=surveyor_spec["gd_at_hz"])
            print(f"{name}: phase {metadata['checks']['phase_rad']} rad, "
                  f"group delay {metadata['checks']['group_delay_samples']} samples")
        else:
            description, chain = effects[name]
            cascade, metadata = make_effect_model(name, description, chain, fs=fs, training=training,
                                                  held_out=held_out, fit_settings=fit_settings)
            rows.append((name, cascade, metadata))
            print(f"{name}: {', '.join(str(c) for c in cascade)}; null dB {metadata['null_db']}")
        save_model(os.path.join(out_dir, f"{name}.json"), cascade, metadata=metadata)
    if rows:
        print()
        print(table(rows))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=os.path.join(REPO, "apfdsp", "pretrained"),
                        help="directory of the model files (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="make only these models")
    args = parser.parse_args()

    # Hyperparameters
    FS = 48000
    SURVEYOR = {
        "name": "surveyor-192k",
        "fs": 192000,
        "coefficients": {
            "c": [0.998039, 0.002789, 0.998465],  # R^2 of the three warped second-order sections
            "d": [-1.653425, 0.101380, -1.695402],  # -2 R cos(2 pi fc / fs)
            "warp": [-0.864498, -0.307401, -0.865795],
            "coef1": -0.972990,  # the warped first-order section
            "warp1": -0.964903,
        },
        "phase_at_hz": [500.0, 1000.0, 2000.0, 5000.0, 20000.0],
        "gd_at_hz": [20.0],
    }
    TRAINING = {"pink_noise": {"duration_s": 10.0, "seed": 0, "rms_dbfs": -18.0},
                "demo_dry": {"duration_s": 10.0, "seed": 0}}
    HELD_OUT = {"demo_dry": {"duration_s": 10.0, "seed": 1}}
    FIT_SETTINGS = {"n_sections": 8, "structure": "warped", "seed": 0, "max_delay_s": 0.1, "max_bins": 2048}
    EFFECTS = {  # name: (one-line description, [(pedalboard plugin, parameters)])
        "ladder-lpf12-48k": (
            "pedalboard LadderFilter LPF12, 600 Hz, resonance 0, drive 1 (Moog-style 2-pole low-pass)",
            [("LadderFilter", {"mode": "LPF12", "cutoff_hz": 600.0, "resonance": 0.0, "drive": 1.0})]),
        "ladder-hpf12-48k": (
            "pedalboard LadderFilter HPF12, 200 Hz, resonance 0.2, drive 1 (Moog-style 2-pole high-pass)",
            [("LadderFilter", {"mode": "HPF12", "cutoff_hz": 200.0, "resonance": 0.2, "drive": 1.0})]),
        "highpass-48k": (
            "pedalboard HighpassFilter, 100 Hz (first-order high-pass)",
            [("HighpassFilter", {"cutoff_frequency_hz": 100.0})]),
        "lowpass-48k": (
            "pedalboard LowpassFilter, 2 kHz (first-order low-pass)",
            [("LowpassFilter", {"cutoff_frequency_hz": 2000.0})]),
        "distortion-lowpass-48k": (
            "pedalboard Distortion 12 dB -> LowpassFilter 1 kHz (tanh drive, then first-order low-pass)",
            [("Distortion", {"drive_db": 12.0}), ("LowpassFilter", {"cutoff_frequency_hz": 1000.0})]),
        "peak-48k": (
            "pedalboard PeakFilter, 200 Hz, -12 dB, Q 1 (a low-mid cut)",
            [("PeakFilter", {"cutoff_frequency_hz": 200.0, "gain_db": -12.0, "q": 1.0})]),
    }

    sys.exit(main(args.out_dir, only=args.only, surveyor_spec=SURVEYOR, effects=EFFECTS, fs=FS,
                  training=TRAINING, held_out=HELD_OUT, fit_settings=FIT_SETTINGS))
