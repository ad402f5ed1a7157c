"""What one `malloc_trim(0)` costs and returns after a busy moment (`ui/memory.py` runs one every 10 s).

    python benchmarks/bench_trim.py [--rounds 5] [--intervals off,10,1] [--seconds 30] [--out FILE]

Two threads make toy images as the batcher's two workers do in a class (1, 4, 8, 4 and 1 images at
25 steps, one torch thread each), with malloc capped at two arenas as in the app; then the main
thread times one `malloc_trim(0)` and reads how much RSS it gave back. Medians and ranges over the
rounds.

Then what trimming costs the work: for `--seconds` the two threads make such bursts without a pause
while a third trims every N seconds (each of `--intervals`, "off" for never), interleaved over the
rounds. Reported: images a second, as a ratio to "off" in the same round, and the RSS at the end. A
short interval magnifies the cost per trim (the pages it returns are faulted in again).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit, released_together, rss_mb, spread  # noqa: E402

BURST = (1, 4, 8, 4, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--intervals", default="off,10,1", help="seconds between trims while working; 'off' first: the ratios are to it")
    parser.add_argument("--seconds", type=float, default=30.0, help="per condition and round; 0 skips the comparison")
    parser.add_argument("--out")
    args = parser.parse_args()
    import torch

    from concepts.sampling import generate
    from toy_worker import toy_pipe_and_requests

    from ui import memory

    memory.keep_memory_returned(interval_s=3600)  # two malloc arenas as in the app; its own trims an hour away
    pipe, requests, _ = toy_pipe_and_requests(BURST)

    def worker() -> None:
        torch.set_num_threads(1)
        for n in BURST:
            generate(pipe, requests[n])

    took_ms, returned_mb, after_mb = [], [], []
    for _ in range(args.rounds):
        released_together(2, lambda _: worker())
        before = rss_mb()
        start = time.perf_counter()
        memory.trim()
        took_ms.append(1000 * (time.perf_counter() - start))
        returned_mb.append(before - rss_mb())
        after_mb.append(rss_mb())

    def images_per_second(interval: float | None) -> tuple[float, float]:
        stop, made, lock = threading.Event(), [0], threading.Lock()

        def busy() -> None:
            torch.set_num_threads(1)
            while not stop.is_set():
                for n in BURST:
                    generate(pipe, requests[n])
                    with lock:
                        made[0] += n

        def trimmer() -> None:
            while not stop.wait(interval):
                memory.trim()

        threads = [threading.Thread(target=busy) for _ in range(2)] + ([threading.Thread(target=trimmer)] if interval else [])
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        return made[0] / (time.perf_counter() - start), rss_mb()

    intervals = [None if i == "off" else float(i) for i in args.intervals.split(",")]
    rounds = [{i: images_per_second(i) for i in intervals} for _ in range(args.rounds if args.seconds else 0)]
    name = {i: "off" if i is None else f"every {i:g} s" for i in intervals}
    work = {name[i]: {"images_per_s": spread([r[i][0] for r in rounds], 2),
                      "vs_off_in_round": spread([r[i][0] / r[intervals[0]][0] for r in rounds], 3),
                      "rss_at_end_mb": spread([r[i][1] for r in rounds])} for i in intervals} if rounds else {}
    emit({"model": "toy-shapes", "device": "cpu", "rounds": args.rounds, "burst_images_per_thread": list(BURST),
          "trim_ms": spread(took_ms), "rss_returned_mb": spread(returned_mb), "rss_after_trim_mb": spread(after_mb),
          "seconds_per_condition": args.seconds, "work_while_trimming": work}, args.out)


if __name__ == "__main__":
    main()
