"""The loaded BLAS libraries' thread counts, as the thread tests read them."""

from __future__ import annotations

from threadpoolctl import threadpool_info


def blas_counts() -> list[int]:
    """Thread counts of the loaded BLAS libraries that have threads (cvxopt's OpenBLAS, loaded
    for block 2's sparse factor, is built without: always one, nothing to set)."""
    return [d["num_threads"] for d in threadpool_info()
            if d["user_api"] == "blas" and d.get("threading_layer") != "disabled"]
