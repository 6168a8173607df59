"""The evaluation stage: a checkpoint on benchmarks, graded as training grades, into the lake.

``evaluate`` samples with the ``eval`` settings (greedy pass@1, or ``eval.samples`` samples
at ``eval.temperature`` for pass@k), grades every sample with the run's
:class:`~oreal_core.verify.verifier.Verifier` (rule check, then the judge if configured),
commits per-sample :class:`EvalRecord` rows to the lake's ``eval`` table every
``eval.commit_every`` problems, and returns an :class:`EvalSummary`.

Training passes its long-lived engine (already holding the checkpoint's weights, i.e.
right after ``reload_weights``) and verifier; the CLI lets ``evaluate`` open both. Re-running
an interrupted evaluation with the same run id, step and config skips every problem whose
samples were committed (see stored.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from oreal_core.config import OrealConfig
from oreal_core.eval.metrics import BenchSummary, summarise_bench
from oreal_core.eval.problems import EvalInputError, EvalSet, load_eval_set
from oreal_core.eval.stored import StepRecords
from oreal_core.pipeline.preflight import check_lake_writable
from oreal_core.rollout import RolloutEngine, RolloutInputError, SamplingSpec, open_engine
from oreal_core.rollout.base import encode_prompts
from oreal_core.rollout.policy_dir import model_dir_problem
from oreal_core.store import Lake, StoreError
from oreal_core.store.layout import check_run_id, check_step
from oreal_core.store.records import EvalRecord
from oreal_core.types import Prompt
from oreal_core.verify.verifier import Verifier, VerifyItem

log = logging.getLogger(__name__)

_STEP_IN_NAME = re.compile(r"step[=_-]?(\d+)$")


@dataclass(frozen=True)
class EvalSummary:
    """One checkpoint on every requested benchmark; ``benches`` in the order asked."""

    run_id: str
    step: int
    checkpoint: str
    benches: tuple[BenchSummary, ...]

    def bench(self, name: str) -> BenchSummary:
        for summary in self.benches:
            if summary.bench == name:
                return summary
        raise KeyError(f"no bench {name!r} in this summary: {[b.bench for b in self.benches]}")


def checkpoint_step(checkpoint: str | Path) -> int:
    """The training step in a checkpoint dir's name (``hf/step=000040`` -> 40), else 0."""
    match = _STEP_IN_NAME.search(Path(checkpoint).name)
    return int(match.group(1)) if match else 0


def evaluate(cfg: OrealConfig, checkpoint: str | Path, *, run_id: str, benches: Sequence[str] | None = None,
             step: int | None = None, engine: RolloutEngine | None = None, verifier: Verifier | None = None,
             lake: Lake | None = None) -> EvalSummary:
    """Evaluate ``checkpoint`` on ``benches`` (default ``eval.benchmarks``) and record every sample.

    ``step`` (default: from the checkpoint's name, else 0) is the lake partition the records
    go to. ``engine``/``verifier``, when given, stay open; otherwise they are opened here
    and closed before returning.
    """
    benches = tuple(benches if benches is not None else cfg.eval.benchmarks)
    step = checkpoint_step(checkpoint) if step is None else step
    _check_run_and_step(run_id, step)
    if lake is None:  # training passes its own, checked when the run opened
        check_lake_writable(cfg.store)
        lake = Lake.open(cfg.store)
    with contextlib.ExitStack() as stack:
        if engine is None:
            engine = stack.enter_context(_open_checkpoint(checkpoint, cfg))
        eval_sets = [load_eval_set(name, cfg, engine.tokenizer) for name in benches]  # all errors before sampling
        spec = SamplingSpec.from_eval(cfg.eval, cfg.rollout)
        for eval_set in eval_sets:
            _check_prompts_fit(eval_set, engine, spec)
        # A refused resume fails before sampling. The code version is not checked here: during
        # training the run's session already decided on it, and every eval artefact records its own.
        lake.open_run(run_id, cfg.hash(), config_text=cfg.to_yaml(), allow_code_change=True)
        if verifier is None:
            verifier = stack.enter_context(Verifier(cfg.verifier, seed=cfg.run.seed))
        stored = StepRecords(lake, run_id, step)
        summaries = tuple(_evaluate_bench(eval_set, str(checkpoint), step, cfg, spec, engine, verifier, stored)
                          for eval_set in eval_sets)
    return EvalSummary(run_id, step, str(checkpoint), summaries)


