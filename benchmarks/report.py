"""Shared bits of the comparison scripts: machine description, timing, peak memory, the
backend switch, and writing one script's section of a RESULTS file without touching the
other sections."""

import contextlib
import os
import platform
import re
import statistics
import threading
import time

import torch


@contextlib.contextmanager
def forced_backend(value):
    """FASTLANCZOS_BACKEND set to value ("torch"; None: unset, the extension) inside the block,
    and put back as it was after it."""
    old = os.environ.pop("FASTLANCZOS_BACKEND", None)
    if value is not None:
        os.environ["FASTLANCZOS_BACKEND"] = value
    try:
        yield
    finally:
        os.environ.pop("FASTLANCZOS_BACKEND", None)
        if old is not None:
            os.environ["FASTLANCZOS_BACKEND"] = old


def machine(device="cpu"):
    """One line naming the machine and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    line = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    if device == "cuda":
        line += f", GPU {torch.cuda.get_device_name()}"
    return line


class PeakRSS:
    """Peak resident-memory growth during a block, sampled every millisecond from /proc.
    Counts every framework's allocations (torch, NumPy, JAX) the same way. With
    device="cuda": the growth of torch's peak allocated GPU memory instead."""

    def __init__(self, device="cpu"):
        self.cuda = torch.device(device).type == "cuda"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.mib = (self.peak - self.base) / 2**20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_time(fn, reps=3, slow_s=10.0):
    """(median seconds, last result): one warm-up run, then `reps` timed runs; a warm-up that
    takes over slow_s counts as the only run (said so in the protocol)."""
    t0 = time.perf_counter()
    out = fn()
    _sync()
    first = time.perf_counter() - t0
    if first > slow_s:
        return first, out
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _sync():
    """Wait for queued GPU work, so wall time covers it (no-op without CUDA in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def write_section(path, name, text):
    """Replace the text between <!-- begin NAME --> and <!-- end NAME --> in path (appending
    the section if it is new), so several scripts share one RESULTS file."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = open(path).read() if os.path.exists(path) else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old + "\n" + block
    with open(path, "w") as f:
        f.write(new)
