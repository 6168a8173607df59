"""MLflow: by default an SQLite store, ``<tracking dir>/mlflow.db`` (MLflow 3 refuses its old file
store unless told otherwise), artefacts beside it; or any tracking server (``tracking.mlflow_uri``).

The MLflow run is found again by its ``oreal.run_id`` tag, so a resume appends to it; the
steps it already holds are read back at open, so none is written twice.
"""

from __future__ import annotations

import re
import time

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from oreal_core.tracking.backend import PARAMS_KEY, Backend, TrackerRun

RUN_TAG = "oreal.run_id"
_NOT_ALLOWED = re.compile(r"[^/\w.\- :]")  # MLflow's metric name alphabet
_CHUNK = 100  # MLflow's per-request limit on params (metrics allow 1,000)
_PARAM_CHARS = 6000  # MLflow's limit on a param value


def store_uri(run: TrackerRun) -> str:
    return run.mlflow_uri or f"sqlite:///{(run.folder / 'mlflow.db').resolve()}"


class MlflowBackend(Backend):
    name = "mlflow"

    def __init__(self, run: TrackerRun) -> None:
        super().__init__(run)
        self.client: MlflowClient | None = None
        self.mlflow_run_id = ""

    def open(self) -> dict[str, int]:
        self.run.folder.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=store_uri(self.run))
        experiment = self.client.get_experiment_by_name(self.run.experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            self.run.experiment, artifact_location=(self.run.folder / "mlflow-artifacts").resolve().as_uri())
        found = find_run(self.client, experiment_id, self.run.run_id)
        if found is None:
            created = self.client.create_run(experiment_id, run_name=self.run.run_id, tags={RUN_TAG: self.run.run_id})
            self.mlflow_run_id = created.info.run_id
            return {}
        self.mlflow_run_id = found.info.run_id
        self.client.update_run(self.mlflow_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        logged = {key: max(m.step for m in self.client.get_metric_history(self.mlflow_run_id, key))
                  for key in found.data.metrics}
        if found.data.params:
            logged[PARAMS_KEY] = 0
        return logged

    def log_params(self, params: dict[str, str]) -> None:
        entries = [Param(key, value[:_PARAM_CHARS]) for key, value in params.items()]
        for start in range(0, len(entries), _CHUNK):
            self.client.log_batch(self.mlflow_run_id, params=entries[start:start + _CHUNK])

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        entries = [Metric(self.stored_name(key), value, now, step) for key, value in values.items()]
        for start in range(0, len(entries), 10 * _CHUNK):
            self.client.log_batch(self.mlflow_run_id, metrics=entries[start:start + 10 * _CHUNK])

    def log_text(self, step: int, key: str, markdown: str) -> None:
        # One artefact per step: a replayed step overwrites its own file, never adds a second.
        self.client.log_text(self.mlflow_run_id, markdown, f"{self.stored_name(key)}/step_{step:06d}.md")

    def close(self) -> None:
        if self.client is not None and self.mlflow_run_id:
            self.client.set_terminated(self.mlflow_run_id)

    def stored_name(self, key: str) -> str:
        """verl's spelling for MLflow, which refuses '@': ``pass@1`` -> ``pass_at_1``."""
        return _NOT_ALLOWED.sub("_", key.replace("@", "_at_"))


def find_run(client: MlflowClient, experiment_id: str, run_id: str):
    """The experiment's MLflow run tagged with ``run_id``, or None. A quote cannot be escaped in
    MLflow's filter syntax: such a run id is matched by reading every run's tags."""
    quoted = "'" not in run_id
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'" if quoted else "",
                                  max_results=1000, page_token=token)
        for found in page:
            if found.data.tags.get(RUN_TAG) == run_id:
                return found
        token = page.token
        if not token:
            return None
