"""Audio files: reading and writing them, and writing any output safely (atomically, never over an input).

One job: everything between apfdsp and a file on disk that is not the filter engine
(`apfdsp.streaming`) or the model format (`apfdsp.model_format`): reading audio with its header and
size bounds checked (`read_audio`, `audio_info`, `open_audio`), writing audio (`write_audio`) and
text (`write_text`), the atomic output every writer of the package goes through (`atomic_output`),
the checks of output paths (`same_file`, `check_output_name`, `output_format`), and what an error of
the operating system or libsndfile means to a user (`os_error_text`, `error_line`).

Audio arrays follow the package's conventions (docs/maths.md, section 0): float64, time on the last
axis, ``(channels, n)`` for multichannel audio. Every file written here is written atomically: the
data go to a hidden temporary file in the destination directory, which is flushed to disk and then
renamed over the destination, so a failure never leaves a partial output behind. Inputs are never
overwritten.
"""

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import sys
import warnings

import numpy as np
import soundfile as sf

from ._validate import LIMITS, PLAIN_SAMPLES, valid_fs
from .exceptions import AudioError, OutputError, ParameterError

__all__ = [
    "read_audio", "write_audio", "audio_info", "write_text", "os_error_text", "same_file", "check_output_name",
    "TEMPORARY_PREFIX", "READ_ERRORS", "atomic_output", "open_audio", "output_format", "path_str", "error_line",
    "soundfile_name", "libsndfile_os_errors", "is_special_file", "disk_fd", "subtype_clips", "warn_clipping",
]

#: What soundfile raises when reading a damaged or unreadable file (`open_audio` and the readers turn it into `AudioError`).
READ_ERRORS = (sf.LibsndfileError, RuntimeError, OSError)
_EXTENSION_FORMATS = {"aif": "AIFF", "aifc": "AIFF", "oga": "OGG", "opus": "OGG", "wave": "WAV"}
# Subtypes that store floating-point samples (or decode to them) and so do not clip at |x| = 1.
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS"}


# -- helpers: paths and atomic output ---------------------------------------------------------------
def path_str(path, name):
    """`path` as a `str`, or a `TypeError` that names the argument `name` when it is not a path.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        A file name; bytes are decoded as the file system does (undecodable bytes become surrogate escapes).
    name : str
        The argument's name, for the error message.

    Returns
    -------
    path : str

    Raises
    ------
    TypeError
        If `path` is not a str, bytes or os.PathLike.

    Examples
    --------
    >>> import pathlib
    >>> path_str(pathlib.Path("mix") / "dry.wav", "in_path")
    'mix/dry.wav'
    >>> path_str(3, "in_path")
    Traceback (most recent call last):
    ...
    TypeError: in_path must be a path (str or os.PathLike), got int
    """
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}") from None


def soundfile_name(path):
    """`path` as soundfile can open it: bytes when it holds undecodable bytes (surrogate escapes) of a file name.

    Parameters
    ----------
    path : str
        A file name, as `path_str` returns it.

    Returns
    -------
    name : str or bytes
        `path` itself, or its bytes when the file system's encoding cannot encode it.

    Examples
    --------
    >>> soundfile_name("dry.wav")
    'dry.wav'
    >>> soundfile_name("dry-\\udcff.wav")  # a name holding the byte 0xff, which is not UTF-8
    b'dry-\\xff.wav'
    """
    try:
        path.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def error_line(err):
    """An error's text on one line: `os_error_text` for an `OSError` with an errno, else its own words.

    Parameters
    ----------
    err : BaseException
        The error (an `OSError`, libsndfile's error, ...).

    Returns
    -------
    text : str
        One line, whitespace runs (newlines included) collapsed to single spaces.

    Examples
    --------
    >>> import errno
    >>> error_line(RuntimeError("Error opening 'a.wav':\\n  Format not recognised."))
    "Error opening 'a.wav': Format not recognised."
    >>> error_line(OSError(errno.EACCES, "Permission denied"))
    'Permission denied (check the permissions of the file and its directory)'
    """
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
def libsndfile_os_errors(path):
    """Turn a libsndfile "System error." raised inside into the `OSError` (errno) behind it.

    libsndfile reports a failing write or read of the operating system as "System error." without
    the cause; a disk that is full, for example, becomes ``OSError(ENOSPC)``, which `os_error_text`
    explains. Other libsndfile errors pass through unchanged.

    Parameters
    ----------
    path : str
        The file being read or written (its directory is checked for free space when libsndfile
        leaves no errno).

    Yields
    ------
    None
        The body of the ``with`` statement runs with the translation in place.

    Examples
    --------
    Any other error of libsndfile is raised as it is:

    >>> import os, tempfile
    >>> import soundfile as sf
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_text(os.path.join(d, "a.wav"), "not audio")
    ...     try:
    ...         with libsndfile_os_errors(path):
    ...             sf.SoundFile(path)
    ...     except sf.LibsndfileError as err:
    ...         err.error_string
    'Format not recognised.'
    """
    try:
        yield
    except sf.LibsndfileError as err:
        os_err = _libsndfile_os_error(err, path)
        if os_err is None:
            raise
        raise os_err from None


