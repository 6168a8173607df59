import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oreal_core.data.benchmarks import BOXED_INSTRUCTION, benchmark_names, load_benchmark
from oreal_core.data.records import PromptDataError, read_prompt_records

SHARED = "/work/shared/data"


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_oreal_format_jsonl_with_pass_rate_and_blank_lines_counted(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [
        {"question": "1+1?", "gold_answer": "2", "pass_rate": 0.5},
        "",
        {"question": "2+2?", "gold_answer": 4, "subject": "arith"},
    ])
    records, report = read_prompt_records(path)
    assert [(r.question, r.gold_answer, r.pass_rate) for r in records] == [("1+1?", "2", 0.5), ("2+2?", "4", None)]
    assert records[1].source == f"{path}:3" and records[1].metadata == (("subject", "arith"),)
    assert report.as_dict() == {"path": str(path), "rows": 3, "kept": 2, "dropped": {"blank_lines": 1}}


@pytest.mark.parametrize(("row", "message"), [
    ({"gold_answer": "2"}, "missing field 'question' or 'problem'"),
    ({"question": "  ", "gold_answer": "2"}, "field 'question' is empty"),
    ({"question": "q", "gold_answer": "2", "pass_rate": 1.5}, r"pass_rate=1.5 must be a number in \[0, 1\]"),
    ({"question": "q", "gold_answer": "2", "pass_rate": "high"}, "pass_rate='high'"),
    ({"question": ["q"], "answer": "2"}, "field 'question' must be a string"),
    ({"question": "q", "answer": "so #### "}, "nothing after '####'"),
    ('{"question": "q", "answer": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    pytest.param('{"question": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply",
                 id="deeply-nested"),
    ({"question": "x\ud800?", "gold_answer": "2"}, r"field 'question' is not valid Unicode \(lone surrogate"),
    ({"question": "q", "gold_answer": "\udc00"}, r"field 'gold_answer' is not valid Unicode \(lone surrogate"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok", "gold_answer": "1"}, row])
    with pytest.raises(PromptDataError, match=f"{path}:2: .*{message}"):
        read_prompt_records(path)


def test_shared_benchmark_formats_load_with_gsm8k_gold_extracted():
    gsm, report = read_prompt_records(f"{SHARED}/benchmarks/gsm8k_test.jsonl")
    assert report.rows == report.kept == 1319
    assert gsm[0].gold_answer == "18" and gsm[0].question.startswith("Janet")
    assert all("####" not in r.gold_answer and r.gold_answer for r in gsm)
    math500, _ = read_prompt_records(f"{SHARED}/benchmarks/math500.jsonl")
    assert len(math500) == 500 and math500[0].gold_answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_packaged_benchmarks_match_the_shared_copies():
    assert {"math500", "gsm8k_test", "aime24", "aime25", "amc2023", "minervamath", "olympiadbench"} <= set(benchmark_names())
    packaged = load_benchmark("math500", strip_instruction=True, limit=5)
    assert len(packaged) == 5 and all(BOXED_INSTRUCTION not in r.question for r in packaged)
    assert load_benchmark("aime24")[0].question.endswith(BOXED_INSTRUCTION)
    with pytest.raises(PromptDataError, match="not packaged; known"):
        load_benchmark("nope")


def test_gsm8k_thousands_separator_is_removed(tmp_path):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "a lot\n#### 1,600"}])
    assert read_prompt_records(path)[0][0].gold_answer == "1600"


def test_parquet_rows_and_malformed_parquet_row(tmp_path):
    good = tmp_path / "p.parquet"
    pq.write_table(pa.table({"problem": ["a?", "b?"], "answer": ["1", "2"]}), good)
    assert [r.gold_answer for r in read_prompt_records(good)[0]] == ["1", "2"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?"], "gold_answer": ["1", ""]}), bad)
    with pytest.raises(PromptDataError, match=f"{bad}:2: field 'gold_answer' is empty"):
        read_prompt_records(bad)


def test_hf_datasets_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"question": ["x?", "y?"], "gold_answer": ["1", "2"], "pass_rate": [0.25, 0.75]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    records, report = read_prompt_records(tmp_path / "ds")
    assert [r.pass_rate for r in records] == [0.25, 0.75] and report.kept == 2
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(PromptDataError, match=r"DatasetDict; point data.prompts at one split: \['train'\]"):
        read_prompt_records(tmp_path / "dd")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(PromptDataError, match="no such file"):
        read_prompt_records(tmp_path / "none.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(PromptDataError, match="unknown prompt file type '.csv'"):
        read_prompt_records(tmp_path / "x.csv")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PromptDataError, match="no prompt rows"):
        read_prompt_records(tmp_path / "empty.jsonl")


def test_non_utf8_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "ok", "gold_answer": "1"}\n{"question": "caf\xe9?", "gold_answer": "2"}\n')
    with pytest.raises(PromptDataError, match=rf"^{path}:2: not UTF-8 text \(byte 18 of the line\)$"):
        read_prompt_records(path)


def test_every_bad_row_is_found_and_the_list_is_capped(tmp_path):
    rows = [{"question": "ok", "gold_answer": "1"}, {"gold_answer": "2"}, "{oops", {"question": "q"}]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows * 3)
    with pytest.raises(PromptDataError) as raised:
        read_prompt_records(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:2: missing field 'question' or 'problem'")
    assert f"{path}:3: not valid JSON" in message and f"{path}:4: missing field 'answer'" in message
    assert message.count(f"{path}:") == 5 and message.endswith(f"; ... 4 more (9 bad rows in {path})")
    assert "\n" not in message
