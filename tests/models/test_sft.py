"""SFT warm-up on the default (tiny-cpu) task: lands in the band, is cached, and loads; the
shipped configs find the policy shipped with the code (benchmarks/sft_rebuild.py rebuilds
it from scratch and compares)."""

import json
import time
from pathlib import Path

import pytest

from oreal_core.config import load_config
from oreal_core.models.sft import REPORT_FILE, run_sft, sft_cache_key
from oreal_core.models.shipped import shipped_policy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(sft_cache_dir):
    # the session's shared cache: whichever test needs the tiny policy first trains it
    return load_config("tiny-cpu", [f"sft.cache_dir={sft_cache_dir}"])


@pytest.fixture(scope="module")
def report(cfg):
    return run_sft(cfg)


def test_sft_lands_in_the_useful_band_on_held_out_problems(report, cfg):
    assert 0.2 <= report.heldout_pass1 <= 0.6, report
    assert report.heldout_size == cfg.data.synthetic.heldout_size == 500
    assert report.checks[-1][1] >= cfg.sft.target_pass1 or report.steps == cfg.sft.max_steps
    saved = json.loads((Path(report.policy_dir) / REPORT_FILE).read_text())
    assert saved["heldout_pass1"] == report.heldout_pass1 and saved["cache_key"] == sft_cache_key(cfg)


def test_second_run_reuses_the_cached_policy(report, cfg):
    start = time.perf_counter()
    again = run_sft(cfg)
    assert again.cached and time.perf_counter() - start < 5
    assert (again.policy_dir, again.heldout_pass1, again.steps) == (report.policy_dir, report.heldout_pass1, report.steps)


def test_cache_key_follows_what_shapes_the_policy(cfg):
    assert sft_cache_key(load_config("tiny-cpu", ["sft.cache_dir=/elsewhere"])) == sft_cache_key(cfg)
    assert sft_cache_key(load_config("tiny-cpu", ["data.synthetic.max_value=50"])) != sft_cache_key(cfg)
    assert sft_cache_key(load_config("tiny-cpu", ["sft.lr=0.001"])) != sft_cache_key(cfg)


@pytest.mark.parametrize("config", ["tiny-cpu", "demo-cpu"])
def test_the_shipped_configs_find_their_policy_shipped(config):
    # Fails when the recipe's code or settings changed without `oreal sft --ship`: every fresh
    # clone would then spend minutes on the warm-up again.
    name = f"tiny-{sft_cache_key(load_config(config, []))}"
    assert shipped_policy(name) is not None, f"no shipped {name}: run `oreal sft --config {config} --ship`, commit it"


def test_a_cache_miss_without_a_shipped_policy_trains_and_commits(tmp_path):
    # 20 steps (other settings: another key, nothing shipped for it). The full warm-up is
    # benchmarks/sft_rebuild.py's, which also compares it with the shipped policy.
    cfg = load_config("tiny-cpu", [f"sft.cache_dir={tmp_path}", "sft.max_steps=20", "sft.check_every=20",
                                   "sft.check_size=10"])
    built = run_sft(cfg)
    assert not built.cached and built.steps == 20 and built.checks[-1][0] == 20
    assert Path(built.policy_dir) == tmp_path / f"tiny-{sft_cache_key(cfg)}"
    assert json.loads((Path(built.policy_dir) / REPORT_FILE).read_text())["steps"] == 20
    assert run_sft(cfg).cached
