"""Keep freed host memory inside a training process (glibc), so per-step temporaries stop page-faulting.

A LightGCN step on the CPU allocates several full-size ``(U + I, d)`` temporaries and frees them
before the next step (the propagation's work buffers, the scattered gradients, the gradient
itself): five of 18 MB per Gowalla step. glibc's defaults hand such blocks back to the kernel
(``mmap`` above its threshold, heap trimming above ``M_TRIM_THRESHOLD``), so every step faults
~90 MB of fresh zeroed pages back in. :func:`retain_freed_memory` raises both thresholds with
``mallopt``: the blocks are reused from the heap instead, with the same arithmetic (results are
bit-identical); the process keeps up to its peak of freed memory instead of returning it.

It changes the whole process, so only the training commands call it (``graphrec train``,
``graphrec bench train``, ``graphrec bench step``), never the API server; elsewhere than glibc
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: glibc's largest allowed mmap threshold on 64-bit systems (``4 * 1024 * 1024 * sizeof(long)``):
#: blocks up to this size come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept before trimming (a C ``int``, so below 2 GiB).
TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); return whether they are set.

    Returns:
        ``True`` when both ``mallopt`` calls succeeded (now or in an earlier call); ``False`` when
        the C library is not glibc or refused a value.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        log.debug("mallopt not available: %s", e)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("glibc mmap threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD, _applied)
    return _applied


def freed_memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` has set the thresholds in this process."""
    return bool(_applied)
