"""The deadline sweeper (``Shared.sweep``): an idle bound fires after that much silence, counted
from the last bytes the sweeps saw move, never from bytes that moved before the bound was set."""

from __future__ import annotations

from types import SimpleNamespace

from arcus.serve.context import Shared, Tracked


class Conn(Tracked):
    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.track(None, "s", "default")  # type: ignore[arg-type]
        self.fired = 0

    def on_timeout(self) -> None:
        self.fired += 1
        self.deadline = 0.0


def sweeper(conn: Conn):
    shared = SimpleNamespace(connections={1: conn}, pool=SimpleNamespace(expire=lambda now: None))
    return lambda now: Shared.sweep(shared, now)  # type: ignore[arg-type]


def test_an_idle_bound_set_after_bytes_moved_fires_after_its_window():
    conn = Conn()
    sweep = sweeper(conn)
    conn.bytes_up = 300  # a request head and the first body bytes, then silence
    sweep(0.5)
    # the request body phase sets a 5 s idle bound (as the HTTP machine does: two attribute writes)
    conn.deadline, conn.idle_window = 1.0 + 5.0, 5.0
    for now in (1.5, 2.5, 3.5, 4.5, 5.5):
        sweep(now)
    assert conn.fired == 0
    sweep(6.5)  # 5 s without a byte: the bound has passed
    assert conn.fired == 1


def test_bytes_before_the_first_sweep_of_a_bound_do_not_double_it():
    conn = Conn()
    sweep = sweeper(conn)
    conn.bytes_up = 300
    conn.deadline, conn.idle_window = 5.0, 5.0  # set before any sweep looked at the connection
    for now in (0.5, 1.5, 2.5, 3.5, 4.5):
        sweep(now)
    sweep(5.5)
    assert conn.fired == 1


def test_bytes_that_keep_moving_move_the_bound_on():
    conn = Conn()
    sweep = sweeper(conn)
    conn.deadline, conn.idle_window = 5.0, 5.0
    for now in (0.5, 1.5, 2.5, 3.5, 4.5):
        sweep(now)
    conn.bytes_down += 10  # within the last second of the window
    sweep(5.5)
    assert conn.fired == 0 and conn.deadline == 10.5
    for now in (6.5, 7.5, 8.5, 9.5):
        sweep(now)
    assert conn.fired == 0
    sweep(10.5)
    assert conn.fired == 1


def test_a_plain_deadline_fires_whatever_moved():
    conn = Conn()
    sweep = sweeper(conn)
    conn.deadline = 2.0  # client_header: the whole head within it, bytes or not
    conn.bytes_up = 10
    sweep(1.5)
    conn.bytes_up = 20
    sweep(2.5)
    assert conn.fired == 1


class Held(Conn):
    """A connection whose client is still to take ``held`` bytes written for it."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        super().__init__()
        self.held = 0

    def unsent(self) -> int:
        return self.held


def test_a_client_taking_slowly_what_is_held_for_it_is_not_idle():
    conn = Held()
    sweep = sweeper(conn)
    conn.bytes_down, conn.held = 4_000_000, 3_000_000  # the upstream's reading stopped: the client is full
    sweep(0.5)
    conn.deadline, conn.idle_window = 5.0, 5.0
    for now in (1.5, 2.5, 3.5, 4.5):
        sweep(now)
    sweep(5.5)  # the bound ran out, no byte moved: a first look at what is held gives one more window
    assert conn.fired == 0
    for second in range(6, 40):  # the client drains 10 KB a second: never idle
        conn.held -= 10_000
        sweep(second + 0.5)
    assert conn.fired == 0
    stalled_at = 40.5
    for now in (stalled_at, stalled_at + 3, stalled_at + 6, stalled_at + 9, stalled_at + 12):
        sweep(now)  # it stops taking anything: the bound fires once a window passes with nothing gone
    assert conn.fired == 1


def test_nothing_held_for_the_client_leaves_the_bound_to_fire():
    conn = Held()
    sweep = sweeper(conn)
    conn.deadline, conn.idle_window = 5.0, 5.0
    for now in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5):
        sweep(now)
    assert conn.fired == 1  # the client has everything: the upstream's silence is the upstream's
