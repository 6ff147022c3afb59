r"""Align audio files of any length in bounded memory: `align_files`.

`apfdsp.align.fit_alignment` works on arrays in memory; its working set is about ten times the audio
(spectra of the whole signals, the wet's STFT, trial filterings), 1.4 GB for three minutes of stereo.
`align_files` keeps the peak memory bounded whatever the length of the files:

1. **Analysis on a representative excerpt.** Files of at most `ANALYSIS_MAX_SAMPLES` samples per signal
   (all channels counted: 21.8 s of mono or 10.9 s of stereo at 48 kHz) are analysed whole, exactly as
   `fit_alignment` does. Longer files are analysed on the excerpt of that size where dry and wet carry
   the most energy together (the window maximising :math:`\sum \sqrt{E_{dry} E_{wet}}` over 1/8 s
   blocks): delay, polarity, relative response, fit, and the choice between the allpass and delay +
   polarity. An effect that does not change over time has one phase response, which any long enough
   excerpt measures (``benchmarks/speed_memory.py`` measures the null of the excerpt's model on the whole files).
2. **Streaming output.** The model filters the whole dry file block by block
   (`apfdsp.io.apply_file`, anticausal sections included).
3. **Whole-file metrics from block-wise sums.** The null depth, mix loss and correlation before
   alignment, after delay + polarity and after alignment cover the whole files, accumulated block by
   block (`apfdsp.metrics.StreamingMixMeter`), and so do the residual delays (from the same sums).

Implements docs/architecture.md, section 3.1 (steps 2, 6 and 7); the block-wise sums are
docs/maths.md, section 10.1.
"""

import contextlib
import dataclasses
import os
import tempfile
import time

import numpy as np

from .align import ALIGN_DEFAULTS, align, fit_alignment
from .exceptions import AudioError, ParameterError
from .audiofile import audio_info, read_audio, write_audio
from .streaming import apply_file, read_audio_blocks
from .metrics import StreamingMixMeter

__all__ = ["align_files", "ANALYSIS_MAX_SAMPLES", "analysis_excerpt"]

#: Largest number of samples per signal (frames x channels) analysed in memory: 2**20, so that the
#: analysis of the excerpt stays within about 120 MB.
ANALYSIS_MAX_SAMPLES = 2**20
#: Frames per block of the streamed passes.
BLOCK_FRAMES = 2**16
#: Length of the energy blocks the excerpt is chosen from, in seconds.
ENERGY_BLOCK_S = 0.125


