"""Rollout-lake benchmark: step write and DuckDB queries, ours beside the raw baseline.

1. Step write: 1,024 samples with 512-token lists (token ids, log-probs), the shape of one
   OREAL iteration (64 prompts x 16 samples). Ours = build the table from Sample records
   (records.samples_table) + Lake.write (in-memory Parquet, sha256, staged write, atomic
   move, manifest); baseline = pyarrow.parquet.write_table of the same table to one file.
   Also Lake.write to a real S3 API (moto on 127.0.0.1) when moto is installed.
2. Query: a 1M-sample lake (samples + verdicts, 1,024 rows per step). Its token lists are
   32 long, not 512, so the lake fits this machine's disk and build time; the typical
   queries read only scalar columns, which Parquet stores apart from the lists. Ours =
   run_query's views (committed artefacts only, sandboxed connection, the duckdb 1.5.5
   statistics-propagation workaround); baseline = plain DuckDB read_parquet over a glob.

    .venv/bin/python benchmarks/lake.py [--samples 1000000] [--keep DIR]

3. Integrity: each query end to end (open the views, run it) with every artefact checked by
   size only, beside size + sha256 of the tables the query names (what ``oreal query`` does).

Last line: one JSON object with step_write_s, query_s (the SLOWEST typical query, the join
included), rows (DESIGN.md §8), plus the baselines, the median query, the load average and the integrity pair
(query_size_only_s, query_sha256_s: the slowest query end to end).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oreal_core.config import StoreConfig  # noqa: E402
from oreal_core.store import Lake, SamplingParams, integrity, samples_table  # noqa: E402
from oreal_core.store.query import run_query  # noqa: E402
from oreal_core.store.schemas import TABLES  # noqa: E402
from oreal_core.store.views import connect, tables_named  # noqa: E402
from oreal_core.types import FinishReason, Prompt, Sample  # noqa: E402

STEP = 1024
QUERIES = {
    "accuracy by step": "SELECT step, avg(correct::INT) AS acc, avg(reward) FROM verdicts GROUP BY step ORDER BY step",
    "length by step": "SELECT step, avg(num_tokens), quantile_cont(num_tokens, 0.9) FROM samples GROUP BY step ORDER BY step",
    "length by outcome (join)": "SELECT v.outcome, count(*), avg(s.num_tokens) FROM samples s "
                                "JOIN verdicts v USING (run_id, step, prompt_id, sample_idx) GROUP BY v.outcome",
    "one step's wrong answers": "SELECT prompt_id, sample_idx, extracted_answer FROM verdicts "
                                "WHERE step = 500 AND NOT correct ORDER BY prompt_id, sample_idx",
    "top-10 longest": "SELECT step, prompt_id, sample_idx, num_tokens FROM samples ORDER BY num_tokens DESC LIMIT 10",
}


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def step_records(rng: np.random.Generator, tokens: int) -> tuple[list[Sample], dict[str, Prompt]]:
    prompts = {f"p{i}": Prompt(f"p{i}", f"q{i}", str(i), f"<|im_start|>user\nq{i}<|im_end|>\n") for i in range(STEP // 16)}
    ids = rng.integers(0, 150_000, size=(STEP, tokens), dtype=np.int32)
    lps = -rng.random(size=(STEP, tokens), dtype=np.float32)
    samples = [Sample(f"p{i // 16}", i % 16, "x" * 1500, tuple(range(120)), tuple(ids[i].tolist()),
                      tuple(lps[i].tolist()), FinishReason.STOP) for i in range(STEP)]
    return samples, prompts


def bench_step_write(root: Path, s3_endpoint: str | None) -> dict[str, float]:
    rng = np.random.default_rng(0)
    samples, prompts = step_records(rng, 512)
    sampling = SamplingParams(1.0, 0.9, 14000, 0)
    lake = Lake.open(StoreConfig(uri=str(root / "write-lake")))
    lake.open_run("bench", "h")
    steps = iter(range(10**6))

    def ours():
        return lake.write("bench", next(steps), "samples", samples_table("bench", samples, prompts, sampling))

    table = samples_table("bench", samples, prompts, sampling)
    out: dict[str, float] = {}
    out["step_write_s"], ref = timed(ours, 5)
    out["table_build_s"], _ = timed(lambda: samples_table("bench", samples, prompts, sampling), 5)
    out["lake_write_only_s"], _ = timed(lambda: lake.write("bench", next(steps), "samples", table), 5)
    out["raw_write_s"], _ = timed(lambda: pq.write_table(table, root / f"raw-{uuid.uuid4().hex}.parquet",
                                                         compression="zstd"), 5)
    out["step_mb"] = (root / "write-lake" / "runs" / "bench" / "step=0" / "samples.parquet").stat().st_size / 1e6
    if s3_endpoint:
        s3 = Lake.open(StoreConfig(uri=f"s3://bench/{uuid.uuid4().hex}", endpoint_url=s3_endpoint))
        s3.open_run("bench", "h")
        out["step_write_s3_s"], _ = timed(lambda: s3.write("bench", next(steps), "samples", table), 3)
    return out


def big_step_tables(rng: np.random.Generator, run_id: str, tokens: int) -> tuple[pa.Table, pa.Table]:
    """One step of synthetic rows built column-wise (the fast path: Lake.write takes tables)."""
    n = STEP
    lengths = rng.integers(50, 4000, size=n, dtype=np.int32)
    flat_ids = pa.array(rng.integers(0, 150_000, size=n * tokens, dtype=np.int32))
    flat_lp = pa.array(-rng.random(size=n * tokens, dtype=np.float32))
    offsets = pa.array(np.arange(0, (n + 1) * tokens, tokens, dtype=np.int32))
    prompt_ids = pa.array([f"p{i // 16}" for i in range(n)])
    idx = pa.array(np.arange(n, dtype=np.int32) % 16)
    const = lambda v, t: pa.array(np.full(n, v), t)  # noqa: E731
    samples = pa.table({
        "run_id": pa.array([run_id] * n), "prompt_id": prompt_ids, "sample_idx": idx,
        "policy_version": const(0, pa.int32()), "temperature": const(1.0, pa.float32()),
        "top_p": const(0.9, pa.float32()), "max_new_tokens": const(4096, pa.int32()), "seed": const(0, pa.int64()),
        "prompt": pa.array(["<|im_start|>user\nSolve ...<|im_end|>"] * n), "gold_answer": pa.array(["42"] * n),
        "response": pa.array(["... so the answer is \\boxed{42}."] * n),
        "prompt_token_ids": pa.ListArray.from_arrays(offsets, flat_ids),
        "token_ids": pa.ListArray.from_arrays(offsets, flat_ids), "logprobs": pa.ListArray.from_arrays(offsets, flat_lp),
        "num_tokens": pa.array(lengths), "finish_reason": pa.array(np.where(lengths > 3900, "length", "stop")),
        "gen_latency_s": const(1.5, pa.float32()),
    })
    correct = rng.random(n) < 0.4
    verdicts = pa.table({
        "run_id": pa.array([run_id] * n), "prompt_id": prompt_ids, "sample_idx": idx,
        "outcome": pa.array(np.where(correct, "correct", "incorrect")), "correct": pa.array(correct),
        "reward": pa.array(np.where(correct, 1.0, -1.0).astype(np.float32)), "source": pa.array(["rule"] * n),
        "rule_outcome": pa.nulls(n, pa.string()), "extracted_answer": pa.array(["42"] * n),
        "judge_reply": pa.nulls(n, pa.string()), "reason": pa.array(["math-verify"] * n),
    })
    return samples.cast(TABLES["samples"].schema), verdicts.cast(TABLES["verdicts"].schema)


def build_lake(root: Path, total: int) -> tuple[StoreConfig, int, float]:
    cfg = StoreConfig(uri=str(root / "big-lake"))
    lake = Lake.open(cfg)
    lake.open_run("big", "h")
    rng = np.random.default_rng(1)
    steps = -(-total // STEP)
    start = time.perf_counter()
    for step in range(steps):
        samples, verdicts = big_step_tables(rng, "big", 32)
        lake.write("big", step, "samples", samples)
        lake.write("big", step, "verdicts", verdicts)
        if step % 100 == 0:
            print(f"  built step {step}/{steps} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return cfg, steps * STEP, time.perf_counter() - start


def bench_queries(cfg: StoreConfig) -> tuple[list[tuple[str, float, float]], float, float]:
    root = cfg.uri
    raw = duckdb.connect()
    for table in ("samples", "verdicts"):
        raw.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{root}/runs/*/step=*/{table}.parquet', "
                    "hive_partitioning = true, hive_types = {'step': BIGINT})")
    connect_s, con = timed(lambda: connect(Lake.open(cfg)), 1)
    rows = []
    for name, sql in QUERIES.items():
        ours_s, _ = timed(lambda sql=sql: con.sql(sql).fetchall())
        raw_s, _ = timed(lambda sql=sql: raw.sql(sql).fetchall())
        rows.append((name, ours_s, raw_s))
    cli_s, _ = timed(lambda: run_query(cfg, QUERIES["accuracy by step"], "csv"))
    return rows, connect_s, cli_s


def bench_integrity(cfg: StoreConfig) -> list[tuple[str, float, float]]:
    """A query end to end (open the views + run it) as ``oreal query`` does it in a fresh
    process: every artefact checked by size only (what the views did before they checked
    manifests at all, plus the manifest reads) beside size + sha256 of the tables the query
    names (integrity.py). The in-process hash cache is emptied before each run."""
    lake = Lake.open(cfg)

    def once(sql: str, hashed) -> float:
        integrity._digests.clear()
        start = time.perf_counter()
        con = connect(lake, hashed)
        try:
            con.sql(sql).fetchall()
        finally:
            con.close()
        return time.perf_counter() - start

    rows = []
    for name, sql in QUERIES.items():  # alternated, so a change in the machine's load hits both alike
        pairs = [(once(sql, ()), once(sql, tables_named(sql))) for _ in range(5)]
        rows.append((name, statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="size of the query lake")
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    s3_endpoint, server = start_moto()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        write = bench_step_write(root, s3_endpoint)
        if server:
            server.stop()
        cfg, rows, build_s = build_lake(root, args.samples)
        query_rows, connect_s, cli_s = bench_queries(cfg)
        checked = bench_integrity(cfg)
    print_tables(write, query_rows, rows, build_s, connect_s, cli_s)
    print_integrity(checked)
    slowest = max(r[1] for r in query_rows)
    typical = statistics.median(r[1] for r in query_rows)
    print(json.dumps({"step_write_s": round(write["step_write_s"], 4), "query_s": round(slowest, 4), "rows": rows,
                      "query_median_s": round(typical, 4), "load_avg": round(os.getloadavg()[0], 2),
                      "raw_write_s": round(write["raw_write_s"], 4), "lake_write_only_s": round(write["lake_write_only_s"], 4),
                      "step_write_s3_s": round(write.get("step_write_s3_s", float("nan")), 4),
                      "raw_query_s": round(max(r[2] for r in query_rows), 4), "views_connect_s": round(connect_s, 4),
                      "cli_query_s": round(cli_s, 4), "lake_build_s": round(build_s, 1),
                      "query_size_only_s": round(max(r[1] for r in checked), 4),
                      "query_sha256_s": round(max(r[2] for r in checked), 4)}))


def start_moto():
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None, None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    return endpoint, server


def print_tables(write, query_rows, rows, build_s, connect_s, cli_s) -> None:
    print(f"\nStep write: {STEP} samples x 512 tokens ({write['step_mb']:.1f} MB Parquet), median of 5")
    print(f"  {'ours: records -> table -> Lake.write':42s} {write['step_write_s']:8.3f} s")
    print(f"  {'  of which samples_table()':42s} {write['table_build_s']:8.3f} s")
    print(f"  {'ours: Lake.write of a built table':42s} {write['lake_write_only_s']:8.3f} s")
    print(f"  {'baseline: pq.write_table to one file':42s} {write['raw_write_s']:8.3f} s")
    if "step_write_s3_s" in write:
        print(f"  {'ours: Lake.write to S3 (moto, 127.0.0.1)':42s} {write['step_write_s3_s']:8.3f} s")
    print(f"\nQueries over {rows:,} samples ({rows // STEP} steps; lake built in {build_s:.0f} s), median of 3")
    print(f"  {'query':28s} {'ours (views)':>13s} {'raw glob':>10s}")
    for name, ours, raw in query_rows:
        print(f"  {name:28s} {ours:12.3f}s {raw:9.3f}s")
    print(f"  opening the lake's views (listing + CREATE VIEW): {connect_s:.3f} s")
    print(f"  run_query end to end (open + accuracy by step):   {cli_s:.3f} s\n")


def print_integrity(checked) -> None:
    print("Integrity: open the views + run the query, fresh hash cache, median of 5 alternated")
    print(f"  {'query':28s} {'size only':>10s} {'+ sha256':>10s}")
    for name, before, after in checked:
        print(f"  {name:28s} {before:9.3f}s {after:9.3f}s")
    print()


if __name__ == "__main__":
    main()