def _check_run_and_step(run_id: str, step: int) -> None:
    """Where the records go, checked before the engine starts and anything is sampled: the
    lake would refuse them only at the first commit, after a run was created."""
    try:
        check_run_id(run_id)
        check_step(step)
    except StoreError as exc:
        raise EvalInputError(f"eval records: {exc}") from None


@contextlib.contextmanager
def _open_checkpoint(checkpoint: str | Path, cfg: OrealConfig) -> Iterator[RolloutEngine]:
    problem = model_dir_problem(checkpoint)  # a few bytes read, not a failed engine start
    if problem is not None:
        raise EvalInputError(f"checkpoint {checkpoint}: {problem}")
    try:
        engine = open_engine(checkpoint, cfg)
    except RolloutInputError as exc:
        raise EvalInputError(f"checkpoint {checkpoint}: {exc}") from None
    except Exception as exc:  # weights or config the loader rejects: say which checkpoint and why
        raise EvalInputError(f"checkpoint {checkpoint}: does not load ({type(exc).__name__}: {exc})") from exc
    with engine:
        yield engine


def _check_prompts_fit(eval_set: EvalSet, engine: RolloutEngine, spec: SamplingSpec) -> None:
    """Refuse before sampling anything if a problem cannot fit the model's context."""
    try:
        encode_prompts(engine.tokenizer, eval_set.prompts, spec, engine.context_length)
    except RolloutInputError as exc:
        raise EvalInputError(f"benchmark {eval_set.name!r}: {exc}") from None


def _evaluate_bench(eval_set: EvalSet, checkpoint: str, step: int, cfg: OrealConfig, spec: SamplingSpec,
                    engine: RolloutEngine, verifier: Verifier, stored: StepRecords) -> BenchSummary:
    finished = stored.finished_problems(checkpoint, eval_set.name, spec.n)
    todo = [p for p in eval_set.prompts if p.prompt_id not in finished]
    log.info("evaluating %s on %s: %d problems x %d sample(s)", checkpoint, eval_set.name, len(eval_set.prompts),
             spec.n)
    if finished:
        log.info("eval %s: %d of %d problems already committed, sampling %d", eval_set.name,
                 len(eval_set.prompts) - len(todo), len(eval_set.prompts), len(todo))
    sample_s = 0.0
    for start in range(0, len(todo), cfg.eval.commit_every):
        chunk = todo[start:start + cfg.eval.commit_every]
        began = time.perf_counter()
        records = _sample_and_grade(chunk, checkpoint, eval_set.name, spec, engine, verifier)
        sample_s += time.perf_counter() - began
        stored.append(checkpoint, eval_set.name, records)
    wanted = {p.prompt_id for p in eval_set.prompts}
    records = [r for r in stored.of(checkpoint, eval_set.name) if r.problem_id in wanted]
    return summarise_bench(records, bench=eval_set.name, checkpoint=checkpoint, step=step,
                           k=cfg.eval.pass_k or spec.n, metadata={p.prompt_id: p.metadata for p in eval_set.prompts},
                           breakdown_keys=cfg.eval.breakdown_keys, sampled_problems=len(todo), sample_s=sample_s)


def _sample_and_grade(prompts: Sequence[Prompt], checkpoint: str, bench: str, spec: SamplingSpec,
                      engine: RolloutEngine, verifier: Verifier) -> list[EvalRecord]:
    by_id = {p.prompt_id: p for p in prompts}
    samples = engine.generate(prompts, spec).samples
    verdicts = verifier.verify([VerifyItem.of(s, by_id[s.prompt_id]) for s in samples])
    return [EvalRecord(checkpoint=checkpoint, bench=bench, problem_id=s.prompt_id, sample_idx=s.sample_idx,
                       response=s.response, num_tokens=len(s.token_ids), finish_reason=s.finish_reason.value,
                       outcome=v.outcome.value, extracted_answer=v.extracted_answer, reward=v.reward)
            for s, v in zip(samples, verdicts, strict=True)]
