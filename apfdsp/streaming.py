"""The streaming filter engine: an allpass cascade applied to an audio file of any length, block by block.

One job: filtering files in bounded memory. `apply_file` reads blocks of the input, filters them
with ``scipy.signal.sosfilt`` carrying the state from block to block, shifts them by the cascade's
integer delay (a delay line; an advance drops samples, docs/maths.md, section 4) and writes them,
with reading and writing on a second thread. Anticausal sections (docs/maths.md, section 3) run
backwards in time: a backward pass over a float64 scratch file. `read_audio_blocks` yields the
blocks of a file with the same read-and-check as the engine.

The samples equal ``AllpassCascade.apply`` on the whole signal bit for bit. Opening, checking and
atomically replacing files is `apfdsp.audiofile`'s job, which this module uses.
"""

import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
from scipy import signal

from ._validate import valid_int
from .audiofile import (
    READ_ERRORS, TEMPORARY_PREFIX, atomic_output, disk_fd, error_line, is_special_file, libsndfile_os_errors,
    open_audio, output_format, path_str, soundfile_name, subtype_clips, warn_clipping,
)
from .cascade import AllpassCascade
from .exceptions import AudioError, OutputError

__all__ = ["apply_file", "read_audio_blocks", "writes_anywhere"]


class _BlockReader:
    """``read()``: the next block of the input, shape (frames, channels); empty at the end.

    Refuses NaN and Inf. FLOAT files are read as stored, as float32: `sosfilt` converts them to
    float64 (exactly) in the copy it makes anyway, which saves libsndfile a conversion pass.
    """

    def __init__(self, fin, path, block_size):
        self.fin, self.path, self.block_size = fin, path, block_size
        self.dtype = "float32" if fin.subtype == "FLOAT" else "float64"
        self.done = 0

    def __call__(self, frames=None):
        try:
            block = self.fin.read(self.block_size if frames is None else frames, dtype=self.dtype, always_2d=True)
        except READ_ERRORS as err:
            raise AudioError(f"cannot read audio file {self.path!r}: {error_line(err)}") from None
        if not np.isfinite(block).all():
            raise AudioError(
                f"audio file {self.path!r} contains NaN or Inf samples "
                f"(in frames {self.done}-{self.done + len(block) - 1}); clean the audio first"
            )
        self.done += len(block)
        return block


class _Output:
    """What both block writers share: the output's sample type, clipping, and the disk hand-off.

    Fixed-point subtypes are clipped to [-1, 1] (`peak` is kept for the warning). FLOAT output is
    converted to float32 here, as libsndfile would (the same values), in one numpy pass with the
    interleaving copy. Where the OS has `os.posix_fadvise`, every block is handed to the disk at once
    (asynchronously) through `fd`, so the final fsync has little left to wait for, and the output does
    not fill the page cache.
    """

    def __init__(self, fout, fd, subtype, block_size):
        self.fout, self.block_size = fout, block_size
        self.fd = fd if hasattr(os, "posix_fadvise") else None  # None: not a regular file
        self.clips, self.peak = subtype_clips(subtype), 0.0
        self.dtype = np.float32 if subtype == "FLOAT" else np.float64

    def _samples(self, y):
        """`y` (frames, channels), any strides, as a contiguous block of the output's type, clipped."""
        out = np.empty(y.shape, self.dtype)
        for channel in range(y.shape[1]):  # one channel at a time: 3x faster than numpy's 2-D transposing copy
            out[:, channel] = y[:, channel]
        if self.clips:
            self.peak = max(self.peak, float(np.max(np.abs(out))))
            np.clip(out, -1.0, 1.0, out=out)
        return out

    def _put(self, data):
        with libsndfile_os_errors(self.fout.name):
            self.fout.write(data)

    def _hand_to_disk(self):
        if self.fd is not None:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)  # Linux: starts the write-back


