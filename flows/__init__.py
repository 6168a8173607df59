"""The Prefect flows, their CLI and their console.

Importing the package sets how a Prefect server started by this process records runs: the
temporary server every run, demo and test starts without PREFECT_API_URL inherits this
environment. Its SQLite database takes one writer at a time, and Prefect's defaults write each
task-run state (one per event) and every 20 events in a transaction of their own; each new
iteration subflow's task run then often met "database is locked" (503), which Prefect's client
retries after 2 s (PrefectHQ/prefect #18934, #19771). Batching them (flushed at least every
5 s, and at shutdown), every task run and event is still recorded: side by side an iteration's
orchestration 0.21 s -> 0.12 s and the 503s per 100 iterations 4.2 -> 0.8
(benchmarks/prefect_batching.py); single 240-step demos met 16 such retries with the defaults,
3-4 with these. A server started on its own (`prefect server start`, docs/deploy.md) takes its
own settings; set them there too.
"""

import os

PREFECT_SERVER_BATCHING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",  # default 1
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",  # default 20
}
for _name, _value in PREFECT_SERVER_BATCHING.items():
    os.environ.setdefault(_name, _value)
