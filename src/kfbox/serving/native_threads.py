"""A replica's native thread pools (OpenMP, OpenBLAS, MKL): one thread each unless the user says otherwise.

A replica answers one request at a time on its event loop; kfbox adds replicas, not threads, for
concurrency. Left alone, OpenMP and the BLAS libraries start one worker per core, and between
parallel regions libgomp's workers spin. On a machine that also runs the server, sibling replicas
and the load, those workers take cores from the processes that have work: an iris KNN with
``algorithm="brute"`` (scikit-learn's OpenMP ``ArgKmin``) served 38 req/s at 14.8 ms of CPU per
request with the default pool on the 2-core machine under load, and 486 req/s at 1.05 ms with one
thread (``benchmarks/replica_threads.py``, interleaved). The field does the same for worker processes
(``torchrun`` sets ``OMP_NUM_THREADS=1`` for several workers; joblib's process workers get cores /
workers); one rather than cores / replicas because the replica count moves with the autoscaler and
the server and the gateway share the cores too.

The variables are the libraries' own: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``. One already set wins: in the server's environment (``OMP_NUM_THREADS=4 kfbox
up``) or in the InferenceService's ``spec.predictor.model.env``. They are set before the libraries
load where possible (a cold replica, a standby's imports); libraries already loaded when an
InferenceService's own value arrives (a standby's numpy and scikit-learn) are resized with
threadpoolctl, the library scikit-learn itself uses for this (OpenMP's setting is per thread: it holds
in the thread that serves, which is the one that calls :func:`apply`; kserve predicts on its event loop
in the main thread).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

DEFAULT_THREADS = "1"
THREAD_VARIABLES = {"OMP_NUM_THREADS": "openmp", "OPENBLAS_NUM_THREADS": "openblas", "MKL_NUM_THREADS": "mkl"}
"""Each variable and the threadpoolctl ``internal_api`` it sizes."""


def set_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """One thread for each pool whose variable is not set yet (call before numpy or scikit-learn loads)."""
    environ = os.environ if environ is None else environ
    for variable in THREAD_VARIABLES:
        environ.setdefault(variable, DEFAULT_THREADS)


def apply(overrides: Mapping[str, str]) -> None:
    """Put the InferenceService's environment into this process and resize the pools already loaded whose
    variable this changed (libraries read them only as they load; threadpoolctl's scan costs ~6 ms, so
    a replica whose variables were in place before its imports skips it)."""
    before = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    os.environ.update(overrides)
    set_defaults()
    changed = {variable: threads for variable in THREAD_VARIABLES
               if os.environ[variable] != before[variable] and (threads := _count(os.environ[variable])) is not None}
    if not changed:
        return
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    for variable, threads in changed.items():
        controller.select(internal_api=THREAD_VARIABLES[variable]).limit(limits=threads)


def _count(value: str) -> int | None:
    """The variable's thread count; None for what the libraries would not take as one (left to them)."""
    try:
        threads = int(value.strip())
    except ValueError:
        return None
    return threads if threads > 0 else None