def same_file(a, b):
    """True when paths `a` and `b` name the same file (or would, once `a` exists).

    Parameters
    ----------
    a, b : str or os.PathLike
        Paths; `a` need not exist.

    Returns
    -------
    bool

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


def is_special_file(path):
    """True when `path` (after symbolic links) exists and is not a regular file: /dev/null, a FIFO, ...

    Such a file cannot be replaced by a rename, and cannot be written at any position: the writers
    write it directly and in order.

    Parameters
    ----------
    path : str or os.PathLike
        Any path (it need not exist).

    Returns
    -------
    bool
        False for a regular file, a directory or a missing path.

    Examples
    --------
    >>> import os, tempfile
    >>> is_special_file(os.devnull)
    True
    >>> with tempfile.TemporaryDirectory() as d:
    ...     is_special_file(d), is_special_file(os.path.join(d, "missing.wav"))
    (False, False)
    """
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
    path = path_str(path, "path")
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = (inputs,)
    for src in inputs:
        src = path_str(src, "inputs")
        if same_file(path, src):
            raise OutputError(
                f"refusing to write {path!r}: it is the input file {src!r}; choose a different output path"
            )
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path!r}: it is a directory; give a file name")
    if os.path.islink(path):
        path = os.path.realpath(path)
    if is_special_file(path):
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

    Parameters
    ----------
    path : str or os.PathLike
        Output file to be written.

    Raises
    ------
    OutputError
        If the last component of `path` is longer than the file system's limit for a name.

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
def disk_fd(path):
    """A file descriptor of the regular file `path` (for `os.posix_fadvise`), or None for a special file.

    The descriptor is opened read-only and closed when the context ends; the streaming writers use
    it to hand written blocks to the disk at once.

    Parameters
    ----------
    path : str or os.PathLike
        A file that exists (a regular file or a special one such as /dev/null).

    Yields
    ------
    int or None
        The open descriptor, or None when `path` is not a regular file.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_text(os.path.join(d, "a.txt"), "x")
    ...     with disk_fd(path) as fd, disk_fd(os.devnull) as none:
    ...         isinstance(fd, int), none
    (True, None)
    """
    if is_special_file(path):
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
    return OutputError(f"cannot write {path!r}: {error_line(err)}")


#: Prefix of apfdsp's temporary files: short, so that any valid output name works beside them.
TEMPORARY_PREFIX = ".apfdsp-"


@contextlib.contextmanager
def atomic_output(path, *, inputs=()):
    """Yield a temporary path next to `path`; on success fsync it and rename it to `path`.

    Every file apfdsp writes goes through this context manager: the caller writes the temporary
    path it yields, by any means.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    inputs : sequence of path, optional
        Files `path` must not be (the files the output is computed from).

    Yields
    ------
    tmp : str
        The path to write: a new empty file next to `path` (or `path` itself for a special file).

    Raises
    ------
    OutputError
        Before the body runs, if `path` is one of `inputs`, a directory, in a missing or read-only
        directory, or its name is too long for the file system; afterwards, if writing or renaming
        fails (an `OSError` or libsndfile error raised in the body becomes an `OutputError`).

    Notes
    -----
    On any exception (including KeyboardInterrupt and the exceptions the command line raises on
    SIGTERM and SIGHUP) the temporary file is removed and `path` is left as it was. The temporary
    file has a short hidden name of its own (``.apfdsp-<random>.tmp``), so that an output name as
    long as the file system allows still works. A special file (``/dev/null``, a FIFO, a device;
    also through a symbolic link) is written directly: it cannot be replaced, and its mode is left
    alone. A symbolic link to a regular file keeps pointing to it: its target is replaced.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "notes.txt")
    ...     with atomic_output(path) as tmp:
    ...         with open(tmp, "w") as f:
    ...             _ = f.write("kept")
    ...     try:
    ...         with atomic_output(path) as tmp:
    ...             raise KeyboardInterrupt  # the old file stays, the temporary one goes
    ...     except KeyboardInterrupt:
    ...         pass
    ...     open(path).read(), os.listdir(d)
    ('kept', ['notes.txt'])
    """
    path = _check_output_path(path, inputs)
    if is_special_file(path):
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


def output_format(path, format, subtype, *, default_subtype=None):
    """Return ``(format, subtype)`` for writing `path`, checked against libsndfile.

    Parameters
    ----------
    path : str
        The output file; its extension chooses the format when `format` is None.
    format : str or None
        libsndfile major format (``"WAV"``, ``"FLAC"``, ...), any case.
    subtype : str or None
        libsndfile subtype (``"PCM_24"``, ``"FLOAT"``, ...); None: `default_subtype`, else the format's default.
    default_subtype : str, optional
        The subtype used when `subtype` is None (`apply_file` passes the input's).

    Returns
    -------
    format, subtype : str
        Upper case, a pair libsndfile writes.

    Raises
    ------
    OutputError
        If the extension or `format` is unknown, or the subtype is not available for the format.

    Examples
    --------
    >>> output_format("mix.flac", None, None)
    ('FLAC', 'PCM_16')
    >>> output_format("mix.aif", None, "float")
    ('AIFF', 'FLOAT')
    >>> output_format("mix.flac", None, "FLOAT")
    Traceback (most recent call last):
    ...
    apfdsp.exceptions.OutputError: cannot write 'mix.flac': subtype 'FLOAT' is not available for FLAC files; ...
    """
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


def subtype_clips(subtype):
    """True when samples of libsndfile `subtype` are fixed-point, so that values beyond [-1, 1] clip.

    Parameters
    ----------
    subtype : str
        libsndfile subtype, upper case (``"PCM_24"``, ``"FLOAT"``, ...).

    Returns
    -------
    bool

    Examples
    --------
    >>> subtype_clips("PCM_24"), subtype_clips("FLOAT"), subtype_clips("VORBIS")
    (True, False, False)
    """
    return subtype not in _FLOAT_SUBTYPES and not subtype.startswith("MPEG")


def warn_clipping(path, subtype, peak):
    """Warn (`UserWarning`) that output `path` clips: its `peak` exceeds 1 and `subtype` is fixed-point.

    The warning points at the caller of the function that calls this one (``stacklevel=3``): the
    user's call of `write_audio` or `apply_file`.

    Parameters
    ----------
    path : str or os.PathLike
        The output file, as named in the warning.
    subtype : str
        Its libsndfile subtype.
    peak : float
        Largest absolute sample value written.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_clipping("mix.wav", "PCM_16", 1.5)
    >>> print(caught[0].message)
    output 'mix.wav' clips: peak |x| = 1.5 > 1 cannot be stored as PCM_16; lower the gain or write subtype='FLOAT'
    """
    warnings.warn(
        f"output {path!r} clips: peak |x| = {peak:.4g} > 1 cannot be stored as {subtype}; "
        "lower the gain or write subtype='FLOAT'",
        UserWarning,
        stacklevel=3,
    )


def open_audio(path):
    """Open an audio file for reading, turning every failure into a one-line AudioError.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.

    Returns
    -------
    path : str
        `path` as a str (for messages).
    f : soundfile.SoundFile
        The open file, its header checked; the caller closes it (``with f:``).

    Raises
    ------
    AudioError
        If the file is missing, a directory, unreadable, empty, or its header is implausible (sample
        rate, channels outside `apfdsp._validate.LIMITS`).

    Warns
    -----
    UserWarning
        If the header announces more audio than the file holds (a truncated WAV or AIFF file).

    See Also
    --------
    read_audio, audio_info

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_audio(os.path.join(d, "a.wav"), np.full(100, 0.5), 8000)
    ...     path, f = open_audio(os.path.join(d, "a.wav"))
    ...     with f:
    ...         f.frames, f.samplerate
    (100, 8000)
    """
    path = path_str(path, "path")
    if not os.path.exists(path):
        raise AudioError(f"audio file {path!r} does not exist")
    if os.path.isdir(path):
        raise AudioError(f"audio file {path!r} is a directory, not a file")
    try:
        f = sf.SoundFile(soundfile_name(path))
    except READ_ERRORS as err:
        raise AudioError(f"cannot read audio file {path!r}: {error_line(err)}") from None
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
    except READ_ERRORS:
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
    write_audio, apfdsp.streaming.apply_file

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
    path, f = open_audio(path)
    with f:
        info = _info(f)
        _check_whole_read(path, f)
        try:
            data = f.read(dtype="float64", always_2d=True)
        except READ_ERRORS as err:
            raise AudioError(f"cannot read audio file {path!r}: {error_line(err)}") from None
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
    path = path_str(path, "path")
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
    format, subtype = output_format(path, format, subtype)
    if subtype_clips(subtype):
        peak = float(np.max(np.abs(arr)))
        if peak > 1:
            warn_clipping(path, subtype, peak)
            arr = np.clip(arr, -1.0, 1.0)
    with atomic_output(path, inputs=inputs) as tmp, libsndfile_os_errors(tmp):
        with sf.SoundFile(soundfile_name(tmp), "w", samplerate=int(fs), channels=arr.shape[0], subtype=subtype, format=format) as f:
            f.write(arr.T)


def write_text(path, text, *, inputs=()):
    """Write `text` (UTF-8) to `path` atomically; never over one of `inputs`.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; replaced by a rename once it is written in full.
    text : str
        Content.
    inputs : sequence of str or os.PathLike
        Files `path` must not be (an `OutputError` otherwise).

    Returns
    -------
    str
        `path` as a str.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_text(os.path.join(d, "a.html"), "<p>hi</p>")
    ...     open(path, encoding="utf-8").read()
    '<p>hi</p>'
    """
    with atomic_output(path, inputs=inputs) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return os.fspath(path)



def audio_info(path):
    """``subtype``, ``format``, ``channels``, ``samplerate`` and ``frames`` of an audio file, without reading it.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.

    Returns
    -------
    dict
        ``subtype`` and ``format`` (libsndfile names, str), ``channels``, ``samplerate`` and ``frames`` (int).

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
    path, f = open_audio(path)
    with f:
        return _info(f)

