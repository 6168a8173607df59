"""The judge held to "A" or "B" against the judge left to free text (issue 27): SmolLM2-135M-Instruct
as its own judge, served by ``oreal serve-judge`` (vLLM) on 127.0.0.1.

1. Samples: SmolLM2 (vLLM rollout engine, configs/smollm2-cpu.yaml with ``MIX``: K=4 at
   temperature 1.0, <= 192 new tokens) answers the prompts of
   ``oreal_core/data/train/smollm2_mix.jsonl`` (synthetic sums and GSM8K train) in file
   order until ``--samples`` finished ones (ended with the stop word: truncated ones never
   reach the judge) are drawn.
2. The same samples go through the run's Verifier (rule check, then the judge for every one,
   ``judge_when: always``) once per ``verifier.judge.server_kind``: ``generic`` (free text,
   read by parse_grade) and ``vllm`` (structured_outputs choice ["A", "B"]). A warm-up of a
   few requests per kind first, so neither pays the server's first requests (or the grammar
   compile) in its timing.

Per kind: judge_error rate (replies that are neither letter), agreement with the rule verdict
where the rule decided (the reference on these exact-match gold answers), overall and on rule
"correct" / rule "incorrect", and judged samples/s. On 2 cores shared with another benchmark
(load average 2-17) the 512 finished samples took 18 min (900 drawn, ~99 tok/s) and each kind
2.5 min: ~24 min in all; the load average is printed at the start and the end.

    .venv/bin/python benchmarks/judge_constrained.py [--samples 512] [--out DIR]

Engine and server output go to ``<out>/judge_constrained.log``; the table prints here and the
LAST line is one JSON object (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import bench_env  # noqa: F401 - sets the environment before the pipeline is imported
from smollm2 import CONFIG, judge_all, judge_figures

# The samples the judge sees: smollm2-cpu.yaml's sampling before it moved to the synthetic-only
# task (commit 4076630), as tests/flows/test_smollm2.py runs it: mixed prompts give the judge
# GSM8K word problems as well as sums.
MIX = ("data.prompts=oreal_core/data/train/smollm2_mix.jsonl", "data.shuffle=false",
       "rollout.samples_per_prompt=4", "rollout.temperature=1.0", "rollout.max_new_tokens=192")
KINDS = ("generic", "vllm")
WARMUP = 4  # requests per kind before its timed pass


def main() -> None:
    args = _parse()
    from flows.console import output_to
    from oreal_core.config import load_config
    from oreal_core.models.gguf_import import import_gguf
    from oreal_core.verify.serve import JudgeServer

    out = Path(args.out or tempfile.mkdtemp(prefix="judge-constrained-"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "judge_constrained.log"
    load_start = os.getloadavg()
    print(f"constrained vs free-text judge: SmolLM2-135M-Instruct, {args.samples} samples; output in {out}; "
          f"load average {load_start[0]:.2f} on {os.cpu_count()} cores", flush=True)
    began = time.perf_counter()
    with output_to(log):
        policy = import_gguf(root=args.models)
    cfg = load_config(CONFIG, [f"model.policy={policy}", f"store.uri={out}/lake", *MIX, *args.set])
    with output_to(log):
        items, drawn = draw(cfg, policy, args.samples)
    print(f"drew {drawn['drawn']} samples of {drawn['prompts']} prompts in {drawn['sample_s']} s "
          f"({drawn['tok_s']} tok/s); judging the first {len(items)} finished ones", flush=True)
    figures: dict[str, object] = {"samples": len(items), **drawn}
    with output_to(log), JudgeServer(policy, max_model_len=2048, log_path=out / "judge-vllm.log") as server:
        for kind in KINDS:
            kind_cfg = dataclasses.replace(cfg, verifier=dataclasses.replace(
                cfg.verifier, judge=dataclasses.replace(cfg.verifier.judge, server_kind=kind)))
            judge_all(kind_cfg, server.host, items[:WARMUP])
            figures[kind] = judge_figures(*judge_all(kind_cfg, server.host, items))
    figures.update(wall_s=round(time.perf_counter() - began, 1), load_avg_start=round(load_start[0], 2),
                   load_avg_end=round(os.getloadavg()[0], 2))
    report(figures)
    print(json.dumps(figures))


def draw(cfg, policy: Path, target: int) -> tuple[list, dict]:
    """The first ``target`` finished samples of the config's prompts, in file order."""
    from oreal_core.data.prompts import load_prompt_set
    from oreal_core.rollout import SamplingSpec, open_engine
    from oreal_core.types import FinishReason
    from oreal_core.verify.verifier import VerifyItem

    spec = SamplingSpec.from_rollout(cfg.rollout)
    items, drawn, tokens, used = [], 0, 0, 0
    started = time.perf_counter()
    with open_engine(policy, cfg) as engine:
        prompts = load_prompt_set(cfg.data, engine.tokenizer).prompts
        while len(items) < target and used < len(prompts):
            # As few generate calls as possible (each ends in a tail of a few long samples):
            # enough prompts for what is missing at the finish rate so far (SmolLM2: ~0.65).
            rate = len(items) / drawn if items else 0.6
            count = math.ceil(1.05 * (target - len(items)) / (spec.n * rate))
            batch, used = prompts[used:used + count], used + count
            samples = engine.generate(batch, spec).samples
            by_id = {p.prompt_id: p for p in batch}
            items += [VerifyItem.of(s, by_id[s.prompt_id]) for s in samples if s.finish_reason is FinishReason.STOP]
            drawn, tokens = drawn + len(samples), tokens + sum(len(s.token_ids) for s in samples)
    if len(items) < target:
        raise SystemExit(f"only {len(items)} finished samples from all {len(prompts)} prompts; lower --samples")
    sample_s = time.perf_counter() - started  # engine start included
    return items[:target], {"prompts": min(used, len(prompts)), "drawn": drawn,
                            "finished_frac": round(len(items) / drawn, 4), "sample_s": round(sample_s, 1),
                            "tok_s": round(tokens / sample_s, 1)}


def report(f: dict) -> None:
    print(f"\n{'server_kind':<12}{'asked':>7}{'judge errors':>15}{'decided':>9}{'agreement':>11}"
          f"{'on rule correct':>17}{'on rule incorrect':>19}{'samples/s':>11}")
    for kind in KINDS:
        r = f[kind]
        by = r["agreement_by_rule"]
        print(f"{kind:<12}{r['asked']:>7}{r['judge_errors']:>7} ({r['judge_error_rate']:>5.1%}){r['decided']:>9}"
              f"{r['agreement']:>11.1%}{_pct(by['correct']):>17}{_pct(by['incorrect']):>19}"
              f"{r['judge_samples_per_s']:>11.2f}")
    for kind in KINDS:
        print(f"  {kind}: {f[kind]['confusion']}; most common replies {f[kind]['replies']}")
    print(f"wall {f['wall_s']} s; load average {f['load_avg_start']} at the start, {f['load_avg_end']} at the end")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512, help="finished samples graded by each kind")
    parser.add_argument("--models", default=str(bench_env.REPO / "runs" / "models"), help="import_gguf root")
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    return parser.parse_args()


if __name__ == "__main__":
    main()
