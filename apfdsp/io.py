"""Audio files and model files: the only module of apfdsp that touches soundfile.

Audio arrays use the package convention: float64, time on the last axis, ``(channels, n)`` for
multichannel audio. Every file this module writes is written atomically: the data go to a hidden
temporary file in the destination directory, which is flushed to disk and then renamed over the
destination, so a failure never leaves a partial output behind. Inputs are never overwritten.
"""

import contextlib
import errno
import json
import numbers
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
from scipy import signal

from ._validate import LIMITS, PLAIN_SAMPLES, json_depth, valid_fs, valid_int
from .cascade import AllpassCascade
from .exceptions import AudioError, ModelFileError, OutputError, ParameterError
from .version import __version__

__all__ = [
    "read_audio", "write_audio", "apply_file", "save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION",
    "audio_info", "read_audio_blocks", "write_text", "os_error_text", "same_file", "check_output_name",
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


def _sf_name(path):
    """`path` as soundfile can open it: bytes when it holds undecodable bytes (surrogate escapes) of a file name."""
    try:
        path.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _one_line(err):
    if isinstance(err, OSError) and err.errno is not None:
        return os_error_text(err)
    return " ".join(str(err).split())


# What an errno means to a user, beyond the system's own words.
_ERRNO_HINTS = {
    errno.ENOSPC: "free some space, or write to another drive",
    errno.EDQUOT: "free some space, or write to another drive",
    errno.EACCES: "check the permissions of the file and its directory",
    errno.EPERM: "check the permissions of the file and its directory",
    errno.EROFS: "the drive is mounted read-only; write to another drive",
    errno.ENAMETOOLONG: "the file system allows names of up to 255 bytes",
    errno.EFBIG: "the file system or a size limit allows no larger file; write to another drive",
    errno.EIO: "a failing disk or a disconnected drive?",
    errno.EPIPE: "the reader went away",
}


def os_error_text(err):
    """What an `OSError` means, in a user's words: the system's text for its errno, and a hint.

    Parameters
    ----------
    err : OSError
        The error; its ``errno`` chooses the text (its own text when it has no errno).

    Returns
    -------
    text : str
        One line, without the file name.

    Examples
    --------
    >>> import errno
    >>> os_error_text(OSError(errno.ENOSPC, "No space left on device"))
    'No space left on device (free some space, or write to another drive)'
    """
    code = getattr(err, "errno", None)
    if not code:
        return " ".join(str(err).split())
    text = os.strerror(code)
    return f"{text} ({_ERRNO_HINTS[code]})" if code in _ERRNO_HINTS else text


def _libsndfile_os_error(err, path):
    """An `OSError` with the errno behind libsndfile's "System error." (read on this thread), else None."""
    if "system error" not in str(err).lower():
        return None
    ffi = getattr(sf, "_ffi", None)
    code = getattr(ffi, "errno", 0) if ffi is not None else 0
    if not code:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free == 0:
                code = errno.ENOSPC
    return OSError(code, os.strerror(code), path) if code else None


@contextlib.contextmanager
def _os_errors(path):
    """Turn a libsndfile "System error." raised inside into the `OSError` (errno) behind it."""
    try:
        yield
    except sf.LibsndfileError as err:
        os_err = _libsndfile_os_error(err, path)
        if os_err is None:
            raise
        raise os_err from None


def same_file(a, b):
    """True when paths `a` and `b` name the same file (or would, once `a` exists).

    Examples
    --------
    >>> same_file("a.wav", "./a.wav")
    True
    """
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


_same_file = same_file  # the name other modules of apfdsp used before it was public


def _special_file(path):
    """True when `path` (after symbolic links) exists and is not a regular file: /dev/null, a FIFO, ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _check_output_path(path, inputs):
    """Refuse output paths that are inputs, directories, or in a missing/read-only directory.

    Returns the path to write: `path` itself, or the file a symbolic link `path` points to (so the
    link is kept and its target replaced, as a shell's ``>`` would).
    """
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
    if os.path.islink(path):
        path = os.path.realpath(path)
    if _special_file(path):
        return path
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {path!r}: directory {directory!r} does not exist; create it first")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path!r}: directory {directory!r} is not writable")
    check_output_name(path)
    return path


def check_output_name(path):
    """Refuse (`OutputError`), before any work, a file name longer than its directory's file system allows.

    Examples
    --------
    >>> check_output_name("a" * 300 + ".wav")
    Traceback (most recent call last):
    ...
    apfdsp.exceptions.OutputError: cannot write 'aaa...': its name is 304 bytes long, ...
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        name_max = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return
    length = len(os.fsencode(os.path.basename(path)))
    if name_max and length > name_max:
        raise OutputError(
            f"cannot write {path!r}: its name is {length} bytes long, the file system allows {name_max}; "
            "choose a shorter name"
        )


@contextlib.contextmanager
def _disk_fd(path):
    """A file descriptor of the regular file `path` (for `os.posix_fadvise`), or None for a special file."""
    if _special_file(path):
        yield None
        return
    with open(path, "rb") as disk:
        yield disk.fileno()


def _fsync(path):
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path, err):
    """The `OutputError` for a failure `err` (OSError or libsndfile's) while writing `path`."""
    if isinstance(err, sf.LibsndfileError):
        err = _libsndfile_os_error(err, path) or err
    return OutputError(f"cannot write {path!r}: {_one_line(err)}")


#: Prefix of apfdsp's temporary files: short, so that any valid output name works beside them.
TEMPORARY_PREFIX = ".apfdsp-"


@contextlib.contextmanager
def _atomic_output(path, *, inputs=()):
    """Yield a temporary path next to `path`; on success fsync it and rename it to `path`.

    On any exception (including KeyboardInterrupt and the exceptions the command line raises on
    SIGTERM and SIGHUP) the temporary file is removed and `path` is left as it was. The temporary
    file has a short hidden name of its own (``.apfdsp-<random>.tmp``), so that an output name as
    long as the file system allows still works. A special file (``/dev/null``, a FIFO, a device;
    also through a symbolic link) is written directly: it cannot be replaced, and its mode is left
    alone. A symbolic link to a regular file keeps pointing to it: its target is replaced.
    """
    path = _check_output_path(path, inputs)
    if _special_file(path):
        try:
            yield path
        except (OSError, sf.LibsndfileError) as err:
            raise _write_error(path, err) from None
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        while tmp is None:
            tmp = os.path.join(directory, f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}.tmp")  # named before made
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:  # another file's name (1 in 2**48): not ours to remove
                tmp = None
        yield tmp
        _fsync(tmp)
        if os.path.isfile(path):
            with contextlib.suppress(OSError):
                shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        if isinstance(err, (OSError, sf.LibsndfileError)):
            raise _write_error(path, err) from None
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
        f = sf.SoundFile(_sf_name(path))
    except _READ_ERRORS as err:
        raise AudioError(f"cannot read audio file {path!r}: {_one_line(err)}") from None
    try:
        _check_header(path, f)
    except BaseException:
        f.close()
        raise
    return path, f


# libsndfile's log line for a chunk whose size in the header exceeds the file: "data : 2880000 (should be 48000)".
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND|ds64 data)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes that writers use for "unknown length" (streamed output): not a sign of truncation.
_STREAMED_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFFFFFFFFFF}


