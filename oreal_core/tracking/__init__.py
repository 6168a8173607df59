"""Live experiment tracking: a run's metrics in TensorBoard, MLflow or local JSONL files while
it runs (docs/tracking.md).

``names`` maps our metric names to the trackers' conventional ones, ``tracker`` fans entries
out to the backends off the run's thread, one module per backend, and ``run_tracking`` is
what the training flow calls.
"""
