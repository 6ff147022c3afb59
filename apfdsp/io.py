"""Audio files, the streaming filter engine and model files in one namespace: a facade, no code of its own.

Each job has its own module, and this one re-exports their public names, so that
``from apfdsp.io import read_audio, apply_file, load_model`` keeps working:

* `apfdsp.audiofile`: reading and writing audio, atomic outputs, checks of output paths, OS error texts;
* `apfdsp.streaming`: the block-wise filter engine, `apply_file` (docs/maths.md, sections 3 and 4);
* `apfdsp.model_format`: the JSON model file, `save_model` and `load_model` (docs/adding.md, section 1.3).

Code inside apfdsp imports from those modules; patch names there, not here.
"""

from .audiofile import (
    READ_ERRORS, TEMPORARY_PREFIX, atomic_output, audio_info, check_output_name, disk_fd, error_line,
    is_special_file, libsndfile_os_errors, open_audio, os_error_text, output_format, path_str, read_audio,
    same_file, soundfile_name, subtype_clips, warn_clipping, write_audio, write_text,
)
from .model_format import MODEL_FORMAT, MODEL_FORMAT_VERSION, load_model, save_model
from .streaming import apply_file, read_audio_blocks, writes_anywhere

__all__ = [  # the union of the three modules' __all__ (tests/test_io.py checks it)
    "read_audio", "write_audio", "audio_info", "write_text", "os_error_text", "same_file", "check_output_name",
    "TEMPORARY_PREFIX", "READ_ERRORS", "atomic_output", "open_audio", "output_format", "path_str", "error_line",
    "soundfile_name", "libsndfile_os_errors", "is_special_file", "disk_fd", "subtype_clips", "warn_clipping",
    "apply_file", "read_audio_blocks", "writes_anywhere",
    "save_model", "load_model", "MODEL_FORMAT", "MODEL_FORMAT_VERSION",
]
