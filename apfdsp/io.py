"""Audio files and model files: the only module of apfdsp that touches soundfile.

Audio arrays use the package convention: float64, time on the last axis, ``(channels, n)`` for
multichannel audio. Every file this module writes is written atomically: the data go to a hidden
temporary file in the destination directory, which is flushed to disk and then renamed over the
destination, so a failure never leaves a partial output behind. Inputs are never overwritten.
"""

import contextlib
import json
import numbers
import os
import secrets
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
from scipy import signal

from ._validate import valid_fs, valid_int
from .cascade import AllpassCascade
from .exceptions import AudioError, ModelFileError, OutputError, ParameterError
from .version import __version__

__all__ = [
    "read_audio", "write_audio", "apply_file", "save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION",
    "audio_info", "read_audio_blocks", "write_text",
]

MODEL_FORMAT = "apfdsp-model"
"""Value of the ``"format"`` key of a model file."""

MODEL_FORMAT_VERSION = 2
"""Newest model-file format version this apfdsp reads.

`save_model` writes version 1 for causal cascades (the files are as they always were) and version 2
for cascades with anticausal sections, whose ``"sos_anticausal"`` a version-1 reader would ignore.
"""

_READ_ERRORS = (sf.LibsndfileError, RuntimeError, OSError)
_EXTENSION_FORMATS = {"aif": "AIFF", "aifc": "AIFF", "oga": "OGG", "opus": "OGG", "wave": "WAV"}
# Subtypes that store floating-point samples (or decode to them) and so do not clip at |x| = 1.
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS"}
_REQUIRED_MODEL_KEYS = ("fs", "cascade", "sos", "integer_delay", "polarity")


# -- helpers: paths and atomic output ---------------------------------------------------------------
def _path_str(path, name):
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}") from None


def _one_line(err):
    return " ".join(str(err).split())


def _same_file(a, b):
    """True when paths `a` and `b` name the same file (or would, once `a` exists)."""
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _check_output_path(path, inputs):
    """Refuse output paths that are inputs, directories, or in a missing/read-only directory."""
    path = _path_str(path, "path")
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = (inputs,)
    for src in inputs:
        src = _path_str(src, "inputs")
        if _same_file(path, src):
            raise OutputError(
                f"refusing to write {path!r}: it is the input file {src!r}; choose a different output path"
            )
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path!r}: it is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {path!r}: directory {directory!r} does not exist; create it first")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path!r}: directory {directory!r} is not writable")
    return path


def _fsync(path):
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_output(path, *, inputs=()):
    """Yield a temporary path next to `path`; on success fsync it and rename it to `path`.

    On any exception (including KeyboardInterrupt) the temporary file is removed and `path` is
    left as it was.
    """
    path = _check_output_path(path, inputs)
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write {path!r}: {_one_line(err)}") from None
    try:
        yield tmp
        _fsync(tmp)
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, (OSError, sf.LibsndfileError)):
            raise OutputError(f"cannot write {path!r}: {_one_line(err)}") from err
        raise
    with contextlib.suppress(OSError, AttributeError):  # make the rename durable (POSIX only)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _output_format(path, format, subtype, *, default_subtype=None):
    """Return ``(format, subtype)`` for writing `path`, checked against libsndfile."""
    if format is None:
        ext = os.path.splitext(path)[1][1:].lower()
        format = _EXTENSION_FORMATS.get(ext, ext.upper())
        if format not in sf.available_formats():
            raise OutputError(
                f"cannot write {path!r}: unknown audio file extension {'.' + ext if ext else '(none)'!r}; "
                "use e.g. .wav or .flac, or pass format="
            )
        if ext == "opus" and subtype is None and default_subtype is None:
            subtype = "OPUS"
    if not isinstance(format, str) or format.upper() not in sf.available_formats():
        raise OutputError(f"format must be one of {sorted(sf.available_formats())}, got {format!r}")
    format = format.upper()
    if subtype is None:
        subtype = default_subtype if default_subtype is not None else sf.default_subtype(format)
    if not isinstance(subtype, str) or not sf.check_format(format, subtype.upper()):
        raise OutputError(
            f"cannot write {path!r}: subtype {subtype!r} is not available for {format} files; "
            f"pass subtype= one of {sorted(sf.available_subtypes(format))}"
        )
    return format, subtype.upper()


