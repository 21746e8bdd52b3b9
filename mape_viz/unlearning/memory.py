"""Peak memory of a block of work, meaningful in a long process (docs/design.md §5).

- CUDA: ``torch.cuda.reset_peak_memory_stats`` at the start, ``max_memory_allocated`` at the
  end (``cuda_max_allocated``: the peak of tensors on the device during the block, the input
  model included).
- CPU (``cpu_rss_peak_delta``): the peak resident set size *above the block's starting RSS*.
  A light thread samples the current RSS every ``interval`` seconds (``/proc/self/statm``,
  else ``psutil``); the end and, if the process's lifetime maximum (``ru_maxrss``) rose during
  the block, that maximum are counted too. The process's lifetime maximum alone is not used: it
  stays flat — and its growth reads 0 — once an earlier block in the same process used more.
  At the start, memory the C allocator holds but no longer uses is handed back to the system
  (glibc ``malloc_trim``), so that reusing it during the block shows up as growth.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import threading
import weakref

import torch

try:  # optional: a fallback where /proc/self/statm does not exist (macOS, Windows)
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:  # pragma: no cover
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def current_rss() -> int:
    """Bytes of the process's resident set now (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        if psutil is not None:
            return int(psutil.Process().memory_info().rss)
        return 0


def max_rss() -> int:
    """The process's lifetime peak RSS in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def trim_heap() -> None:
    """Hand memory the C allocator keeps but does not use back to the system (glibc)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _Samples:
    """The sampling thread's state (kept apart from the meter, so that a meter dropped on an
    error is collected and its finaliser stops the thread)."""

    def __init__(self, start: int) -> None:
        self.high = start
        self.stop = threading.Event()


def _sample(state: _Samples, interval: float) -> None:
    while not state.stop.wait(interval):
        rss = current_rss()
        if rss > state.high:
            state.high = rss


class MemoryMeter:
    """Peak memory of a block (see module doc): ``meter = MemoryMeter(device)`` at the start,
    ``meter.peak() -> (bytes, kind)`` at the end (stops the sampling thread; so does dropping
    the meter).

    Args:
        device: the block's device (CUDA: allocator statistics; else RSS sampling).
        interval: seconds between RSS samples.
    """

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._thread: threading.Thread | None = None
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            return
        trim_heap()
        self.start = current_rss()
        self.start_max = max_rss()
        self._state = _Samples(self.start)
        self._thread = threading.Thread(target=_sample, args=(self._state, interval),
                                        name="mape-viz-memory", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._state.stop.set)

    def peak(self) -> tuple[int, str]:
        """``(bytes, kind)``: ``cuda_max_allocated`` or ``cpu_rss_peak_delta``."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device)), "cuda_max_allocated"
        self._state.stop.set()
        if self._thread is not None:
            self._thread.join()
        high = max(self._state.high, current_rss())
        lifetime = max_rss()
        if lifetime > self.start_max:  # a new lifetime peak was set during the block
            high = max(high, lifetime)
        return max(0, high - self.start), "cpu_rss_peak_delta"
