"""What is known about the peer methods: the paper's reported numbers, as data files.

``<dataset>.csv`` holds one row per reported method with the metric columns of the registry (empty =
not reported), a ``source`` column, and the ``protocol`` the numbers were computed under as far as it
is known (a named protocol, ``lipsync-bench protocols``; or ``unknown``) with a ``protocol_note``.
``lipsync-bench table --paper`` shows these rows beside the measured ones of the same protocol,
labelled as reported and never bolded; a reported row beside numbers measured under another protocol
is marked ‡ (another procedure: not comparable).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd


def reported_datasets() -> list[str]:
    return sorted(p.name[:-4] for p in resources.files(__package__).iterdir() if p.name.endswith(".csv"))


def reported(dataset: str) -> pd.DataFrame | None:
    """The paper's reported rows for ``dataset`` (case-insensitive), or None when it reports none."""
    name = dataset.lower()
    if name not in reported_datasets():
        return None
    with resources.files(__package__).joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f)


def reported_stability() -> pd.DataFrame:
    """The paper's Tab. A: cosine similarity and lip-sync loss of GT audio-lip pairs on LRS2's training and
    test sets, per expert (``studies/stability.csv``: the expert's name here, its label in the paper, and
    the caveats of each row)."""
    with resources.files(__package__).joinpath("studies", "stability.csv").open() as f:
        return pd.read_csv(f, keep_default_na=False)
