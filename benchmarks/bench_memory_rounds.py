"""Where a class's memory goes: the app in this process, rounds of students, RSS after each round.

    python benchmarks/bench_memory_rounds.py [--students 8] [--rounds 3] [--sequential] [--mmap-kb K] [--out FILE]

Three students' scripts warm the app up (every model, SAE and cache loaded). Then each round runs
`--students` new gradio_client students, each following the classroom script (lesson, two
generations, explore, steer, a 10-step evolution, erase red) without pauses: all at once, or one
after another with `--sequential`. After each round the garbage collector runs and malloc_trim(0)
returns free pages, so the RSS read is what the process still holds. `--mmap-kb K` fixes glibc's
mmap threshold at K KB (buffers of K KB and more get their own pages, returned on free) and caps
the arenas at two, to compare with the app's default (`ui/memory.py`: two arenas, trimming).
Each reading also says where the resident memory is (`/proc/self/status` and `smaps`): anonymous
or file-backed, the brk heap, other anonymous mappings, the thread count, and how many MB of torch
tensors the garbage collector can see that were not there after the warm-up. `--trace` also
traces Python's own allocations from the warm-up on (tracemalloc): how many MB of Python objects
each round leaves, and in which files; without it, each reading says what Python's small-object
allocator holds: for live objects, and free inside it.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

LIBC = ctypes.CDLL("libc.so.6")
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


def resident_parts(warm_tensors: set[int]) -> dict:
    """Where the resident memory is, in MB: anonymous and file-backed pages, the mappings by kind
    (`bench_classroom.memory_parts`: the brk heap, other anonymous memory, JIT code, files), threads,
    and torch tensors alive now that were not after the warm-up."""
    import psutil
    import torch
    from bench_classroom import memory_parts

    status = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(("RssAnon", "RssFile"))}
    new = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and id(o) not in warm_tensors]
    return {"anon_mb": round(status["RssAnon"] / 1024, 1), "file_mb": round(status["RssFile"] / 1024, 1),
            **{f"{kind}_mb": mb for kind, mb in memory_parts(psutil.Process()).items()}, "threads": threading.active_count(),
            "new_tensors_mb": round(sum(t.numel() * t.element_size() for t in new) / 2**20, 1)}


def pymalloc_mb() -> dict:
    """Python's small-object allocator (pymalloc), in MB: all it holds from the system, what live
    objects use of it, and what sits free inside it (free blocks in used pools, and unused pools),
    read from `sys._debugmallocstats`, which writes to the C stderr."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    text = b"".join(chunks).decode(errors="replace")

    def field(pattern: str) -> float:
        found = re.search(pattern + r"\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) / 2**20 if found else 0.0

    return {"held": round(field(r"\nTotal"), 1), "in_objects": round(field(r"# bytes in allocated blocks"), 1),
            "free_inside": round(field(r"# bytes in available blocks") + field(r"unused pools \* 16384 bytes"), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--mmap-kb", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="also trace Python's allocations after the warm-up (tracemalloc): how much of the growth is Python objects, and whose")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    LIBC.mallopt(M_ARENA_MAX, 2)  # as the app does (ui/memory.py)
    if args.mmap_kb:
        LIBC.mallopt(M_MMAP_THRESHOLD, args.mmap_kb * 1024)
    os.environ.setdefault("CONCEPT_LAB_CACHE", tempfile.mkdtemp(prefix="bench-memory-rounds-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import psutil
    import torch
    from bench_classroom import script
    from gradio_client import Client
    from timing import emit

    import app
    from ui.memory import return_freed

    app.demo.queue(default_concurrency_limit=2)
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **app.launch_style())
    process = psutil.Process()

    def student(index: int) -> None:
        client = Client(url, verbose=False)
        for _, api, arguments, _ in script(index):
            client.predict(*arguments, api_name=api)

    warm_tensors: set[int] = set()

    def rss_mb() -> float:
        return_freed()
        where.append(resident_parts(warm_tensors))
        return round(process.memory_info().rss / 2**20, 1)

    try:
        for index in range(3):
            student(1000 + index)
        where: list[dict] = []
        gc.collect()
        warm_tensors.update(id(o) for o in gc.get_objects() if isinstance(o, torch.Tensor))
        rss = [rss_mb()]
        if args.trace:
            tracemalloc.start(1)
        else:  # tracemalloc's hooks hide pymalloc's statistics: one or the other per run
            where[-1]["pymalloc_mb"] = pymalloc_mb()
        for round_ in range(args.rounds):
            students = [round_ * 100 + j for j in range(args.students)]
            if args.sequential:
                for index in students:
                    student(index)
            else:
                threads = [threading.Thread(target=student, args=(index,)) for index in students]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            rss.append(rss_mb())
            if args.trace:
                where[-1]["python_objects_since_warmup_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
                where[-1]["python_objects_by_file_mb"] = {
                    stat.traceback[0].filename.split("site-packages/")[-1]: round(stat.size / 2**20, 2)
                    for stat in tracemalloc.take_snapshot().statistics("filename")[:5]}
            else:
                where[-1]["pymalloc_mb"] = pymalloc_mb()
    finally:
        app.demo.close()
    emit({"students_per_round": args.students, "rounds": args.rounds, "together": not args.sequential, "mmap_threshold_kb": args.mmap_kb or None,
          "rss_mb_after_warmup_then_each_round": rss, "where_each_reading": where, "growth_pct_each_round": [round(100 * (b - a) / a, 1) for a, b in zip(rss, rss[1:])]}, args.out)


if __name__ == "__main__":
    main()