def _check_header(path, f):
    """Refuse an implausible header (rate, channels, no frames) and warn about a truncated file."""
    lo, hi = LIMITS["sample_rate_hz"]
    if not lo <= f.samplerate <= hi:
        raise AudioError(
            f"audio file {path!r} claims a sample rate of {f.samplerate} Hz, outside the {lo}-{hi} Hz apfdsp "
            "handles; the file is damaged or not audio"
        )
    lo, hi = LIMITS["channels"]
    if not lo <= f.channels <= hi:
        raise AudioError(f"audio file {path!r} has {f.channels} channels; apfdsp handles {lo} to {hi}")
    if f.frames == 0:
        raise AudioError(f"audio file {path!r} is empty (0 frames)")
    try:
        log = f.extra_info
    except _READ_ERRORS:
        return
    short = _SHORT_CHUNK.search(log or "")
    if short and int(short.group(2)) not in _STREAMED_SIZES and int(short.group(2)) > int(short.group(3)):
        announced, held = int(short.group(2)), int(short.group(3))
        warnings.warn(
            f"audio file {path!r} is truncated: its header announces {announced} bytes of audio "
            f"({announced / max(held, 1):.3g} times what it holds), the file holds {held} bytes "
            f"({f.frames / f.samplerate:.3f} s); only those are used",
            UserWarning, stacklevel=3,
        )


