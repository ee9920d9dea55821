"""What is known about the peer methods: the paper's reported numbers, as data files.

``<dataset>.csv`` holds one row per reported method with the metric columns of the registry (empty =
not reported) and a ``source`` column. ``lipsync-bench table --paper`` shows these rows beside the
measured ones, labelled as reported: they were computed with the authors' own protocol and weights.
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