def _block_energies(path, fs, frames):
    """Energy of each ENERGY_BLOCK_S block of the first `frames` frames (channels summed)."""
    size = max(1, int(round(ENERGY_BLOCK_S * fs)))
    per_read = size * max(1, BLOCK_FRAMES // size)
    energies = []
    for block in read_audio_blocks(path, per_read, frames=frames):
        squares = np.sum(block * block, axis=0)
        pad = (-squares.size) % size
        energies.append(np.pad(squares, (0, pad)).reshape(-1, size).sum(axis=1))
    return np.concatenate(energies), size


def analysis_excerpt(dry_path, wet_path, *, frames, length):
    """First frame of the `length`-frame excerpt where dry and wet carry the most energy together.

    When several windows hold the same energy (a passage shorter than the excerpt), the one centred on it.

    Parameters
    ----------
    dry_path, wet_path : str
        The audio files (same sample rate).
    frames : int
        Common length of the two files in frames.
    length : int
        Length of the excerpt in frames (at most `frames`).

    Returns
    -------
    start : int

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.io import write_audio
    >>> tmp = tempfile.TemporaryDirectory()
    >>> x = np.zeros(48000); x[30000:36000] = np.random.default_rng(0).uniform(-0.5, 0.5, 6000)
    >>> for name in ("dry.wav", "wet.wav"):
    ...     write_audio(os.path.join(tmp.name, name), x, 8000, subtype="FLOAT")
    >>> start = analysis_excerpt(os.path.join(tmp.name, "dry.wav"), os.path.join(tmp.name, "wet.wav"),
    ...                          frames=48000, length=8000)
    >>> start <= 30000 and 36000 <= start + 8000   # the excerpt holds the burst
    True
    >>> tmp.cleanup()
    """
    if length >= frames:
        return 0
    fs = audio_info(dry_path)["samplerate"]
    dry_energy, size = _block_energies(dry_path, fs, frames)
    wet_energy, _ = _block_energies(wet_path, fs, frames)
    score = np.sqrt(dry_energy * wet_energy)
    per_window = max(1, length // size)
    sums = np.convolve(score, np.ones(per_window), mode="valid")
    # Of the windows holding (practically) the most energy, the one centred on that energy: a short
    # loud passage then sits in the middle of the excerpt, where the residual delay is measured.
    best = np.flatnonzero(sums >= sums.max() * (1.0 - 1e-9))
    span = slice(best[0], best[-1] + per_window)
    centroid = np.sum(np.arange(span.start, span.stop) * score[span]) / max(np.sum(score[span]), np.finfo(float).tiny)
    start = int(np.clip(np.round(centroid + 0.5 - per_window / 2), best[0], best[-1])) * size
    return min(start, frames - length)


def _read_excerpt(path, start, frames):
    """Frames ``start .. start + frames`` of a file, float64, shape (n,) for mono, (channels, n) otherwise."""
    x = np.concatenate(list(read_audio_blocks(path, frames, start=start, frames=frames)), axis=-1)
    return x[0] if x.shape[0] == 1 else x


def _fits_in_memory(dry_info, wet_info, limit):
    return max(dry_info["frames"] * dry_info["channels"], wet_info["frames"] * wet_info["channels"]) <= limit


def _refuse_unrelated(result, strict, dry_path, wet_path):
    """With `strict`, an unrelated pair is an error (raised before any output is written)."""
    if strict and result.confidence == "unrelated":
        raise AudioError(f"--strict: WET {os.fspath(wet_path)!r} is unrelated to DRY {os.fspath(dry_path)!r} "
                         f"({result.warnings[0]}); nothing was written")


def _whole_files(dry_path, wet_path, out_path, subtype, fit_kwargs, strict=False):
    """The in-memory route for files within the analysis budget: `align` on the whole signals."""
    dry, fs, _ = read_audio(dry_path)
    wet, _, _ = read_audio(wet_path)
    result = align(dry, wet, fs=fs, **fit_kwargs)
    _refuse_unrelated(result, strict, dry_path, wet_path)
    if out_path is not None:
        write_audio(out_path, result.aligned, fs, subtype=subtype, inputs=[dry_path, wet_path])
    return result, dry, wet


@contextlib.contextmanager
def _scratch_directory(near):
    """A temporary directory for FLOAT scratch files, removed on exit (beside `near` when possible)."""
    base = os.path.dirname(os.path.abspath(near)) if near else None
    try:
        directory = tempfile.mkdtemp(prefix=".apfdsp-", dir=base)
    except OSError:
        directory = tempfile.mkdtemp(prefix="apfdsp-")
    try:
        yield directory
    finally:
        for name in os.listdir(directory):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _streamed_metrics(dry_path, wet_path, candidate_paths, frames, fs, file_progress, *, baseline=None):
    """`StreamingMixMeter` of the dry, of the dry through `baseline` (a causal cascade, filtered on the fly;
    None: not measured) and of each candidate file, in that order, against the wet over `frames` frames."""
    n_candidates = 1 + (baseline is not None) + len(candidate_paths)
    meter = StreamingMixMeter(frames, fs=fs, n_candidates=n_candidates)
    streams = [read_audio_blocks(p, BLOCK_FRAMES, frames=frames) for p in [wet_path, dry_path] + candidate_paths]
    state, done = None, 0
    for wet, dry, *others in zip(*streams):
        if baseline is not None:
            state = baseline.initial_state(dry.shape) if state is None else state
            by_baseline, state = baseline.apply(dry, zi=state)
            others = [by_baseline] + others
        meter.add(wet, [dry] + others)
        done += wet.shape[-1]
        if file_progress is not None:
            file_progress(done, frames)
    return meter


def _long_files(dry_path, wet_path, infos, out_path, subtype, fit_kwargs, limit, stage, file_progress,
                strict=False):
    """The bounded-memory route: analysis of an excerpt, streamed output and whole-file metrics.

    `infos` is the pair's `audio_info`, already read by the caller."""
    dry_info, wet_info = infos
    fs = dry_info["samplerate"]
    frames = min(dry_info["frames"], wet_info["frames"])
    length = min(frames, limit // max(dry_info["channels"], wet_info["channels"]))
    if stage is not None:
        stage("choosing the analysis excerpt")
    start = analysis_excerpt(dry_path, wet_path, frames=frames, length=length)
    dry, wet = _read_excerpt(dry_path, start, length), _read_excerpt(wet_path, start, length)
    if stage is not None:
        stage("measuring delay, polarity and phase")
    result = fit_alignment(dry, wet, fs=fs, **fit_kwargs)
    _refuse_unrelated(result, strict, dry_path, wet_path)
    with _scratch_directory(out_path) as scratch:
        if stage is not None:
            stage("writing audio" if out_path is not None else "filtering")
        aligned_path = out_path if out_path is not None else os.path.join(scratch, "aligned.wav")
        apply_file(result.cascade, dry_path, aligned_path, block_size=BLOCK_FRAMES,
                   subtype=subtype if out_path is not None else "FLOAT")
        candidates, streamed_baseline = [aligned_path], None
        if result.method != "delay+polarity" and result.baseline.causal:
            streamed_baseline = result.baseline  # a delay (and a flip): filtered while measuring
        elif result.method != "delay+polarity":
            candidates.insert(0, os.path.join(scratch, "delay_polarity.wav"))
            apply_file(result.baseline, dry_path, candidates[0], block_size=BLOCK_FRAMES, subtype="FLOAT")
        if stage is not None:
            stage("measuring the whole files")
        meter = _streamed_metrics(dry_path, wet_path, candidates, frames, fs, file_progress,
                                  baseline=streamed_baseline)
    before, after = meter.report(0), meter.report(meter.n_candidates - 1)
    delay_polarity = after if result.method == "delay+polarity" else meter.report(1)
    settings = dict(result.settings, analysis={
        "whole_files": False, "start_s": start / fs, "duration_s": length / fs, "files_s": frames / fs})
    result = dataclasses.replace(result, before=before, delay_polarity=delay_polarity, after=after,
                                 settings=settings)
    return result, dry, wet


def align_files(dry_path, wet_path, out_path=None, *, subtype=None, max_analysis_samples=ANALYSIS_MAX_SAMPLES,
                stage=None, file_progress=None, n_sections=ALIGN_DEFAULTS["n_sections"],
                structure=ALIGN_DEFAULTS["structure"], seed=ALIGN_DEFAULTS["seed"],
                max_delay_s=ALIGN_DEFAULTS["max_delay_s"], per_channel=False, causal=False,
                callback=None, strict=False):
    r"""Align a dry audio file with its wet twin, in memory bounded whatever the files' length.

    Parameters
    ----------
    dry_path, wet_path : str or os.PathLike
        The unprocessed and the processed recording, at the same sample rate.
    out_path : str or os.PathLike, optional
        Where the aligned dry is written (atomically; never one of the inputs). None: nothing is written.
    subtype : str, optional
        Sample format of the output (default: the format's default, as `apfdsp.io.write_audio`).
    max_analysis_samples : int
        Files with more samples per signal (frames x channels) are analysed on an excerpt of this size
        (module notes); smaller ones whole, with the results of `apfdsp.align.fit_alignment`.
    stage : callable, optional
        ``stage(text)`` when a stage starts (for progress displays).
    file_progress : callable, optional
        ``file_progress(done_frames, total_frames)`` during the whole-file metric pass.
    n_sections, structure, seed, max_delay_s, per_channel, causal, callback
        As `apfdsp.align.align`. With ``per_channel=True`` files are always analysed whole (in memory).
    strict : bool
        Raise `AudioError` before anything is written when the verdict is ``"unrelated"``
        (`apfdsp.confidence.verdict`).

    Returns
    -------
    result : AlignResult
        ``aligned`` is None for long files (the aligned audio is in `out_path`).
        ``result.settings["analysis"]`` tells what was analysed: ``whole_files``, and for an excerpt its
        ``start_s``, ``duration_s`` and the files' length ``files_s``.
    dry, wet : ndarray
        The audio analysed (the whole files, or the excerpt), e.g. for `apfdsp.plot.align_report`.

    Raises
    ------
    AudioError
        Unreadable, empty, silent or non-finite audio, or different sample rates; with `strict`, a wet
        unrelated to the dry.
    OutputError
        If the output cannot be written.
    ParameterError
        Bad option values.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp import AllpassCascade, Allpass2, Delay
    >>> from apfdsp.io import write_audio
    >>> tmp = tempfile.TemporaryDirectory()
    >>> dry = np.random.default_rng(0).uniform(-0.5, 0.5, 48000)
    >>> effect = AllpassCascade([Allpass2(0.9, 700.0), Delay(5.0)], fs=48000)
    >>> paths = [os.path.join(tmp.name, name) for name in ("dry.wav", "wet.wav", "out.wav")]
    >>> write_audio(paths[0], dry, 48000, subtype="FLOAT")
    >>> write_audio(paths[1], 0.5 * effect(dry), 48000, subtype="FLOAT")
    >>> result, _, _ = align_files(paths[0], paths[1], paths[2], subtype="FLOAT", max_analysis_samples=20000)
    >>> result.settings["analysis"]["duration_s"], bool(result.after["null_db"] < -40)
    (0.4166666666666667, True)
    >>> tmp.cleanup()
    """
    start_time = time.perf_counter()
    if isinstance(max_analysis_samples, bool) or not isinstance(max_analysis_samples, (int, np.integer)) \
            or max_analysis_samples < 4096:
        raise ParameterError(f"max_analysis_samples must be an integer >= 4096, got {max_analysis_samples!r}")
    dry_info, wet_info = audio_info(dry_path), audio_info(wet_path)
    if dry_info["samplerate"] != wet_info["samplerate"]:
        raise AudioError(
            f"the dry file is sampled at {dry_info['samplerate']} Hz and the wet file at "
            f"{wet_info['samplerate']} Hz; resample one of them first"
        )
    fit_kwargs = dict(n_sections=n_sections, structure=structure, seed=seed, max_delay_s=max_delay_s,
                      per_channel=per_channel, causal=causal, callback=callback)
    if per_channel or _fits_in_memory(dry_info, wet_info, max_analysis_samples):
        if stage is not None:
            stage("measuring delay, polarity and phase")
        result, dry, wet = _whole_files(dry_path, wet_path, out_path, subtype, fit_kwargs, strict)
        result = dataclasses.replace(result, settings=dict(result.settings, analysis={"whole_files": True}))
    else:
        result, dry, wet = _long_files(dry_path, wet_path, (dry_info, wet_info), out_path, subtype, fit_kwargs,
                                       max_analysis_samples, stage, file_progress, strict)
    return dataclasses.replace(result, elapsed_s=time.perf_counter() - start_time), dry, wet
