from oreal_core.config import load_config
from oreal_core.rollout import SamplingSpec


def test_specs_follow_the_config():
    cfg = load_config("tiny-cpu", ["rollout.top_k=5", "rollout.seed=9"])
    spec = SamplingSpec.from_rollout(cfg.rollout)
    assert (spec.n, spec.temperature, spec.top_p, spec.top_k, spec.max_new_tokens, spec.max_length, spec.seed) == (
        8, 1.0, 0.9, 5, 96, 256, 9)
    greedy = SamplingSpec.from_eval(cfg.eval, cfg.rollout)
    assert greedy.is_greedy and greedy.n == 1 and greedy.stop_word == "<|im_end|>"


def test_prompt_seeds_are_stable_and_distinct():
    spec = SamplingSpec.greedy(8, 64, "<|im_end|>")
    assert spec.prompt_seed("a") == spec.prompt_seed("a") != spec.prompt_seed("b")
    assert 0 <= spec.prompt_seed("a") < 2**31
