"""The wall-clock budget: the planned steps follow the measured pace, up to what the epochs allow."""
from types import SimpleNamespace

from recplugin.training import distributed as dist_
from recplugin.training.train import FIT_AT_STEPS, RunState, fit_to_budget


def test_a_later_refit_grows_the_plan_when_the_first_steps_were_slow_but_never_past_the_epochs():
    scheduler = SimpleNamespace(lr_lambdas=[SimpleNamespace(total=1000)])
    context = dist_.setup("cpu")
    run = RunState(steps_done=FIT_AT_STEPS[0], seconds=20.0, planned_steps=1000, step_cap=1000)  # 1 s/step at first
    fit_to_budget(run, scheduler, 300.0, context)
    assert run.planned_steps == scheduler.lr_lambdas[0].total == 300
    run.steps_done, run.seconds = FIT_AT_STEPS[1], 100.0  # 0.5 s/step over more batches
    fit_to_budget(run, scheduler, 300.0, context)
    assert run.planned_steps == scheduler.lr_lambdas[0].total == 600
    run.seconds = 10.0  # 0.05 s/step: the budget holds 6,000 steps, the epochs 1,000
    fit_to_budget(run, scheduler, 300.0, context)
    assert run.planned_steps == 1000
    run.seconds = 10_000.0  # far slower than planned: stop now, not before the steps already taken
    fit_to_budget(run, scheduler, 300.0, context)
    assert run.planned_steps == FIT_AT_STEPS[1]