def _clips(subtype):
    return subtype not in _FLOAT_SUBTYPES and not subtype.startswith("MPEG")


def _warn_clipping(path, subtype, peak):
    warnings.warn(
        f"output {path!r} clips: peak |x| = {peak:.4g} > 1 cannot be stored as {subtype}; "
        "lower the gain or write subtype='FLOAT'",
        UserWarning,
        stacklevel=3,
    )


def _open_input(path):
    """Open an audio file for reading, turning every failure into a one-line AudioError."""
    path = _path_str(path, "path")
    if not os.path.exists(path):
        raise AudioError(f"audio file {path!r} does not exist")
    if os.path.isdir(path):
        raise AudioError(f"audio file {path!r} is a directory, not a file")
    try:
        f = sf.SoundFile(path)
    except _READ_ERRORS as err:
        raise AudioError(f"cannot read audio file {path!r}: {_one_line(err)}") from None
    if f.frames == 0:
        f.close()
        raise AudioError(f"audio file {path!r} is empty (0 frames)")
    return path, f


def _info(f):
    return {
        "subtype": f.subtype,
        "format": f.format,
        "channels": f.channels,
        "samplerate": f.samplerate,
        "frames": f.frames,
    }


# -- audio ---------------------------------------------------------------------------------------------
def read_audio(path, *, always_2d=False, allow_silent=False):
    """Read an audio file as float64 with time on the last axis.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file in any format libsndfile reads (WAV, FLAC, AIFF, OGG, ...).
    always_2d : bool
        Return shape ``(1, n)`` for a mono file instead of ``(n,)``.
    allow_silent : bool
        Accept a file whose samples are all zero.

    Returns
    -------
    x : ndarray of float64, shape (channels, n) or (n,)
        Samples, time on the last axis, in [-1, 1] for integer formats.
    fs : int
        Sample rate in Hz.
    info : dict
        ``subtype``, ``format``, ``channels``, ``samplerate`` and ``frames`` of the file.

    Raises
    ------
    AudioError
        If the file is missing, unreadable or corrupt, empty, holds NaN or Inf samples, or is silent
        (unless `allow_silent`).

    See Also
    --------
    write_audio, apply_file

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "tone.wav")
    >>> x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(4800) / 48000)
    >>> write_audio(path, np.stack([x, -x]), 48000, subtype="FLOAT")
    >>> y, fs, info = read_audio(path)
    >>> fs, y.shape, info["subtype"], info["format"]
    (48000, (2, 4800), 'FLOAT', 'WAV')
    >>> bool(np.allclose(y[1], -x, atol=1e-7))
    True
    >>> tmp.cleanup()
    """
    path, f = _open_input(path)
    with f:
        info = _info(f)
        try:
            data = f.read(dtype="float64", always_2d=True)
        except _READ_ERRORS as err:
            raise AudioError(f"cannot read audio file {path!r}: {_one_line(err)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path!r} is empty (0 frames could be read)")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio file {path!r} contains NaN or Inf samples; clean the audio first")
    if not allow_silent and not np.any(data):
        raise AudioError(f"audio file {path!r} is silent (all samples are zero); pass allow_silent=True to accept it")
    x = np.ascontiguousarray(data.T)
    if x.shape[0] == 1 and not always_2d:
        x = x[0]
    return x, info["samplerate"], info


