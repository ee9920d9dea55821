"""Speech and silence segmentation of an audio track: Silero VAD (silero-vad's bundled TorchScript model,
offline), the project's speech detector.

The samples are the project's own decode (``media.read_audio``: mono float32 at 16 kHz); silero-vad's
``read_audio`` (torchaudio) is not used. The model ships inside the silero-vad wheel
(``silero_vad/data/silero_vad.jit``, entry "silero-vad" of ``weights.KNOWN``); it is loaded once per
process and its recurrent state is reset by ``get_speech_timestamps`` at every call (calls run one at a
time, under a lock), so a call depends on its samples alone.

``return_seconds=True`` gives silero's seconds, rounded to ``time_resolution`` decimals (default 1:
0.1 s), what THEval's scripts read; ``return_seconds=False`` gives sample positions. ``speech_seconds``
turns either into seconds, rounded as THEval or exact.

The model is a choice (``VAD_MODELS``): "silero-vad", the installed wheel's (lipsync-bench's default),
or "silero-vad-5.1.2", the model of the silero-vad 5.1.2 wheel that THEval pins (weights entry
"silero-vad-5.1.2", found in the weights folder, never downloaded). On the GRID test clips 5.1.2's
model ends speech 0.1 s earlier than 6.2.3's, on the same samples; with 5.1.2's model, 6.2.3's
``get_speech_timestamps`` gives 5.1.2's segments (its state machine is unchanged at the default
arguments), so only the model file changes.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from silero_vad import get_speech_timestamps, load_silero_vad

from . import media, weights
from .errors import MediaError, MetricError, UnavailableError

#: The rates silero's model reads (16 kHz, 8 kHz, and multiples of 16 kHz it decimates).
VAD_SAMPLE_RATE = 16000
#: How speech segments become seconds: "exact" (sample positions / rate) or "0.1" (silero's
#: return_seconds=True, rounded to 0.1 s, as THEval's scripts read them).
SECONDS_ROUNDING = ("exact", "0.1")

#: The VAD models: the installed silero-vad wheel's, or silero-vad 5.1.2's (THEval's pin; a weights entry).
VAD_MODELS = ("silero-vad", "silero-vad-5.1.2")

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()


def vad_model_path(model: str) -> Path:
    """The file of a VAD model (``VAD_MODELS``): the installed wheel's, or silero-vad 5.1.2's from the
    weights folder. Raises ``UnavailableError`` saying how to get a missing one."""
    if model not in VAD_MODELS:
        raise ValueError(f"VAD model {model!r}: expected one of {', '.join(VAD_MODELS)}")
    path = weights.find(model)
    if path is None:
        hint = f"; {weights.KNOWN[model].by_hand}" if weights.KNOWN[model].by_hand else ""
        raise UnavailableError(weights.missing_message(model).split("; get it")[0] + hint)
    return path


def load_vad_model(model: str = "silero-vad"):
    """A Silero VAD TorchScript model (``VAD_MODELS``), loaded once per process: the installed wheel's
    (``silero_vad.load_silero_vad``) or silero-vad 5.1.2's file from the weights folder.

    Returns:
        The model (a ``torch.jit.ScriptModule``).

    Example:
        >>> load_vad_model() is load_vad_model()
        True
    """
    with _LOCK:
        if model not in _MODELS:
            if model == "silero-vad":
                _MODELS[model] = load_silero_vad(onnx=False)
            else:
                loaded = torch.jit.load(str(vad_model_path(model)), map_location="cpu")
                loaded.eval()
                _MODELS[model] = loaded
        return _MODELS[model]


def speech_timestamps(samples: np.ndarray, sample_rate: int = VAD_SAMPLE_RATE, return_seconds: bool = False,
                      model: str = "silero-vad", **silero_options) -> list[dict]:
    """Speech segments of mono audio by Silero VAD (``silero_vad.get_speech_timestamps`` with the bundled
    model, its defaults unless ``silero_options`` say otherwise: threshold 0.5, min_speech_duration_ms 250,
    min_silence_duration_ms 100, speech_pad_ms 30).

    Args:
        samples: mono samples in [-1, 1], shape (N,) (``media.read_audio`` gives them at 16 kHz).
        sample_rate: their rate, Hz (16000 or 8000, or a multiple of 16000).
        return_seconds: seconds rounded to ``time_resolution`` decimals (silero's default 1: 0.1 s)
            instead of sample positions.
        model: the VAD model (``VAD_MODELS``).
        **silero_options: any other argument of ``get_speech_timestamps``.

    Returns:
        ``[{"start": ..., "end": ...}, ...]`` in samples (int) or seconds (float).

    Example:
        >>> import numpy as np
        >>> speech_timestamps(np.zeros(16000, np.float32))  # a second of silence
        []
    """
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32).reshape(-1))
    vad = load_vad_model(model)
    with _RUN_LOCK, torch.no_grad():  # the model's recurrent state lives in it: one call at a time
        return get_speech_timestamps(audio, vad, sampling_rate=sample_rate,
                                     return_seconds=return_seconds, **silero_options)


def speech_seconds(samples: np.ndarray, sample_rate: int = VAD_SAMPLE_RATE, rounding: str = "exact",
                   model: str = "silero-vad") -> list[tuple[float, float]]:
    """Speech segments in seconds: "exact" (silero's sample positions / ``sample_rate``) or "0.1"
    (``round(position / sample_rate, 1)``: silero-vad 5.1.2's ``return_seconds=True``, what THEval reads;
    6.x's also caps the last end at the audio's length, which the 0.05 s rounding may pass).

    Example:
        >>> speech_seconds(np.zeros(8000, np.float32), rounding="0.1")
        []
    """
    if rounding not in SECONDS_ROUNDING:
        raise ValueError(f"rounding {rounding!r}: expected one of {', '.join(SECONDS_ROUNDING)}")
    segments = speech_timestamps(samples, sample_rate, model=model)
    if rounding == "0.1":
        return [(round(s["start"] / sample_rate, 1), round(s["end"] / sample_rate, 1)) for s in segments]
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in segments]


def read_speech_seconds(path: str | os.PathLike, rounding: str = "exact",
                        limits: media.DecodeLimits | None = None,
                        model: str = "silero-vad") -> list[tuple[float, float]]:
    """Speech segments (seconds) of a video's audio track, decoded at 16 kHz by ``media.read_audio``.

    Raises ``MetricError`` naming the file when it has no audio track.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> video = media.write_video(Path(tempfile.mkdtemp()) / "mute.avi", np.zeros((5, 16, 16, 3), np.uint8),
        ...                           codec="ffv1")
        >>> read_speech_seconds(video)
        Traceback (most recent call last):
        ...
        lipsync_bench.errors.MetricError: ...mute.avi: no audio stream; speech detection needs the audio track
    """
    try:
        samples = media.read_audio(Path(path), VAD_SAMPLE_RATE, limits=limits)
    except MediaError as exc:
        raise MetricError(f"{exc}; speech detection needs the audio track") from None
    return speech_seconds(samples, VAD_SAMPLE_RATE, rounding, model)


__all__ = ["SECONDS_ROUNDING", "VAD_MODELS", "VAD_SAMPLE_RATE", "load_vad_model", "read_speech_seconds",
           "speech_seconds", "speech_timestamps", "vad_model_path"]
