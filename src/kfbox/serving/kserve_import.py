"""Import kserve in a model replica without its Kubernetes client, which loads only if a model uses it.

``kserve/__init__`` imports ``KServeClient`` (``kserve.api.kserve_client``) and with it the whole
``kubernetes`` client and google.auth: about 1,090 modules that a replica serving a model never uses.
:func:`defer_kubernetes_client` puts a stand-in module in their place before kserve is imported; its
``KServeClient`` imports the real module at its first construction and returns a real client, so a
user's ``kserve.Model`` that does talk to a cluster (``kserve.KServeClient(...)``) works unchanged and
pays for the import then, in that replica only (the stand-in this replaced refused ``KServeClient``).

Called by the replica fork server (:mod:`kfbox.serving.forkserver`) before its preload and by a cold
replica (:mod:`kfbox.serving.replica`); never by the kfbox server, which does not import kserve at all
(``tests/server/test_start_imports.py``). Measured on the 2-core dev machine, the fork server's preload
(``kserve.model_server``, ``kfbox.serving.runtimes``, ``kfbox.serving.fastpath``, interpreter start included;
5 interleaved rounds, medians of the process's user+sys CPU): 1.49 s -> 1.04 s, RSS 200 -> 156 MiB, 2,458 -> 1,371
modules. Every fork server start and every cold replica saves that; a replica forked from a warm fork server
imported nothing either way. A cold replica's first request after scale to zero
(``KFBOX_SERVING_WARM_STANDBY=0 benchmarks/serving_cold_start.py --repeat 3 --settle 3``, two interleaved runs
each, wall time on the shared machine, so noisy): 5.28 s and 5.03 s -> 4.66 s and 3.28 s.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

MODULE = "kserve.api.kserve_client"
_loading = threading.Lock()


def defer_kubernetes_client() -> None:
    """Put the stand-in client module in place, unless kserve (or its client) is imported already."""
    if "kserve" in sys.modules or MODULE in sys.modules:
        return
    stand_in = types.ModuleType(MODULE, "kserve's KServeClient, imported at its first use (kfbox)")
    stand_in.__dict__.update(KServeClient=KServeClient, __getattr__=_real_attribute)  # PEP 562: other names
    sys.modules[MODULE] = stand_in


def real_client_module() -> types.ModuleType:
    """kserve's own ``kserve.api.kserve_client``, imported now if the stand-in is still in its place; from then on
    ``kserve.KServeClient`` is the real class."""
    with _loading:
        module = sys.modules.get(MODULE)
        if module is None or getattr(module, "KServeClient", None) is KServeClient:
            sys.modules.pop(MODULE, None)
            module = importlib.import_module(MODULE)
            kserve = sys.modules.get("kserve")
            if kserve is not None:
                kserve.KServeClient = module.KServeClient  # type: ignore[attr-defined]
        return module


def _real_attribute(name: str) -> Any:
    """Any other name of the client module (``isvc_watch``...) loads the real one; not the dunders the import
    system and ``repr`` probe a module for (``__path__``, ``__file__``)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(real_client_module(), name)


class KServeClient:
    """The stand-in's ``KServeClient``: constructing it returns kserve's real client."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return real_client_module().KServeClient(*args, **kwargs)