def write_audio(path, x, fs, *, subtype=None, format=None, inputs=()):
    """Write audio atomically, refusing to overwrite any of `inputs`.

    Parameters
    ----------
    path : str or os.PathLike
        Output file. Its extension chooses the format (``.wav``, ``.flac``, ``.aiff``, ...) unless
        `format` is given.
    x : array_like, shape (channels, n) or (n,)
        Samples, time on the last axis.
    fs : int
        Sample rate in Hz (a whole number).
    subtype : str, optional
        libsndfile subtype such as ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"``; by default the format's
        default (``PCM_16`` for WAV and FLAC).
    format : str, optional
        libsndfile major format (``"WAV"``, ``"FLAC"``, ...), overriding the extension.
    inputs : sequence of path, optional
        Files this output must not replace (the files it was computed from).

    Raises
    ------
    AudioError
        If `x` is empty or holds NaN or Inf.
    OutputError
        If `path` is one of `inputs`, a directory, in a missing or read-only directory, has an unknown
        extension, if `subtype` does not suit the format, or if writing fails. No partial file is left.
    ParameterError
        If `x` has more than 2 dimensions or more channels than samples (time must be last), or
        `fs` is not a positive whole number.

    Warns
    -----
    UserWarning
        If the subtype is fixed-point (e.g. PCM) and ``|x| > 1``: the output clips (nothing is rescaled).

    See Also
    --------
    read_audio

    Notes
    -----
    The samples go to a hidden temporary file ``.<name>.<random>.tmp`` in the destination
    directory, which is fsynced and then renamed over `path` with `os.replace`. An existing
    `path` keeps its permission bits.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "noise.flac")
    >>> x = 0.1 * np.random.default_rng(0).standard_normal(1000)
    >>> write_audio(path, x, 44100, subtype="PCM_24")
    >>> y, fs, info = read_audio(path)
    >>> info["format"], info["subtype"], bool(np.allclose(y, x, atol=2.0**-23))
    ('FLAC', 'PCM_24', True)
    >>> tmp.cleanup()
    """
    path = _path_str(path, "path")
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim not in (1, 2):
        raise ParameterError(f"x must have shape (n,) or (channels, n), got shape {arr.shape}")
    arr = np.atleast_2d(arr)
    if arr.shape[-1] == 0:
        raise AudioError(f"cannot write {path!r}: x holds no samples")
    if arr.shape[0] > arr.shape[1]:
        raise ParameterError(
            f"x has shape {arr.shape}: more channels than samples; time must be the last axis (pass x.T)"
        )
    if not np.all(np.isfinite(arr)):
        raise AudioError(f"cannot write {path!r}: x contains NaN or Inf samples")
    fs = valid_fs(fs)
    if not fs.is_integer():
        raise ParameterError(f"fs must be a whole number of Hz to be stored in a file, got {fs!r}")
    format, subtype = _output_format(path, format, subtype)
    if _clips(subtype):
        peak = float(np.max(np.abs(arr)))
        if peak > 1:
            _warn_clipping(path, subtype, peak)
            arr = np.clip(arr, -1.0, 1.0)
    with _atomic_output(path, inputs=inputs) as tmp:
        with sf.SoundFile(tmp, "w", samplerate=int(fs), channels=arr.shape[0], subtype=subtype, format=format) as f:
            f.write(arr.T)


class _BlockReader:
    """``read()``: the next block of the input, shape (frames, channels); empty at the end.

    Refuses NaN and Inf. FLOAT files are read as stored, as float32: `sosfilt` converts them to
    float64 (exactly) in the copy it makes anyway, which saves libsndfile a conversion pass.
    """

    def __init__(self, fin, path, block_size):
        self.fin, self.path, self.block_size = fin, path, block_size
        self.dtype = "float32" if fin.subtype == "FLOAT" else "float64"
        self.done = 0

    def __call__(self):
        try:
            block = self.fin.read(self.block_size, dtype=self.dtype, always_2d=True)
        except _READ_ERRORS as err:
            raise AudioError(f"cannot read audio file {self.path!r}: {_one_line(err)}") from None
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
        self.fd = fd if hasattr(os, "posix_fadvise") else None
        self.clips, self.peak = _clips(subtype), 0.0
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

    def _hand_to_disk(self):
        if self.fd is not None:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)  # Linux: starts the write-back


class _BlockWriter(_Output):
    """``write(y)``: append filtered blocks to the output, shifted by the integer delay `shift`.

    The output is `total` frames long: ``shift`` zeros (written at once) followed by the filtered
    samples, cut at `total`. An advance (``shift < 0``) drops the first ``-shift`` filtered samples
    instead, and ``pad(todo)`` fills the end with zeros. Samples are converted as `_Output` says.
    """

    def __init__(self, fout, fd, total, shift, subtype, block_size):
        super().__init__(fout, fd, subtype, block_size)
        self.todo, self.skip = total, max(-shift, 0)
        self.pad(max(shift, 0))

    def pad(self, count):
        """Write `count` zeros (fewer if the output is complete sooner)."""
        count = min(count, self.todo)
        while count:
            n = min(count, self.block_size)
            self.fout.write(np.zeros((n, self.fout.channels), self.dtype))
            self.todo -= n
            count -= n

    def __call__(self, y):
        drop = min(self.skip, len(y))
        self.skip -= drop
        y = y[drop : drop + self.todo]
        if not len(y):
            return
        self.fout.write(self._samples(y))
        self.todo -= len(y)
        self._hand_to_disk()


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


