"""Batching across users: requests that arrive together share UNet calls, and every user still gets
the images they would get alone (within 1/255 per pixel: batched matrix products may round
differently on the CPU; the test reports how many pixels differ at all). A bad request fails alone.
Requests with hooks (capture, steering, weight edits) handed over as factories join the batch and act
on their own rows; a caller whose hooks are already active around the call runs alone."""

from __future__ import annotations

import contextvars
import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from concepts.batching import GenerationBatcher, batched_generate
from concepts.edit import AblationHooks
from concepts.edit.checks import random_plan
from concepts.errors import ConceptLabError
from concepts.generation import SHARED_PIPELINES
from concepts.hooks import BlockEdit, BlockHooks
from concepts.registry import load_registry
from concepts.sampling import GenerationRequest, generate
from concepts.steps import StepWindow

PROMPTS = ["a red circle", "a large blue square at the top left", "a small green striped star on a black background",
           "a yellow triangle", "a purple dotted cross on the right", "an orange circle in the center"]


@pytest.fixture(scope="module")
def toy():
    world = load_registry().get("toy-shapes")
    return world, SHARED_PIPELINES.get(world, "cpu")


def request(world, prompt: str, seed: int) -> GenerationRequest:
    d = world.defaults
    return GenerationRequest(prompt, seed=seed, steps=10, guidance=d.guidance, height=d.height, width=d.width)


def together(batcher: GenerationBatcher, pipe, requests: list[GenerationRequest], factories: list | None = None) -> list:
    """Every request (with its hooks factory, if any) from its own thread, released at once, as a
    class's clicks arrive."""
    results, start = [None] * len(requests), threading.Barrier(len(requests))

    def user(i: int) -> None:
        start.wait()
        try:
            results[i] = batcher.generate(pipe, requests[i], hooks=factories[i] if factories else None)
        except ConceptLabError as exc:
            results[i] = exc

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_users_batched_together_get_their_solo_images(toy):
    world, pipe = toy
    requests = [request(world, p, seed=100 + i) for i, p in enumerate(PROMPTS)]
    solo = [np.asarray(generate(pipe, r).images[0], dtype=int) for r in requests]
    batcher = GenerationBatcher(max_batch=8, wait_s=0.2)
    results = together(batcher, pipe, requests)
    assert max(batcher.batches) > 1, f"no batch formed: {batcher.batches}"
    changed = 0
    for alone, result in zip(solo, results):
        shared = np.asarray(result.images[0], dtype=int)
        assert np.abs(shared - alone).max() <= 1, "a batched image differs from the solo one by more than 1/255"
        changed += int((shared != alone).sum())
    print(f"pixels differing by 1/255: {changed} of {sum(a.size for a in solo)}")


def test_the_batch_log_says_what_each_shared_step_held_and_how_long_it_took(toy, tmp_path, monkeypatch):
    """$CONCEPT_LAB_BATCH_LOG (read by the classroom benchmark): one line per shared UNet step, with
    every request's images and steps, whether it had hooks and, at its first step, how long it waited;
    nothing is written without it."""
    world, pipe = toy
    log = tmp_path / "batches.jsonl"
    together(GenerationBatcher(wait_s=0.2), pipe, [request(world, p, seed=i) for i, p in enumerate(PROMPTS[:3])])
    assert not log.exists()
    monkeypatch.setenv("CONCEPT_LAB_BATCH_LOG", str(log))
    batcher = GenerationBatcher(wait_s=0.2)
    together(batcher, pipe, [request(world, p, seed=i) for i, p in enumerate(PROMPTS[:3])])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [len(line["jobs"]) for line in lines] == batcher.batches
    assert sum(job["images"] for line in lines for job in line["jobs"]) == 3 * 10, "each of 3 images was not logged at each of its 10 steps"
    firsts = [job for line in lines for job in line["jobs"] if "waited" in job]
    assert len(firsts) == 3 and all(0 <= job["waited"] < 60 for job in firsts)
    for line in lines:
        assert line["steps"] == 1 and line["end"] > line["start"]
        assert all(not job["hooks"] and job["steps"] == 10 for job in line["jobs"])


