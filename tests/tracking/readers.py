"""What each backend holds, read with the backend's own reader: {key: [(step, value), ...]}."""

from __future__ import annotations

from pathlib import Path

import duckdb
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from oreal_core.tracking.backend import TrackerRun
from oreal_core.tracking.mlflow_backend import MlflowBackend, find_run, store_uri


def tensorboard_scalars(run: TrackerRun) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run.folder / "tensorboard" / run.run_id), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_texts(run: TrackerRun) -> dict[str, list[int]]:
    acc = EventAccumulator(str(run.folder / "tensorboard" / run.run_id), size_guidance={"tensors": 0}).Reload()
    return {tag.removesuffix("/text_summary"): [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]
            if tag.endswith("/text_summary")}


def mlflow_run(run: TrackerRun):
    client = MlflowClient(tracking_uri=store_uri(run))
    experiment = client.get_experiment_by_name(run.experiment)
    return client, find_run(client, experiment.experiment_id, run.run_id)


def mlflow_scalars(run: TrackerRun) -> dict[str, list[tuple[int, float]]]:
    client, found = mlflow_run(run)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, key))
            for key in found.data.metrics}


def jsonl_scalars(run: TrackerRun) -> dict[str, list[tuple[int, float]]]:
    path = Path(run.folder) / "jsonl" / run.run_id / "metrics.jsonl"
    rows = duckdb.sql(f"SELECT name, step, value FROM read_json_auto('{path}') ORDER BY name, step").fetchall()
    out: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in rows:
        out.setdefault(name, []).append((step, value))
    return out


SCALARS = {"tensorboard": tensorboard_scalars, "mlflow": mlflow_scalars, "jsonl": jsonl_scalars}


def stored(backend: str, key: str) -> str:
    """``key`` as ``backend`` stores it (MLflow spells '@' out)."""
    return MlflowBackend.stored_name(None, key) if backend == "mlflow" else key
