"""How many threads numpy's BLAS (OpenBLAS) uses for one matrix product.

Answering one request multiplies a single row by the catalog; splitting that across threads
costs more in hand-offs than it saves, and on a server whose requests already run in parallel
the threads only fight each other for the cores (measured on 2 busy cores: in-process
p99 12-13 ms with two threads, 4-6 ms with one). numpy has no call for it, so this finds the
OpenBLAS library numpy loaded and calls its ``openblas_set_num_threads`` (the symbol name
varies with the build), as threadpoolctl does.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

__all__ = ["numpy_blas_threads", "set_blas_threads"]

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = tuple(name.replace("set_num", "get_num") for name in _SETTERS)


def _openblas_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (Linux: from /proc/self/maps)."""
    import numpy  # noqa: F401  (numpy loads its BLAS on import)

    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    found = re.findall(r"(/\S*openblas\S*\.so[\d.]*)\s*$", maps.read_text(), flags=re.MULTILINE)
    return sorted(set(found))


def set_blas_threads(threads: int) -> int | None:
    """Set the thread count of every OpenBLAS in this process (numpy's, and FAISS's own when
    FAISS is loaded: each wheel bundles one); return the smallest count now in use, or None if
    no OpenBLAS was found (another BLAS, or not Linux): then nothing changed."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    in_use: list[int] = []
    for path in _openblas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((name for name in _SETTERS if hasattr(library, name)), None)
        if setter is not None:
            getattr(library, setter)(threads)
            in_use.append(_thread_count(library) or threads)
    return min(in_use) if in_use else None


def numpy_blas_threads() -> int | None:
    """The thread count of the OpenBLAS numpy's wheel bundles (``numpy.libs``), or None."""
    for path in _openblas_libraries():
        if "numpy" in path:
            return _thread_count(ctypes.CDLL(path))
    return None


def _thread_count(library: ctypes.CDLL) -> int | None:
    getter = next((name for name in _GETTERS if hasattr(library, name)), None)
    return int(getattr(library, getter)()) if getter is not None else None