def test_a_bad_request_fails_alone_and_the_others_are_served(toy):
    world, pipe = toy
    good = [request(world, p, seed=7) for p in PROMPTS[:3]]

    class Broken(GenerationRequest):  # fails inside sampling, as a corrupt request would
        @property
        def prompts(self):
            raise ConceptLabError("this request is broken")

    bad = Broken("a red circle", seed=1, steps=10, guidance=4.0, height=64, width=64)
    results = together(GenerationBatcher(wait_s=0.2), pipe, [*good, bad])
    assert isinstance(results[-1], ConceptLabError)
    assert all(not isinstance(r, Exception) and len(r.images) == 1 for r in results[:3])


def test_a_request_with_its_own_weight_edit_runs_alone(toy):
    world, pipe = toy
    r = request(world, PROMPTS[0], seed=3)
    plain = generate(pipe, r).pixels
    with AblationHooks(pipe.unet, random_plan(pipe.unet, 20_000, seed=1)):
        edited = batched_generate(pipe, r).pixels  # the edit lives in this thread: it must apply
    assert (edited - plain).abs().max() > 1 / 255
    assert torch.equal(generate(pipe, r).pixels, plain)  # and is gone after


MID = "mid_block.attentions.0"


def hooks_of(pipe, kind: str, made: list):
    """A factory of one request's hooks, as the panels build them; `made` keeps every object built."""
    def edit(step, read):
        return read + 3.0  # a strong steering-like push on the cond rows

    def overflow(step, read):
        return read * float("inf")  # an edit that blows up, as a huge strength would

    def factory():
        hooks = {
            "capture": lambda: [BlockHooks(pipe.unet, capture=[MID])],
            "steer": lambda: [BlockHooks(pipe.unet, edits=[BlockEdit(MID, edit, StepWindow(0, 9))])],
            "erase": lambda: [AblationHooks(pipe.unet, random_plan(pipe.unet, 20_000, seed=1))],
            "overflow": lambda: [BlockHooks(pipe.unet, edits=[BlockEdit(MID, overflow, StepWindow(0, 9))])],
            "plain": lambda: [],
        }[kind]()
        made.append(hooks)
        return hooks

    return factory


def test_requests_with_hooks_share_a_batch_and_each_gets_its_solo_result(toy):
    """Explore's capture and a steering edit join plain generations in one UNet batch, an erase's
    weight edit rides beside them in its own; each acts on its own rows only, so every image is its solo image (within 1/255) and
    every capture is the solo capture."""
    world, pipe = toy
    kinds = ["capture", "steer", "plain", "erase", "capture", "plain"]
    requests = [request(world, p, seed=200 + i) for i, p in enumerate(PROMPTS)]
    solo_made: list[list] = [[] for _ in kinds]
    solo = [GenerationBatcher().generate(pipe, r, hooks=hooks_of(pipe, k, m)) for r, k, m in zip(requests, kinds, solo_made)]
    plain = [generate(pipe, r).pixels for r in requests]
    batcher, made = GenerationBatcher(max_batch=8, wait_s=0.3), [[] for _ in kinds]
    results = together(batcher, pipe, requests, [hooks_of(pipe, k, m) for k, m in zip(kinds, made)])
    # the erase's weight edit sits inside the blocks: it rides in its own group, the rest share calls
    assert max(batcher.batches) == len(requests) - 1, f"the requests did not share one batch: {batcher.batches}"
    for kind, alone, shared, untouched in zip(kinds, solo, results, plain):
        assert not isinstance(shared, Exception), shared
        assert (shared.pixels - alone.pixels).abs().max() <= 1 / 255 + 1e-6, f"{kind}: the shared image is not the solo one"
        edited = (shared.pixels - untouched).abs().max()
        assert (edited > 0.05) == (kind in ("steer", "erase")), f"{kind}: edited by {edited:.3f} (only steer and erase should change)"
    for kind, alone, shared in zip(kinds, solo_made, made):
        if kind != "capture":
            continue
        alone, shared = alone[-1][0].captures[MID], shared[-1][0].captures[MID]
        assert len(shared) == len(alone) == 10
        for a, s in zip(alone, shared):
            assert s.cond.shape == a.cond.shape and s.cond.shape[0] == 1
            assert torch.allclose(s.cond, a.cond, atol=1e-3) and torch.allclose(s.uncond, a.uncond, atol=1e-3)