def _writes_anywhere(format, subtype):
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
        self.fout.write(data)
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
    directory = os.path.dirname(tmp)
    _check_scratch_space(directory, 8 * channels * total, out_path)
    anywhere = _writes_anywhere(format, subtype)
    passes = 2 if anywhere else 3

    def stage(k):  # progress of pass k (0, 1, 2) as a part of the whole
        if progress is None:
            return None
        return lambda done, _: progress(k * total + done, passes * total)

    base = os.path.basename(out_path)
    with tempfile.TemporaryFile(dir=directory, prefix=f".{base}.", suffix=".scratch", buffering=0) as f:
        scratch = _Scratch(f, total, channels, block_size, in_path)
        done = _filter_blocks(cascade.sos, channels, _BlockReader(fin, in_path, block_size), scratch.append,
                              stage(0), total)
        if done != total:
            raise AudioError(f"cannot read audio file {in_path!r}: {total} frames announced, {done} read")
        with sf.SoundFile(tmp, "w", fin.samplerate, channels, subtype, format=format) as fout, \
                open(tmp, "rb") as disk:
            write = _PlacedWriter(fout, disk.fileno(), total, shift, subtype, block_size)
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
        If the output subtype is fixed-point and the filtered signal exceeds ``|y| = 1`` (it clips).

    See Also
    --------
    AllpassCascade.apply, read_audio, write_audio

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
    out_path = _path_str(out_path, "out_path")
    in_path, fin = _open_input(in_path)
    with fin:
        if cascade.fs != fin.samplerate:
            raise AudioError(
                f"{in_path!r} is sampled at {fin.samplerate} Hz but the cascade was made for {cascade.fs:g} Hz; "
                f"resample the file to {cascade.fs:g} Hz (or fit a cascade at {fin.samplerate} Hz)"
            )
        total, channels, fs = fin.frames, fin.channels, fin.samplerate
        format, subtype = _output_format(out_path, None, subtype, default_subtype=subtype or fin.subtype)
        with _atomic_output(out_path, inputs=(in_path,)) as tmp:
            if len(cascade.sos_anticausal):  # sections that run backwards in time: a backward pass
                peak = _apply_anticausal(cascade, fin, in_path, out_path, tmp, format, subtype, block_size, progress)
            else:
                with sf.SoundFile(tmp, "w", fs, channels, subtype, format=format) as fout, \
                        open(tmp, "rb") as disk:
                    read = _BlockReader(fin, in_path, block_size)
                    write = _BlockWriter(fout, disk.fileno(), total, cascade.integer_delay, subtype, block_size)
                    done = _filter_blocks(cascade.sos, channels, read, write, progress, total)
                    if done != total:
                        raise AudioError(
                            f"cannot read audio file {in_path!r}: {total} frames announced, {done} read"
                        )
                    write.pad(write.todo)  # the end of an advanced signal
                peak = write.peak
    if peak > 1:
        _warn_clipping(out_path, subtype, peak)
    return {"subtype": subtype, "format": format, "channels": channels, "samplerate": fs, "frames": total}