def _check_whole_read(path, f):
    """Refuse, before reading, a file too large to hold in memory, or one that expands implausibly."""
    samples = f.frames * f.channels
    limit = LIMITS["analysis_samples"]
    if samples > limit:
        raise AudioError(
            f"audio file {path!r} holds {samples} samples (frames x channels), more than the {limit} apfdsp "
            f"analyses at once ({limit / f.channels / f.samplerate / 60:.1f} min at this rate and channel count); "
            "fit on an excerpt, then apply the model to the whole file (apfdsp apply streams any length)"
        )
    try:
        size = os.path.getsize(path)
    except OSError:
        return
    ratio = LIMITS["analysis_expansion"]
    if samples > PLAIN_SAMPLES and samples > ratio * size:
        raise AudioError(
            f"audio file {path!r} is {size} bytes but announces {samples} samples, more than {ratio} per byte: it is "
            "damaged or crafted, mostly digital silence, or a low-bitrate lossy file; refusing to decode it whole "
            "for analysis (convert it to WAV first if it is real audio)"
        )


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
        (unless `allow_silent`); if its header is implausible (sample rate, channels outside
        `apfdsp._validate.LIMITS`); if it holds more samples than apfdsp analyses at once, or many more
        than its size allows (checked before reading); if fewer frames can be read than it announces.

    Warns
    -----
    UserWarning
        If the header announces more audio than the file holds (a truncated WAV or AIFF file, which
        libsndfile reads up to its end).

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
        _check_whole_read(path, f)
        try:
            data = f.read(dtype="float64", always_2d=True)
        except _READ_ERRORS as err:
            raise AudioError(f"cannot read audio file {path!r}: {_one_line(err)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path!r} is empty (0 frames could be read)")
    if data.shape[0] < info["frames"]:
        raise AudioError(
            f"audio file {path!r} is truncated or damaged: its header announces {info['frames']} frames, "
            f"only {data.shape[0]} could be read"
        )
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
    The samples go to a hidden temporary file ``.apfdsp-<random>.tmp`` in the destination
    directory (a short name, so that any valid output name works), which is fsynced and then
    renamed over `path` with `os.replace`. An existing `path` keeps its permission bits. A symbolic
    link keeps pointing to its target, which is replaced; a special file (``/dev/null``, a FIFO) is
    written directly. A failure, Ctrl-C or the command line's SIGTERM / SIGHUP handling leaves no file.

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
    with _atomic_output(path, inputs=inputs) as tmp, _os_errors(tmp):
        with sf.SoundFile(_sf_name(tmp), "w", samplerate=int(fs), channels=arr.shape[0], subtype=subtype, format=format) as f:
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

    def __call__(self, frames=None):
        try:
            block = self.fin.read(self.block_size if frames is None else frames, dtype=self.dtype, always_2d=True)
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
        self.fd = fd if hasattr(os, "posix_fadvise") else None  # None: not a regular file
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

    def _put(self, data):
        with _os_errors(self.fout.name):
            self.fout.write(data)

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
            self._put(np.zeros((n, self.fout.channels), self.dtype))
            self.todo -= n
            count -= n

    def __call__(self, y):
        drop = min(self.skip, len(y))
        self.skip -= drop
        y = y[drop : drop + self.todo]
        if not len(y):
            return
        self._put(self._samples(y))
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
    directory = os.path.dirname(tmp) if not _special_file(tmp) else tempfile.gettempdir()
    _check_scratch_space(directory, 8 * channels * total, out_path)
    anywhere = _writes_anywhere(format, subtype) and not _special_file(tmp)  # /dev/null, a FIFO: in order
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
        with _os_errors(tmp), sf.SoundFile(_sf_name(tmp), "w", fin.samplerate, channels, subtype, format=format) as fout, \
                _disk_fd(tmp) as fd:
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
        shift = cascade.integer_delay
        if abs(shift) >= total:
            warnings.warn(
                f"the cascade {'delays' if shift > 0 else 'advances'} by {abs(shift)} samples "
                f"({abs(shift) / fs:.3f} s), but {in_path!r} is only {total} samples ({total / fs:.3f} s) long: "
                "the output is silence",
                UserWarning, stacklevel=2,
            )
        format, subtype = _output_format(out_path, None, subtype, default_subtype=subtype or fin.subtype)
        with _atomic_output(out_path, inputs=(in_path,)) as tmp:
            if len(cascade.sos_anticausal):  # sections that run backwards in time: a backward pass
                peak = _apply_anticausal(cascade, fin, in_path, out_path, tmp, format, subtype, block_size, progress)
            else:
                with _os_errors(tmp), sf.SoundFile(_sf_name(tmp), "w", fs, channels, subtype, format=format) as fout, \
                        _disk_fd(tmp) as fd:
                    read = _BlockReader(fin, in_path, block_size)
                    write = _BlockWriter(fout, fd, total, cascade.integer_delay, subtype, block_size)
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


