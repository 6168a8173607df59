import pytest

from oreal_core.config import load_config
from oreal_core.train.trainer import learning_rates

PAPER = ["actor.freeze_steps=10", "actor.optim.warmup_steps=10", "actor.optim.lr=5e-7", "actor.optim.min_lr=1e-7",
         "token_rm.optim.warmup_steps=10", "token_rm.optim.lr=2e-6", "token_rm.optim.min_lr=4e-7",
         "run.total_steps=90"]


def test_reference_behaviour_spends_the_actor_warmup_during_the_freeze():
    cfg = load_config("tiny-cpu", PAPER)  # scheduler_advances_while_frozen defaults to true
    actor_first_update, _ = learning_rates(cfg, 10)
    assert actor_first_update == pytest.approx(5e-7)  # peak LR at the first actor update
    assert learning_rates(cfg, 0)[1] == pytest.approx(2e-7)  # the RM warms up from step 0
    assert learning_rates(cfg, 89)[0] == pytest.approx(1e-7, rel=1e-2)


def test_opt_out_starts_the_actor_warmup_at_its_first_update():
    cfg = load_config("tiny-cpu", [*PAPER, "actor.scheduler_advances_while_frozen=false"])
    assert learning_rates(cfg, 10)[0] == pytest.approx(5e-8)  # warm-up step 1 of 10
    assert learning_rates(cfg, 19)[0] == pytest.approx(5e-7)
    assert learning_rates(cfg, 89)[0] == pytest.approx(1e-7, rel=1e-2)
    assert learning_rates(cfg, 10)[1] == learning_rates(load_config("tiny-cpu", PAPER), 10)[1]  # RM unaffected