# -- model files -----------------------------------------------------------------------------------------
def _json_safe(value, where):
    """Convert numpy scalars/arrays and tuples to plain JSON types; refuse the rest."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"metadata{where}: keys must be strings, got {key!r}")
            out[str(key)] = _json_safe(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            raise ParameterError(f"metadata{where} is {value!r}; JSON cannot store NaN or Inf (use None)")
        return value
    raise TypeError(f"metadata{where} has type {type(value).__name__}, which a JSON model file cannot store")


def write_text(path, text, *, inputs=()):
    """Write `text` (UTF-8) to `path` atomically; never over one of `inputs`.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_text(os.path.join(d, "a.html"), "<p>hi</p>")
    ...     open(path, encoding="utf-8").read()
    '<p>hi</p>'
    """
    with _atomic_output(path, inputs=inputs) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return os.fspath(path)


def save_model(path, cascade, *, metadata=None):
    """Save a cascade as a JSON model file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ``*.json``.
    cascade : AllpassCascade
        The filter to store.
    metadata : dict, optional
        How the model was fitted (loss, iterations, source files, ...). Values must be JSON types,
        numpy scalars or numpy arrays (converted to numbers and lists).

    Raises
    ------
    TypeError
        If `cascade` is not an `AllpassCascade` or `metadata` holds a type JSON cannot store.
    ParameterError
        If `metadata` holds NaN or Inf.
    OutputError
        If `path` cannot be written.

    See Also
    --------
    load_model

    Notes
    -----
    The document holds ``format`` (``"apfdsp-model"``), ``format_version``, ``apfdsp_version``,
    ``fs``, ``cascade`` (`AllpassCascade.to_dict`), ``sos`` (the causal sections, polarity folded
    in, for readers in other languages), ``integer_delay`` (the shift applied outside the SOS),
    ``polarity`` and ``metadata``. Floats are written with their shortest round-trip representation,
    so loading gives the same filter bit for bit.

    A cascade with anticausal sections (cells with ``"anticausal": true``, run backwards in time)
    also stores ``sos_anticausal`` (`AllpassCascade.sos_anticausal`) after ``sos``, and its file
    has ``format_version`` 2, so that a reader of version 1, which knows only ``sos`` and
    ``integer_delay``, refuses it instead of filtering wrongly. Such a reader's filter is
    ``y = sosfilt(sos, x)``, then ``y = sosfilt(sos_anticausal, y[::-1])[::-1]``, then the shift
    by ``integer_delay`` (keeping the length). Files of causal cascades have neither the key nor
    the new version: they are as they were before anticausal sections existed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.json")
    >>> cascade = AllpassCascade([Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(2.3)], fs=48000)
    >>> save_model(path, cascade, metadata={"loss": np.float64(0.01)})
    >>> loaded, meta = load_model(path)
    >>> loaded == cascade, bool(np.array_equal(loaded.sos, cascade.sos)), meta
    (True, True, {'loss': 0.01})
    >>> tmp.cleanup()
    """
    if not isinstance(cascade, AllpassCascade):
        raise TypeError(f"cascade must be an AllpassCascade, got {type(cascade).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    sos_anticausal = cascade.sos_anticausal
    doc = {
        "format": MODEL_FORMAT,
        "format_version": 2 if len(sos_anticausal) else 1,
        "apfdsp_version": __version__,
        "fs": cascade.fs,
        "cascade": cascade.to_dict(),
        "sos": cascade.sos.tolist(),
        **({"sos_anticausal": sos_anticausal.tolist()} if len(sos_anticausal) else {}),
        "integer_delay": cascade.integer_delay,
        "polarity": cascade.polarity,
        "metadata": _json_safe(metadata, ""),
    }
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    with _atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _check_stored_sos(path, key, value, sos):
    """Refuse a stored SOS (`key` of a model file) that is not rows of 6 numbers or disagrees with `sos`."""
    try:
        stored = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        stored = None
    if stored is None or not (stored.ndim == 2 and stored.shape[1] == 6 or stored.shape == (0,)):
        raise ModelFileError(f"model file {path!r}: {key!r} must be a list of rows of 6 numbers")
    stored = stored.reshape(-1, 6)
    if stored.shape != sos.shape:
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} has shape {stored.shape}, "
            f"the cells give {sos.shape}"
        )
    if not np.allclose(stored, sos, rtol=1e-9, atol=1e-12):
        worst = float(np.max(np.abs(stored - sos)))
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} disagrees with the cells "
            f"(max difference {worst:.3g})"
        )


def load_model(path):
    """Load and verify a JSON model file written by `save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        Model file.

    Returns
    -------
    cascade : AllpassCascade
        The stored filter, equal bit for bit to the one saved.
    metadata : dict
        The stored metadata (empty if none).

    Raises
    ------
    ModelFileError
        If the file is missing, not JSON, not an apfdsp model, of a newer format version, lacks a
        key (``sos_anticausal`` too when the cells include anticausal sections), holds bad cell
        values, if its stored SOS (``sos``, ``sos_anticausal``), delay, polarity or fs disagree with
        the cells (a corrupt or hand-edited file), or if the filter is unstable.

    See Also
    --------
    save_model
    """
    path = _path_str(path, "path")
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ModelFileError(f"model file {path!r} {what}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except UnicodeDecodeError:
        raise ModelFileError(f"model file {path!r} is not JSON (it is not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(f"model file {path!r} is not JSON ({err})") from None
    except OSError as err:
        raise ModelFileError(f"cannot read model file {path!r}: {_one_line(err)}") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path!r} is not an apfdsp model file (it lacks \"format\": \"{MODEL_FORMAT}\")")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"model file {path!r}: format_version must be a positive integer, got {version!r}")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path!r} has format_version {version}, newer than this apfdsp ({__version__}) "
            f"reads (up to {MODEL_FORMAT_VERSION}); upgrade apfdsp"
        )
    missing = [key for key in _REQUIRED_MODEL_KEYS if key not in doc]
    if missing:
        raise ModelFileError(f"model file {path!r} is missing the key(s) {', '.join(map(repr, missing))}")
    try:
        cascade = AllpassCascade.from_dict(doc["cascade"])
    except (ParameterError, TypeError) as err:
        raise ModelFileError(f"model file {path!r}: bad cascade: {err}") from None
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError(f"model file {path!r}: 'metadata' must be an object, got {type(metadata).__name__}")

    def disagree(key, stored, actual):
        return ModelFileError(
            f"model file {path!r} is corrupt or was edited: stored {key} {stored!r} disagrees with "
            f"the cells ({actual!r})"
        )

    if doc["fs"] != cascade.fs or isinstance(doc["fs"], bool):
        raise disagree("fs", doc["fs"], cascade.fs)
    for key, actual in (("integer_delay", cascade.integer_delay), ("polarity", cascade.polarity)):
        if isinstance(doc[key], bool) or doc[key] != actual:
            raise disagree(key, doc[key], actual)
    sos_anticausal = cascade.sos_anticausal
    if len(sos_anticausal) and "sos_anticausal" not in doc:
        raise ModelFileError(
            f"model file {path!r} is corrupt or was edited: its cells include anticausal sections (run "
            f"backwards in time, {len(sos_anticausal)} SOS row(s)) but it lacks the key 'sos_anticausal' "
            "that stores them"
        )
    _check_stored_sos(path, "sos", doc["sos"], cascade.sos)
    if "sos_anticausal" in doc:
        _check_stored_sos(path, "sos_anticausal", doc["sos_anticausal"], sos_anticausal)
    radius = np.abs(cascade.poles())
    if radius.size and np.max(radius) >= 1:
        raise ModelFileError(
            f"model file {path!r} describes an unstable filter (pole radius {np.max(radius):.12g} >= 1)"
        )
    return cascade, metadata


# -- long files: information, excerpts and blocks -----------------------------------------------------------
def audio_info(path):
    """``subtype``, ``format``, ``channels``, ``samplerate`` and ``frames`` of an audio file, without reading it.

    Raises
    ------
    AudioError
        If the file is missing, unreadable or empty.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "noise.wav")
    >>> write_audio(path, np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4800)), 48000)
    >>> audio_info(path)["frames"], audio_info(path)["channels"]
    (4800, 2)
    >>> tmp.cleanup()
    """
    path, f = _open_input(path)
    with f:
        return _info(f)


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

    Raises
    ------
    AudioError
        If the file is unreadable, holds NaN or Inf samples, or ends before the frames its header announces.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ramp.wav")
    >>> write_audio(path, np.linspace(-0.5, 0.5, 10), 8000, subtype="DOUBLE")
    >>> [block.shape for block in read_audio_blocks(path, 4, start=1)]
    [(1, 4), (1, 4), (1, 1)]
    >>> tmp.cleanup()
    """
    block_size = valid_int(block_size, "block_size", minimum=1)
    path, f = _open_input(path)
    with f:
        start = valid_int(start, "start", minimum=0, maximum=f.frames)
        todo = f.frames - start if frames is None else valid_int(frames, "frames", minimum=0, maximum=f.frames - start)
        f.seek(start)
        done = 0
        while done < todo:
            try:
                block = f.read(min(block_size, todo - done), dtype="float64", always_2d=True)
            except _READ_ERRORS as err:
                raise AudioError(f"cannot read audio file {path!r}: {_one_line(err)}") from None
            if len(block) == 0:
                raise AudioError(
                    f"audio file {path!r} ends early: its header announces {f.frames} frames, "
                    f"only {start + done} could be read"
                )
            if not np.isfinite(block).all():
                raise AudioError(
                    f"audio file {path!r} contains NaN or Inf samples "
                    f"(in frames {start + done}-{start + done + len(block) - 1}); clean the audio first"
                )
            done += len(block)
            yield np.ascontiguousarray(block.T)