def _read_model_json(path):
    """The parsed JSON of a model file, refusing files too large or nested too deeply (before parsing)."""
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ModelFileError(f"model file {path!r} {what}")
    limit, depth = LIMITS["model_bytes"], LIMITS["model_depth"]
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise ModelFileError(f"cannot read model file {path!r}: {_one_line(err)}") from None
    if len(raw) > limit:
        raise ModelFileError(f"model file {path!r} is larger than {limit} bytes, the most apfdsp reads: it is not a model")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelFileError(f"model file {path!r} is not JSON (it is not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(f"model file {path!r} is not JSON ({err})") from None
    except RecursionError:
        doc = None
    if doc is None or json_depth(doc) > depth:
        raise ModelFileError(f"model file {path!r} is nested more than {depth} levels deep: it is not a model")
    return doc


def _check_model_bounds(path, data):
    """Refuse, before any filter is built, a cascade dict whose sizes exceed `LIMITS` (see `apfdsp._validate`)."""
    def refuse(what):
        return ModelFileError(f"model file {path!r}: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise refuse("bad cascade: it must be an object with a list of 'cells'")
    fs, (lo, hi) = data.get("fs"), LIMITS["sample_rate_hz"]
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not lo <= fs <= hi:
        raise refuse(f"bad cascade: fs must be a sample rate in [{lo}, {hi}] Hz, got {fs!r:.40}")
    cells, limit = data["cells"], LIMITS["model_cells"]
    if len(cells) > limit:
        raise refuse(f"it has {len(cells)} cells, more than the {limit} apfdsp accepts")
    (k_lo, k_hi), rows, delay = LIMITS["model_stretch"], 0, 0.0
    for i, cell in enumerate(cells):
        cell = cell if isinstance(cell, dict) else {}
        stretch = cell.get("stretch", 1)
        if isinstance(stretch, numbers.Real) and not isinstance(stretch, bool) and not k_lo <= stretch <= k_hi:
            raise refuse(f"cell {i}: stretch must be an integer in [{k_lo}, {k_hi}], got {stretch!r:.40}")
        if cell.get("type") in ("allpass1", "allpass2"):
            rows += stretch if isinstance(stretch, int) else 1
        samples = cell.get("samples", 0) if cell.get("type") == "delay" else 0
        if isinstance(samples, numbers.Real) and not isinstance(samples, bool) and np.isfinite(samples):
            delay += abs(samples)
            rows += 1
    if rows > LIMITS["model_sos_rows"]:
        raise refuse(f"it needs {rows} second-order sections, more than the {LIMITS['model_sos_rows']} apfdsp accepts")
    max_s = LIMITS["model_delay_s"]
    if delay > max_s * fs:
        raise refuse(f"its delays add up to {delay:.6g} samples ({delay / fs:.3g} s), more than the {max_s} s "
                     "apfdsp accepts")


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
        If the file is missing, not JSON, larger or more deeply nested than a model can be, not an
        apfdsp model, exceeds a model bound of `apfdsp._validate.LIMITS` (cells, stretch factor,
        sections, delay, sample rate: checked before any filter is built), of a newer format version, lacks a
        key (``sos_anticausal`` too when the cells include anticausal sections), holds bad cell
        values, if its stored SOS (``sos``, ``sos_anticausal``), delay, polarity or fs disagree with
        the cells (a corrupt or hand-edited file), or if the filter is unstable.

    See Also
    --------
    save_model
    """
    path = _path_str(path, "path")
    doc = _read_model_json(path)
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
    _check_model_bounds(path, doc["cascade"])
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
    if radius.size and np.max(radius) > LIMITS["model_pole_radius"]:
        ring_s = 1.0 / (1.0 - np.max(radius)) / cascade.fs
        raise ModelFileError(
            f"model file {path!r} describes a filter on the edge of stability (pole radius {np.max(radius):.12g} > "
            f"{LIMITS['model_pole_radius']}: it would ring for about {ring_s:.3g} s); no fit makes such a model"
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
