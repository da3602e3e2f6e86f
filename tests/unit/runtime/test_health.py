from arcus.runtime.health import HealthWatch


def test_a_counter_that_moves_is_a_problem_for_the_window_then_clears():
    h = HealthWatch(window=60)
    h.observe(0, {"audit_dropped": 0, "fds_low": 0})
    assert h.problems(0) == []
    h.observe(1, {"audit_dropped": 5, "fds_low": 0})
    h.observe(2, {"audit_dropped": 7, "fds_low": 0})
    [p] = h.problems(2)
    assert (p["problem"], p["count"], p["seconds_ago"]) == ("audit_dropped", 7, 0)
    assert "arcus audit stats" in p["detail"]
    assert [q["problem"] for q in h.problems(62)] == ["audit_dropped"]
    assert h.problems(62.5) == []


def test_counts_already_there_at_the_first_look_are_not_a_problem():
    h = HealthWatch()
    h.observe(0, {"audit_dropped": 1000})
    h.observe(1, {"audit_dropped": 1000})
    assert h.problems(1) == []


def test_a_new_episode_counts_afresh():
    h = HealthWatch(window=10)
    h.observe(0, {"records_dropped": 0})
    h.observe(1, {"records_dropped": 3})
    h.observe(100, {"records_dropped": 4})
    [p] = h.problems(100)
    assert p["count"] == 1


def test_observe_names_the_problems_that_start_once_per_episode() -> None:
    from arcus.runtime.health import HealthWatch

    h = HealthWatch(window=60.0)
    assert h.observe(0.0, {"audit_dropped": 0, "fds_low": 0}) == []
    assert h.observe(1.0, {"audit_dropped": 3, "fds_low": 0}) == ["audit_dropped"]
    assert h.observe(2.0, {"audit_dropped": 5, "fds_low": 1}) == ["fds_low"]  # audit's episode goes on
    assert h.observe(100.0, {"audit_dropped": 6, "fds_low": 1}) == ["audit_dropped"]  # a new episode
