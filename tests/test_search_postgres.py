"""A search shared by two submitit array tasks through a real PostgreSQL server (started
by a fixture on 127.0.0.1), and a worker killed with SIGKILL whose trial the heartbeat
brings back."""

import pytest
from search_cases import TINY, kill_a_worker_mid_trial, postgres, shared_search, start_search, storage_of

# its tests share fixtures trained once for the module: one worker runs them all
pytestmark = pytest.mark.xdist_group("test_search_postgres")

__all__ = ["postgres"]  # the fixture, used by name


def test_two_submitit_array_tasks_share_one_study_on_postgresql_within_its_budget_and_prune(
        postgres, tmp_path):
    trials = shared_search(tmp_path / "shared_pg", *storage_of("postgresql", postgres),
                           "hydra/launcher=submitit_local")
    jobs = {t["worker"]["job"] for t in trials}
    assert None not in jobs and len(jobs) == 2  # two array tasks, each a submitit job


def test_a_killed_workers_trial_is_retried_on_postgresql(postgres, tmp_path):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    where = tmp_path / "killed_pg"
    search = start_search([*TINY, *storage_of("postgresql", postgres), "search.trials=2",
                           "algo.iterations=12", "search.pruner=none", f"search.dir={where}"])
    killed = kill_a_worker_mid_trial(postgres, where)
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err
    study = optuna.load_study(study_name="killed_pg", storage=postgres)
    trials = study.get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state.name == "FAIL"
    retried = [t for t in trials if Retry.retried_trial_number(t) == killed]
    assert len(retried) == 1 and retried[0].params == by_number[killed].params
    assert retried[0].state.name == "COMPLETE"
    # the budget: two trials that count, the failed one beside them
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2 and len(trials) == 3


