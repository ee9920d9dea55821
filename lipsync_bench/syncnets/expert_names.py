"""The sync experts by name: what tables and protocols call them, which published weights each has,
and how a weights file of one is recorded. Light (no torch), so that metric declarations read it."""
from __future__ import annotations

from pathlib import Path

from .. import weights

EXPERTS = ("syncnet", "wav2lip", "avsyncnet")
LABELS = {"syncnet": "SyncNet", "wav2lip": "Wav2Lip SyncNet", "avsyncnet": "AVSyncNet"}
#: The weights entry (``lipsync_bench.weights.KNOWN``) of each expert that has published weights.
KNOWN_WEIGHTS = {"syncnet": "syncnet", "wav2lip": "wav2lip-expert"}


def describe_weights(name: str, path: str | Path) -> dict:
    """What goes into the protocol for an expert's weights file: name, file, sha256, official."""
    if name in KNOWN_WEIGHTS:
        return weights.describe(KNOWN_WEIGHTS[name], path)
    return {"name": name, "file": Path(path).name, "sha256": weights.sha256(path), "official": False}