def test_a_hooked_request_that_fails_in_a_batch_fails_alone(toy):
    """An edit that overflows spoils the shared batch: its caller hears of it, the others rerun alone
    with fresh hooks (a capture is not recorded twice) and get their images."""
    world, pipe = toy
    kinds = ["capture", "overflow", "steer"]
    requests = [request(world, p, seed=300 + i) for i, p in enumerate(PROMPTS[:3])]
    made: list[list] = [[] for _ in kinds]
    results = together(GenerationBatcher(wait_s=0.3), pipe, requests, [hooks_of(pipe, k, m) for k, m in zip(kinds, made)])
    assert isinstance(results[1], ConceptLabError) and "strength" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert [len(m) for m in made] == [2, 2, 2], "each request was not tried together, then alone with fresh hooks"
    assert len(made[0][-1][0].captures[MID]) == 10, "the rerun's capture was recorded twice or lost"
    assert all(not h.active for tries in made for hooks in tries for h in hooks), "a hook was left on the model"
    alone = GenerationBatcher().generate(pipe, requests[0])
    assert (results[0].pixels - alone.pixels).abs().max() <= 1 / 255 + 1e-6


def test_a_class_of_panels_shares_batches_and_each_sees_its_solo_result(toy):
    """The panels themselves (explore, steer, evolution, erase) hand their hooks to the shared
    batcher: pressed at once they share UNet batches, and each reading equals the solo one."""
    from concepts.batching import BATCHER
    from concepts.edit.service import EditSpec, run_edit
    from concepts.evolve.evolution import run_evolution
    from concepts.steer.explore import run_explore
    from concepts.steer.service import SteerSpec, run_steering

    calls = {
        "explore": lambda: run_explore(None, PROMPTS[0], MID, "middle", seed=1, steps=10),
        "steer": lambda: run_steering(None, PROMPTS[1], SteerSpec(MID, "early", 400.0, concept="large", region="bottom right"), seed=2, steps=10),
        "evolve": lambda: run_evolution(None, PROMPTS[2], seed=3, steps=10),
        "erase": lambda: run_edit(None, EditSpec("red"), prompts=[PROMPTS[3]], kept_prompts=[PROMPTS[4]], seed=4, steps=10),
    }
    solo = {name: call() for name, call in calls.items()}
    before = BATCHER.calls
    shared: dict = {}
    start = threading.Barrier(len(calls))

    def user(name: str) -> None:
        start.wait()
        shared[name] = calls[name]()

    threads = [threading.Thread(target=user, args=(name,)) for name in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(BATCHER.since(before)) >= 3, f"the panels did not share batches: {BATCHER.since(before)}"

    def close(a, b) -> bool:
        return np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1

    assert close(shared["explore"].image, solo["explore"].image) and np.allclose(shared["explore"].maps, solo["explore"].maps, atol=1e-3)
    assert close(shared["steer"].steered.images[0], solo["steer"].steered.images[0])
    assert (shared["steer"].change.max() > 0.05) and (solo["steer"].change.max() > 0.05)
    assert close(shared["evolve"].image, solo["evolve"].image) and len(shared["evolve"].previews) == 10
    for block, trace in solo["evolve"].traces.items():
        assert np.allclose(np.stack(shared["evolve"].traces[block].maps), np.stack(trace.maps), atol=1e-3)
    assert all(close(a, b) for a, b in zip(shared["erase"].concept_after + shared["erase"].kept_after, solo["erase"].concept_after + solo["erase"].kept_after))


def test_students_running_lessons_at_once_share_batches_and_get_their_solo_readings():
    """Two students run a lesson with different seeds at once: their draws (a capture, an edit of
    features, a weight erase) share UNet batches, and each gets the reading it gets alone."""
    from concepts.batching import BATCHER
    from concepts.lessons import run_lesson

    seeds = (11, 12)
    solo = {seed: run_lesson("labels-weights", seed, cached=False) for seed in seeds}
    before = BATCHER.calls
    shared: dict = {}
    start = threading.Barrier(len(seeds))

    def student(seed: int) -> None:
        start.wait()
        shared[seed] = run_lesson("labels-weights", seed, cached=False)

    threads = [threading.Thread(target=student, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(BATCHER.since(before), default=0) == 2, f"the lessons did not share batches: {BATCHER.since(before)}"
    for seed in seeds:
        assert [b.value for b in shared[seed].bars] == [b.value for b in solo[seed].bars]
        assert shared[seed].table == solo[seed].table


def test_served_request_threads_run_torch_on_one_thread_and_the_batcher_on_every_core(toy, monkeypatch):
    """A request thread of the served app uses one torch thread, the batcher's worker every core
    (`concepts.torch_threads`: a second thread with a team of its own slows every op of the first);
    the main thread (tests, the CLI) and a server with the rule off keep theirs."""
    from concepts.batching import BATCHER
    from concepts.torch_threads import CORES, threads_here
    from ui.common import user_errors

    world, pipe = toy
    seen: dict[str, int | None] = {}

    @user_errors
    def handler(name: str) -> None:
        seen[name] = torch.get_num_threads() if threads_here() else None  # None: the thread was left as it was

    def in_a_request_thread(name: str) -> None:
        thread = threading.Thread(target=handler, args=(name,))
        thread.start()
        thread.join()

    try:
        before = torch.get_num_threads()
        in_a_request_thread("served")
        monkeypatch.setenv("CONCEPT_LAB_ONE_TORCH_THREAD", "0")
        in_a_request_thread("rule off")
        handler("main")
        BATCHER.generate(pipe, request(world, PROMPTS[0], seed=1),
                         on_step=lambda state: seen.setdefault("batcher", torch.get_num_threads()))
        assert seen == {"served": 1, "rule off": None, "main": None, "batcher": CORES}
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)  # threads started later in this process start from this count


def test_a_request_joins_a_running_batch_at_its_next_step_and_leaves_after_its_last(toy):
    """Continuous batching: a 10-step request with a capture, sent while a 25-step steered request is
    at its fourth step, rides in the same UNet calls from its first step on (other steps, other
    guidance), leaves first (its hooks go while the other's stay) and both get their solo results."""
    world, pipe = toy
    long_request = replace(request(world, PROMPTS[1], seed=21), steps=25)
    short_request = replace(request(world, PROMPTS[2], seed=22), guidance=2.0)
    solo_made: list = [[], []]
    solo_long = generate_with(GenerationBatcher(), pipe, long_request, hooks_of(pipe, "steer", solo_made[0]))
    solo_short = generate_with(GenerationBatcher(), pipe, short_request, hooks_of(pipe, "capture", solo_made[1]))
    batcher, made, at_step_3 = GenerationBatcher(wait_s=0.0), [[], []], threading.Event()
    results: dict = {}

    def long_user() -> None:
        results["long"] = batcher.generate(pipe, long_request, on_step=lambda s: s.index == 3 and at_step_3.set(),
                                           hooks=hooks_of(pipe, "steer", made[0]))

    thread = threading.Thread(target=long_user)
    thread.start()
    at_step_3.wait(60)
    results["short"] = batcher.generate(pipe, short_request, hooks=hooks_of(pipe, "capture", made[1]))
    thread.join()
    sizes = batcher.batches
    assert sizes.count(2) == 10 and len(sizes) == 25, f"the short request did not ride along for its 10 steps: {sizes}"
    assert sizes[:4] == [1, 1, 1, 1] and sizes[-1] == 1
    assert (results["long"].pixels - solo_long.pixels).abs().max() <= 1 / 255 + 1e-6
    assert (results["short"].pixels - solo_short.pixels).abs().max() <= 1 / 255 + 1e-6
    shared, alone = made[1][-1][0].captures[MID], solo_made[1][-1][0].captures[MID]
    assert len(shared) == len(alone) == 10
    assert all(torch.allclose(s.cond, a.cond, atol=1e-3) for s, a in zip(shared, alone))
    assert all(not h.active for tries in made for hooks in tries for h in hooks), "a hook was left on the model"


def test_a_request_cancelled_in_flight_leaves_and_the_others_go_on(toy):
    """A student closes the page halfway: that request stops at the next step with RequestCancelled,
    its hooks leave the model, and the request it shared calls with still gets its solo image."""
    from concepts.errors import RequestCancelled
    from concepts.progress import cancellable

    world, pipe = toy
    kept, dropped = request(world, PROMPTS[0], seed=31), request(world, PROMPTS[3], seed=32)
    solo = generate(pipe, kept)
    batcher, made, closed = GenerationBatcher(wait_s=0.3), [], threading.Event()
    outcome: dict = {}

    def leaving_user() -> None:
        with cancellable(lambda: not closed.is_set()):
            try:
                batcher.generate(pipe, dropped, on_step=lambda s: s.index == 4 and closed.set(), hooks=hooks_of(pipe, "steer", made))
            except RequestCancelled as exc:
                outcome["dropped"] = exc

    thread = threading.Thread(target=leaving_user)
    thread.start()
    outcome["kept"] = batcher.generate(pipe, kept)
    thread.join()
    assert isinstance(outcome.get("dropped"), RequestCancelled)
    assert batcher.batches[:5] == [2] * 5 and batcher.batches[5:] == [1] * 5, batcher.batches
    assert (outcome["kept"].pixels - solo.pixels).abs().max() <= 1 / 255 + 1e-6
    assert all(not h.active for hooks in made for h in hooks)


def generate_with(batcher: GenerationBatcher, pipe, r: GenerationRequest, factory) -> object:
    return batcher.generate(pipe, r, hooks=factory)


def test_sdxl_requests_share_calls_with_their_added_conditioning_in_their_own_rows():
    """SDXL's pooled text and size ids are laid out like the text itself ([uncond…; cond…]) when
    requests share a call, so each still gets its solo image; a request with guidance off (no uncond
    rows) runs beside them in its own group, taking turns step by step."""
    from concepts.tiny import build_tiny_sdxl_pipeline

    pipe = build_tiny_sdxl_pipeline()
    guided = [GenerationRequest(p, seed=40 + i, steps=4, guidance=5.0, height=64, width=64) for i, p in enumerate(PROMPTS[:2])]
    unguided = GenerationRequest(PROMPTS[2], seed=43, steps=3, guidance=0.0, height=64, width=64)
    requests = [*guided, unguided]
    solo = [generate(pipe, r).pixels for r in requests]
    batcher = GenerationBatcher(wait_s=0.3)
    results = together(batcher, pipe, requests)
    assert batcher.batches.count(2) == 4 and batcher.batches.count(1) == 3, batcher.batches
    for alone, shared in zip(solo, results):
        assert (shared.pixels - alone).abs().max() <= 1 / 255 + 1e-6


def test_a_lone_request_that_fails_hears_of_it_at_once(toy):
    """With no one to spare, a failing request is not rerun: its caller gets the error after one try,
    and its hooks are gone."""
    world, pipe = toy
    made: list = []
    results = together(GenerationBatcher(wait_s=0.0), pipe, [request(world, PROMPTS[0], seed=5)], [hooks_of(pipe, "overflow", made)])
    assert isinstance(results[0], ConceptLabError) and "strength" in str(results[0])
    assert len(made) == 1 and not any(h.active for hooks in made for h in hooks)


def test_stop_ends_the_worker_so_the_process_never_exits_with_it_inside_torch(toy):
    """At interpreter exit the batcher's worker is ended (atexit): Python stopping a daemon thread
    inside torch's C++ code aborted the CLI ("terminate called without an active exception")."""
    world, pipe = toy
    batcher = GenerationBatcher(wait_s=0.0, workers=2)
    batcher.generate(pipe, request(world, PROMPTS[0], seed=1))
    workers = [w.thread for w in batcher._workers]
    assert all(w is not None and w.is_alive() for w in workers)
    batcher.stop()
    assert not any(w.is_alive() for w in workers)
    batcher.generate(pipe, request(world, PROMPTS[0], seed=1))  # a later request starts a new worker
    batcher.stop()


def test_requests_in_separate_groups_never_run_each_others_hooks(toy):
    """Requests that cannot share a call (CFG on against off) are in flight together, one group's
    step after the other's; a steering edit of one group must not act on the other group's UNet
    calls (both images equal their solo ones), and a capture records only its own steps."""
    world, pipe = toy
    steered = request(world, PROMPTS[0], seed=11)
    plain = replace(request(world, PROMPTS[1], seed=12), guidance=1.0)  # no CFG: another group
    assert steered.cfg and not plain.cfg
    captured = replace(request(world, PROMPTS[2], seed=13), guidance=1.0)
    kinds = ["steer", "plain", "capture"]
    requests = [steered, plain, captured]
    solo_made: list[list] = [[] for _ in kinds]
    solo = [GenerationBatcher().generate(pipe, r, hooks=hooks_of(pipe, k, m)) for r, k, m in zip(requests, kinds, solo_made)]
    batcher, made = GenerationBatcher(max_batch=8, wait_s=0.3), [[] for _ in kinds]
    results = together(batcher, pipe, requests, [hooks_of(pipe, k, m) for k, m in zip(kinds, made)])
    for kind, alone, shared in zip(kinds, solo, results):
        assert not isinstance(shared, Exception), f"{kind}: {shared}"
        assert (shared.pixels - alone.pixels).abs().max() <= 1 / 255 + 1e-6, f"{kind}: another group's hooks changed it"
    assert [len(m) for m in made] == [1, 1, 1], "a request had to be rerun alone"
    assert len(made[2][-1][0].captures[MID]) == 10, "the capture recorded another group's steps"


def test_a_busy_server_spreads_requests_over_one_worker_per_core_and_each_gets_its_solo_image(toy):
    """With more than one request being served (a class), requests go to the worker with the fewest
    images in hand, each worker on one torch thread, and every image is still the solo one; a student
    alone is served by the first worker only."""
    from concepts.torch_threads import CORES, serving

    world, pipe = toy
    requests = [request(world, p, seed=400 + i) for i, p in enumerate(PROMPTS[:4])]
    solo = [generate(pipe, r).pixels for r in requests]
    batcher = GenerationBatcher(max_batch=8, wait_s=0.3, workers=2)
    batcher.generate(pipe, requests[0])  # alone: the first worker
    assert batcher.by_worker[1] == 0 and batcher.by_worker[0] > 0
    threads_seen: dict[str, int] = {}

    def note_threads(state) -> None:
        threads_seen[threading.current_thread().name] = torch.get_num_threads()

    results = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def user(i: int) -> None:
        with serving():  # as `ui.common.user_errors` counts each served request
            start.wait()
            results[i] = batcher.generate(pipe, requests[i], on_step=note_threads)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(requests))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batcher.stop()
    finally:
        # a thread's torch.set_num_threads also sets the count new threads start with: the workers left
        # it at one, which later tests' threads would inherit
        torch.set_num_threads(CORES)
    assert batcher.by_worker[1] > 0, f"the second worker did no UNet call: {batcher.by_worker}"
    assert set(threads_seen) == {"concept-lab-batcher-0", "concept-lab-batcher-1"}
    assert set(threads_seen.values()) == {1}, f"a worker ran more than one torch thread in a busy server: {threads_seen}"
    for alone, shared in zip(solo, results):
        assert (shared.pixels - alone).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("raw, expected", [("", 16), ("8", 8), (" 4 ", 4), ("1", 1), ("64", 64)])
def test_the_max_batch_setting_takes_whole_numbers_from_1_to_64(monkeypatch, raw, expected):
    from concepts.batching import max_batch_setting

    monkeypatch.setenv("CONCEPT_LAB_MAX_BATCH", raw)
    assert max_batch_setting() == expected


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "65", "1e9", "nan", "2.5"])
def test_a_bad_max_batch_setting_gives_one_log_line_and_the_default(monkeypatch, caplog, raw):
    import logging

    from concepts.batching import max_batch_setting

    monkeypatch.setenv("CONCEPT_LAB_MAX_BATCH", raw)
    with caplog.at_level(logging.WARNING, logger="concepts.batching"):
        assert max_batch_setting() == 16
    assert len(caplog.records) == 1 and "CONCEPT_LAB_MAX_BATCH" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None


def test_each_callers_steps_are_reported_in_that_callers_own_context(toy):
    """Gradio's progress bar finds its request through context variables of the handler's thread; the
    worker calls each request's `on_step`, so it must do so in its caller's context (it once did
    not, and no batched request showed its steps in the browser)."""
    world, pipe = toy
    student = contextvars.ContextVar("student")
    seen: dict[int, set] = {0: set(), 1: set()}
    batcher, start = GenerationBatcher(workers=1), threading.Barrier(2)

    def user(i: int) -> None:
        student.set(i)
        start.wait()
        batcher.generate(pipe, request(world, PROMPTS[i], i), on_step=lambda _: seen[i].add(student.get(None)))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    assert seen == {0: {0}, 1: {1}}
