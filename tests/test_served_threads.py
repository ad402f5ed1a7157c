"""How the served app shares the CPU with its UNet worker (`concepts.torch_threads`): the worker takes
one torch thread while other requests are being served and every core when it is alone, and Python's
switch interval is short so the worker is not kept waiting for the interpreter after every op."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from concepts.torch_threads import CORES, SWITCH_INTERVAL_MS, WorkerThreads, requests_served, serving, short_turns


@pytest.fixture
def restore_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_short_turns_sets_the_apps_interval_or_the_one_asked_for(restore_interval, monkeypatch):
    monkeypatch.delenv("CONCEPT_LAB_SWITCH_INTERVAL_MS", raising=False)
    assert short_turns() == pytest.approx(SWITCH_INTERVAL_MS / 1000) == pytest.approx(sys.getswitchinterval())
    monkeypatch.setenv("CONCEPT_LAB_SWITCH_INTERVAL_MS", "0.5")
    assert short_turns() == pytest.approx(0.0005)
    for bad in ("nan", "-1", "1e9", "fast"):
        monkeypatch.setenv("CONCEPT_LAB_SWITCH_INTERVAL_MS", bad)
        assert short_turns() == pytest.approx(SWITCH_INTERVAL_MS / 1000), bad


def test_a_thread_that_lets_go_of_the_lock_gets_it_back_sooner_beside_busy_python(restore_interval):
    """What the setting is for: a thread that releases the interpreter lock often (as the UNet worker
    does around each torch op; here `time.sleep(0)`) gets through many more turns beside a thread
    running pure Python when the interval is short."""
    def turns_in(seconds: float) -> int:
        stop, count = threading.Event(), [0]

        def spin() -> None:
            while not stop.is_set():
                sum(i * i for i in range(500))

        other = threading.Thread(target=spin)
        other.start()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            time.sleep(0)
            count[0] += 1
        stop.set()
        other.join()
        return count[0]

    sys.setswitchinterval(0.005)
    slow = turns_in(0.5)
    sys.setswitchinterval(SWITCH_INTERVAL_MS / 1000)
    fast = turns_in(0.5)
    assert fast > 5 * slow, f"{fast} turns at {SWITCH_INTERVAL_MS} ms against {slow} at 5 ms"


def test_the_worker_takes_one_thread_while_others_are_served_and_every_core_once_calm(monkeypatch):
    monkeypatch.delenv("CONCEPT_LAB_WORKER_THREADS", raising=False)
    threads = WorkerThreads(calm_s=0.2)
    assert threads.now() == CORES  # nobody served: a test, the CLI
    with serving():
        assert requests_served() == 1 and threads.now() == CORES  # one student alone
        with serving():
            assert threads.now() == 1  # a second request: the other core is theirs
        assert threads.now() == 1  # not straight back: a class pauses between clicks
        time.sleep(0.25)
        assert threads.now() == CORES
    assert requests_served() == 0
    monkeypatch.setenv("CONCEPT_LAB_WORKER_THREADS", "1")
    assert threads.now() == 1
    monkeypatch.setenv("CONCEPT_LAB_WORKER_THREADS", "many")
    assert threads.now() == CORES


def test_a_served_handler_counts_as_served_while_it_runs_even_when_it_fails():
    """`ui.common.user_errors` counts a request thread's handler for the worker's choice, and stops
    counting it when it ends, by an error too; the main thread (tests, the CLI) is not counted."""
    from concepts.errors import InvalidInputError
    from ui.common import user_errors

    seen = []

    @user_errors
    def handler(fail: bool) -> None:
        seen.append(requests_served())
        if fail:
            raise InvalidInputError("prompt", "is empty")

    def in_a_request_thread(fail: bool) -> None:
        thread = threading.Thread(target=lambda: _swallow(handler, fail))
        thread.start()
        thread.join()

    in_a_request_thread(False)
    in_a_request_thread(True)
    handler(False)
    assert seen == [1, 1, 0] and requests_served() == 0


def _swallow(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the gr.Error a user would see
        pass