def _filter_blocks(sos, channels, read, write, progress, total):
    """Filter the blocks of ``read()`` through `sos` into ``write(y)``; return the frames read.

    `sosfilt` runs here with its state carried from block to block, so the result equals one
    `sosfilt` of the whole signal. One I/O thread calls `read` and `write` in turn: it reads block
    k + 1 and writes block k - 1 while this thread filters block k (libsndfile's calls and
    `sosfilt` release the GIL). At most one block waits to be written. An exception of `read` or
    `write` is raised here (by ``Future.result``); on any exception the I/O thread finishes its
    current call before this function returns, so the caller can close the files.
    """
    io = ThreadPoolExecutor(1, thread_name_prefix="apfdsp-io")
    try:
        zi = np.zeros((sos.shape[0], 2, channels))
        reading, writing, done = io.submit(read), None, 0
        while len(block := reading.result()):
            reading = io.submit(read)
            y, zi = signal.sosfilt(sos, block, axis=0, zi=zi)
            if writing is not None:
                writing.result()
            writing = io.submit(write, y)
            done += len(block)
            if progress is not None:
                progress(done, total)
        if writing is not None:
            writing.result()
    finally:
        io.shutdown(cancel_futures=True)
    return done


# -- anticausal sections: a forward pass into a scratch file, a backward pass, (a copy) ----------------------
# Formats and subtypes whose files libsndfile writes at any position (checked: blocks written from the last
# to the first give the same bytes as one sequential write). Others (FLAC, OGG, MP3, ...) get a third pass.
_SEEKABLE_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "AU", "RAW"}
_SEEKABLE_SUBTYPES = {"PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}


def writes_anywhere(format, subtype):
    """True when libsndfile writes files of `format` and `subtype` at any position, not only in order.

    `apply_file` writes the backward pass of anticausal sections straight into such outputs (two
    passes over the file); other outputs (FLAC, OGG, MP3, ...) receive it in order, in a third pass.

    Parameters
    ----------
    format, subtype : str
        libsndfile major format and subtype, upper case (as `apfdsp.audiofile.output_format` returns them).

    Returns
    -------
    bool
        Whether blocks may be written to such a file in any order.

    Examples
    --------
    >>> writes_anywhere("WAV", "PCM_24"), writes_anywhere("FLAC", "PCM_24")
    (True, False)
    """
    return format in _SEEKABLE_FORMATS and subtype in _SEEKABLE_SUBTYPES


def _write_at(f, array, offset):
    """Write the float64 `array` (C order) into the raw file `f` at byte `offset`, all of it."""
    view = memoryview(np.ascontiguousarray(array, dtype=np.float64)).cast("B")
    f.seek(offset)
    while len(view):
        view = view[f.write(view):]


def _read_at(f, shape, offset):
    """Read float64 samples of `shape` from the raw file `f` at byte `offset`."""
    block = np.empty(shape)
    view = memoryview(block.reshape(-1)).cast("B")
    f.seek(offset)
    while len(view):
        got = f.readinto(view)
        if not got:
            raise OSError(f"the scratch file ended {len(view)} bytes early")
        view = view[got:]
    return block


class _Scratch:
    """The float64 scratch file of the backward pass; only the I/O thread calls its methods.

    It holds the signal in blocks of `block_size` frames (the last one shorter), each stored
    channel by channel (``(channels, frames)``, the layout `sosfilt` computes in), so that no pass
    needs a copy of its own to interleave or reverse the samples:

    * ``append(y)``: the forward pass's blocks ``(frames, channels)``, in order;
    * ``read_backward()``: the blocks from the last to the first, each reversed in time (a view);
    * ``write_backward(y)``: the filtered reversed blocks, in the same order, back in place as they
      are (reversed; a block's samples are not needed again once it has been read), or
      ``place_backward(writer)``: a callable that hands them, in forward time, to
      ``writer.place(z, start)`` instead;
    * ``read_forward()``: after ``write_backward``, the blocks from the first, in forward time (a view).

    The readers return an empty block at the end.
    """

    def __init__(self, f, total, channels, block_size, source):
        self.f, self.total, self.channels, self.block_size, self.source = f, total, channels, block_size, source
        self.appended = self.forward = 0
        self.read_index = self.write_index = -(-total // block_size)  # counting down, one past the block

    def _block(self, k):
        """(first frame, byte offset, shape) of block `k`."""
        start = k * self.block_size
        return start, 8 * self.channels * start, (self.channels, min(self.block_size, self.total - start))

    def append(self, y):
        expected = min(self.block_size, self.total - self.appended)
        if len(y) != expected:  # the other passes read this block grid
            raise AudioError(
                f"cannot read audio file {self.source!r}: {len(y)} frames read where {expected} were expected "
                f"({self.total} frames announced)"
            )
        _write_at(self.f, y.T, 8 * self.channels * self.appended)
        self.appended += len(y)

    def read_backward(self):
        if not self.read_index:
            return np.empty((0, self.channels))
        self.read_index -= 1
        _, offset, shape = self._block(self.read_index)
        return _read_at(self.f, shape, offset)[:, ::-1].T

    def write_backward(self, y):
        self.write_index -= 1
        _write_at(self.f, y.T, self._block(self.write_index)[1])

    def place_backward(self, writer):
        def place(y):
            self.write_index -= 1
            writer.place(y[::-1], self._block(self.write_index)[0])
        return place

    def read_forward(self):
        if self.forward * self.block_size >= self.total:
            return np.empty((0, self.channels))
        _, offset, shape = self._block(self.forward)
        self.forward += 1
        return _read_at(self.f, shape, offset)[:, ::-1].T


class _PlacedWriter(_Output):
    """Write blocks of the filtered, not yet shifted signal at their places in the output `fout`.

    ``place(z, start)`` writes the samples ``start, start + 1, ...`` of the signal, ``(frames,
    channels)`` in forward time (any strides), at ``start + shift`` in the output, cut to its `total`
    frames; it seeks only when the block does not follow the previous one, so sequential writes suit
    any format. ``append(z)`` places `z` after the previous `append`. ``zeros(lo, hi)`` fills frames
    lo to hi of the output (cut to the file). Samples are converted as `_Output` says.
    """

    def __init__(self, fout, fd, total, shift, subtype, block_size):
        super().__init__(fout, fd, subtype, block_size)
        self.total, self.shift = total, shift
        self.position = self.appended = 0

    def _write(self, start, data):
        if start != self.position:
            self.fout.seek(start)
        self._put(data)
        self.position = start + len(data)
        self._hand_to_disk()

    def zeros(self, lo, hi):
        lo, hi = max(lo, 0), min(hi, self.total)
        for start in range(lo, hi, self.block_size):
            self._write(start, np.zeros((min(self.block_size, hi - start), self.fout.channels), self.dtype))

    def place(self, z, start):
        lo, hi = max(start + self.shift, 0), min(start + len(z) + self.shift, self.total)
        if lo >= hi:
            return
        self._write(lo, self._samples(z[lo - self.shift - start : hi - self.shift - start]))

    def append(self, z):
        self.place(z, self.appended)
        self.appended += len(z)


def _copy_blocks(read, write, progress, total):
    """``write(read())`` until `read` returns an empty block, reading on the I/O thread."""
    io = ThreadPoolExecutor(1, thread_name_prefix="apfdsp-io")
    try:
        reading, done = io.submit(read), 0
        while len(block := reading.result()):
            reading = io.submit(read)
            write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    finally:
        io.shutdown(cancel_futures=True)
    return done


def _check_scratch_space(directory, needed, out_path):
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < needed:
        raise OutputError(
            f"cannot write {out_path!r}: the cascade's anticausal sections need a {needed / 1e6:.0f} MB scratch "
            f"file next to it, but {directory!r} has {free / 1e6:.0f} MB free"
        )


def _apply_anticausal(cascade, fin, in_path, out_path, tmp, format, subtype, block_size, progress):
    """`apply_file` for a cascade with anticausal sections; returns the output's peak (for the warning).

    A float64 scratch file next to the output (8 bytes per sample) holds the input filtered through
    ``cascade.sos`` (state carried, pass 1). Pass 2 reads it from the end to the start and filters
    each block, reversed, through ``cascade.sos_anticausal`` (state carried). Formats libsndfile can
    write at any position (WAV, AIFF, ...) receive these blocks at their places, shifted by
    ``cascade.integer_delay``, directly; for the others (FLAC, ...) pass 2 writes them back into the
    scratch file and pass 3 copies it into the output in order. The scratch file is a
    `tempfile.TemporaryFile`: on POSIX it is unlinked at once, so nothing is left behind even if the
    process is killed.
    """
    total, channels, shift = fin.frames, fin.channels, cascade.integer_delay
    directory = os.path.dirname(tmp) if not is_special_file(tmp) else tempfile.gettempdir()
    _check_scratch_space(directory, 8 * channels * total, out_path)
    anywhere = writes_anywhere(format, subtype) and not is_special_file(tmp)  # /dev/null, a FIFO: in order
    passes = 2 if anywhere else 3

    def stage(k):  # progress of pass k (0, 1, 2) as a part of the whole
        if progress is None:
            return None
        return lambda done, _: progress(k * total + done, passes * total)

    with tempfile.TemporaryFile(dir=directory, prefix=TEMPORARY_PREFIX, suffix=".scratch", buffering=0) as f:
        scratch = _Scratch(f, total, channels, block_size, in_path)
        done = _filter_blocks(cascade.sos, channels, _BlockReader(fin, in_path, block_size), scratch.append,
                              stage(0), total)
        if done != total:
            raise AudioError(f"cannot read audio file {in_path!r}: {total} frames announced, {done} read")
        with libsndfile_os_errors(tmp), sf.SoundFile(soundfile_name(tmp), "w", fin.samplerate, channels, subtype, format=format) as fout, \
                disk_fd(tmp) as fd:
            write = _PlacedWriter(fout, fd, total, shift, subtype, block_size)
            sos = cascade.sos_anticausal
            if anywhere:
                write.zeros(total + shift, total)  # the end of an advanced signal (the file has its length at once)
                _filter_blocks(sos, channels, scratch.read_backward, scratch.place_backward(write), stage(1), total)
                write.zeros(0, shift)  # the start of a delayed signal
            else:
                _filter_blocks(sos, channels, scratch.read_backward, scratch.write_backward, stage(1), total)
                write.zeros(0, shift)
                _copy_blocks(scratch.read_forward, write.append, stage(2), total)
                write.zeros(total + shift, total)
    return write.peak


def apply_file(cascade, in_path, out_path, *, block_size=131072, subtype=None, progress=None):
    """Filter an audio file through `cascade`, block by block, into a new file.

    Memory use depends on `block_size`, not on the file length: the filter state is carried
    from block to block, so the result equals ``cascade.apply`` on the whole signal. Cascades with
    anticausal sections (``not cascade.causal``), which run backwards in time, are handled too, with
    a backward pass over a scratch file (see Notes).

    Parameters
    ----------
    cascade : AllpassCascade
        The filter. Its sample rate must equal the file's. A negative integer delay (an advance) is
        applied by dropping that many samples at the start and padding zeros at the end.
    in_path : str or os.PathLike
        Input audio file.
    out_path : str or os.PathLike
        Output audio file; must differ from `in_path`. Its extension chooses the format.
    block_size : int
        Frames read, filtered and written per block.
    subtype : str, optional
        Output subtype; by default the input's (which must then suit the output format).
    progress : callable, optional
        Called as ``progress(done, total)`` after each block, in frames of the input. With anticausal
        sections the file is processed in 2 or 3 passes (see Notes), which add up: ``total`` is that
        many times the frames, and ``done`` grows steadily to it.

    Returns
    -------
    info : dict
        ``subtype``, ``format``, ``channels``, ``samplerate`` and ``frames`` of the output.

    Raises
    ------
    AudioError
        If the input is missing, unreadable, empty or holds NaN or Inf samples, or if its sample rate
        differs from ``cascade.fs``.
    ParameterError
        If `block_size` < 1.
    OutputError
        If `out_path` is `in_path`, cannot be written (also: too little free space there for the
        scratch file of anticausal sections), or `subtype` does not suit its format. No partial or
        temporary file is left behind.

    Warns
    -----
    UserWarning
        If the output subtype is fixed-point and the filtered signal exceeds ``|y| = 1`` (it clips), or if
        the cascade's delay (or advance) is as long as the file or longer: the output is silence.

    See Also
    --------
    AllpassCascade.apply, apfdsp.audiofile.read_audio, apfdsp.audiofile.write_audio

    Notes
    -----
    The output has exactly as many frames as the input, like offline ``cascade.apply``: the last
    ``integer_delay`` samples and the ring-out past the end are dropped. Pad the input with silence
    to keep them. The output keeps the input's sample rate, channel count and subtype.

    The file is filtered with ``scipy.signal.sosfilt(cascade.sos, ...)``, carrying its state, and
    shifted by ``cascade.integer_delay``, so the samples equal ``cascade.apply`` on the whole signal
    bit for bit (before the output's own quantisation). Reading and writing run on a second thread,
    overlapped with the filtering.

    Anticausal sections (``cascade.sos_anticausal``) filter the signal from its end to its start,
    after the causal part and before the shift, as in ``cascade.apply``. The first pass writes the
    causal part's output, in float64, to a hidden scratch file next to `out_path` (8 bytes per sample
    and channel: 2.8 GB for an hour of 48 kHz stereo, checked against the free space first). The
    second pass reads it from the end, block by block, and runs ``sosfilt(cascade.sos_anticausal,
    ...)`` on each reversed block, carrying the state. WAV, AIFF, CAF, W64, RF64, AU and RAW outputs
    (PCM, FLOAT or DOUBLE) receive these blocks at their places directly; other formats (FLAC, OGG,
    ...) get them in a third pass, which copies the scratch file into the output in order. The
    samples again equal ``cascade.apply`` bit for bit. The scratch file is deleted on every path (on
    POSIX it has no name at all: it vanishes even if the process is killed).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.audiofile import read_audio, write_audio
    >>> from apfdsp.cascade import Allpass2, AllpassCascade, Delay
    >>> tmp = tempfile.TemporaryDirectory()
    >>> src, dst = os.path.join(tmp.name, "dry.wav"), os.path.join(tmp.name, "wet.wav")
    >>> x = 0.1 * np.random.default_rng(1).standard_normal((2, 5000))
    >>> write_audio(src, x, 48000, subtype="DOUBLE")
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0), Delay(3)], fs=48000)
    >>> info = apply_file(cascade, src, dst, block_size=1024)
    >>> y, fs, _ = read_audio(dst)
    >>> info["subtype"], bool(np.array_equal(y, cascade.apply(x)))
    ('DOUBLE', True)

    A cascade with an anticausal section (offline only):

    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0), Allpass2(0.8, 200.0, anticausal=True)], fs=48000)
    >>> info = apply_file(cascade, src, dst, block_size=1024)
    >>> y, fs, _ = read_audio(dst)
    >>> cascade.causal, bool(np.array_equal(y, cascade.apply(x)))
    (False, True)
    >>> tmp.cleanup()
    """
    if not isinstance(cascade, AllpassCascade):
        raise TypeError(f"cascade must be an AllpassCascade, got {type(cascade).__name__}")
    block_size = valid_int(block_size, "block_size", minimum=1)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable as progress(done_frames, total_frames), got {progress!r}")
    out_path = path_str(out_path, "out_path")
    in_path, fin = open_audio(in_path)
    with fin:
        if cascade.fs != fin.samplerate:
            raise AudioError(
                f"{in_path!r} is sampled at {fin.samplerate} Hz but the cascade was made for {cascade.fs:g} Hz; "
                f"resample the file to {cascade.fs:g} Hz (or fit a cascade at {fin.samplerate} Hz)"
            )
        total, channels, fs = fin.frames, fin.channels, fin.samplerate
        shift = cascade.integer_delay
        if abs(shift) >= total:
            warnings.warn(
                f"the cascade {'delays' if shift > 0 else 'advances'} by {abs(shift)} samples "
                f"({abs(shift) / fs:.3f} s), but {in_path!r} is only {total} samples ({total / fs:.3f} s) long: "
                "the output is silence",
                UserWarning, stacklevel=2,
            )
        format, subtype = output_format(out_path, None, subtype, default_subtype=subtype or fin.subtype)
        with atomic_output(out_path, inputs=(in_path,)) as tmp:
            if len(cascade.sos_anticausal):  # sections that run backwards in time: a backward pass
                peak = _apply_anticausal(cascade, fin, in_path, out_path, tmp, format, subtype, block_size, progress)
            else:
                with libsndfile_os_errors(tmp), sf.SoundFile(soundfile_name(tmp), "w", fs, channels, subtype, format=format) as fout, \
                        disk_fd(tmp) as fd:
                    read = _BlockReader(fin, in_path, block_size)
                    shift = cascade.integer_delay
                    write = _PlacedWriter(fout, fd, total, shift, subtype, block_size)
                    write.zeros(0, shift)  # the start of a delayed signal
                    done = _filter_blocks(cascade.sos, channels, read, write.append, progress, total)
                    if done != total:
                        raise AudioError(
                            f"cannot read audio file {in_path!r}: {total} frames announced, {done} read"
                        )
                    write.zeros(total + shift, total)  # the end of an advanced signal
                peak = write.peak
    if peak > 1:
        warn_clipping(out_path, subtype, peak)
    return {"subtype": subtype, "format": format, "channels": channels, "samplerate": fs, "frames": total}



def read_audio_blocks(path, block_size, *, start=0, frames=None):
    """Yield consecutive blocks of an audio file as float64 arrays of shape (channels, block_size).

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    block_size : int
        Frames per block (the last block may be shorter).
    start : int
        First frame read.
    frames : int, optional
        Number of frames read from `start` (default: to the end).

    Yields
    ------
    numpy.ndarray
        float64 block of shape (channels, frames), ``block_size`` frames except perhaps the last.

    Raises
    ------
    AudioError
        If the file is unreadable, holds NaN or Inf samples, or ends before the frames its header announces.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.audiofile import write_audio
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ramp.wav")
    >>> write_audio(path, np.linspace(-0.5, 0.5, 10), 8000, subtype="DOUBLE")
    >>> [block.shape for block in read_audio_blocks(path, 4, start=1)]
    [(1, 4), (1, 4), (1, 1)]
    >>> tmp.cleanup()
    """
    block_size = valid_int(block_size, "block_size", minimum=1)
    path, f = open_audio(path)
    with f:
        start = valid_int(start, "start", minimum=0, maximum=f.frames)
        todo = f.frames - start if frames is None else valid_int(frames, "frames", minimum=0, maximum=f.frames - start)
        f.seek(start)
        read = _BlockReader(f, path, block_size)
        read.done = start  # frame numbers in its messages count from the file's start
        while read.done < start + todo:
            block = read(min(block_size, start + todo - read.done))
            if len(block) == 0:
                raise AudioError(
                    f"audio file {path!r} ends early: its header announces {f.frames} frames, "
                    f"only {read.done} could be read"
                )
            yield np.ascontiguousarray(block.T, dtype=np.float64)
