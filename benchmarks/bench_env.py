"""What the pipeline benchmarks set before they import the pipeline: the Makefile's
environment (DeepSpeed and vLLM on CPU, no Prefect analytics, a patient ephemeral Prefect
server on a loaded machine, no Hugging Face hub look-ups) and the repository on sys.path. Import it first:
``from bench_env import REPO`` (the script's own folder is on sys.path when run as
``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

for name, value in {"DS_ACCELERATOR": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1"}.items():
    os.environ.setdefault(name, value)
sys.path.insert(0, str(REPO))
