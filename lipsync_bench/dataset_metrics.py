"""Dataset metrics (FID, FVD) combined over a run's videos from the per-video state the results folder
keeps: by every unsharded ``eval`` at its end, by ``merge`` over the shards' videos, and by ``verify``
to recompute a stored value. The inputs are never read again."""
from __future__ import annotations

import functools

from .errors import LipsyncBenchError
from .metrics.registry import Metric
from .store import ResultStore, Run


def compute_dataset_metrics(store: ResultStore, run: Run, session: int, metrics: list[Metric],
                            params: dict[str, dict], recompute: bool) -> None:
    """Combine the per-video state of dataset metrics over the run's videos that succeeded,
    from the results folder alone (the inputs are not read)."""
    existing = store.dataset_results(run)
    rows = store.results([run])
    for m in metrics:
        if recompute or m.name not in existing:
            store.write_dataset(run, session, m.name, **combine_states(store, run, rows, m, params[m.name]))


def combine_states(store: ResultStore, run: Run, rows, metric: Metric, params: dict) -> dict:
    """A dataset metric's value over the run's videos that succeeded (``rows``: the run's results), from
    their state files: value, videos, frames, warnings, error."""
    ok = sorted(set(rows[(rows.metric == metric.name) & rows.error.isna()].video))
    states = store.states(run, metric.name)
    if not ok:
        return {"value": None, "videos": 0, "frames": None, "error": "no video could be evaluated"}
    lost = [v for v in ok if v not in states]
    if lost:
        return {"value": None, "videos": len(ok), "frames": None,
                "error": f"the state of {len(lost)} videos (e.g. {lost[0]}) is not in the results folder; run "
                         "eval again on the inputs to recompute it"}
    loaders = [{side: functools.partial(store.load_state, metric.name, digest, video)
                for side, (digest, _) in states[video].items()} for video in ok]
    try:
        value = metric.dataset_value(params, loaders)
    except LipsyncBenchError as exc:
        return {"value": None, "videos": len(ok), "frames": None, "error": str(exc)}
    except (KeyError, ValueError) as exc:  # a side missing, arrays that do not fit: records edited or damaged
        return {"value": None, "videos": len(ok), "frames": None,
                "error": f"the state records of the run are incomplete or damaged ({type(exc).__name__}: {exc}); "
                         "run eval again on the inputs to recompute them"}
    return {"value": value.value, "videos": len(ok), "frames": value.frames, "warnings": value.warnings}
