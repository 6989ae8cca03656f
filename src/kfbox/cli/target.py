"""Which server a client command talks to: one choice for every command, like kubectl's contexts.

In order, the first that is given wins:

1. a flag: ``--url URL`` (a kfbox server), ``--host URL`` (a Kubeflow gateway, ad hoc: ``--token``
   for a service-account token, or nothing for an unsecured one) or ``--context NAME`` (saved
   with ``kfbox context add``; ``local`` is the local server); at most one of them;
2. the environment: ``KFBOX_URL`` or ``KFBOX_CONTEXT`` (not both);
3. the current context (``kfbox context use NAME``; ``kfbox context use local`` clears it);
4. the server ``kfbox up`` recorded in the home.

A kfbox server gets a plain :class:`~kfbox.client.ApiClient`; a cluster gets a
:class:`~kfbox.cluster.target.ClusterApi`, which answers the same kfbox paths through the
cluster's gateway and Kubernetes API, so the commands themselves have no remote cases.

Example::

    api = connect(url=None, home=None, token=None, context="kind")
    api.get("/apis/v2beta1/runs")
"""

from __future__ import annotations

import os
from pathlib import Path

from kfbox.client import ApiClient
from kfbox.config import default_home
from kfbox.errors import InvalidInput


def connect(url: str | None, home: Path | None, token: str | None, *, host: str | None = None,
            context: str | None = None, timeout: float = 30.0) -> ApiClient:
    given = [flag for flag, value in (("--url", url), ("--host", host), ("--context", context)) if value]
    if len(given) > 1:
        raise InvalidInput(f"Give one target, not {' and '.join(given)}: --url for a kfbox server, --host for a "
                           "Kubeflow gateway, --context for a saved one.")
    if url:
        return ApiClient.connect(url, home, token, timeout)
    home = (home or default_home()).expanduser()
    if host:
        return _adhoc(host, home, token, timeout)
    if not context:
        env_url, env_context = os.environ.get("KFBOX_URL"), os.environ.get("KFBOX_CONTEXT")
        if env_url and env_context:
            raise InvalidInput(f"Both KFBOX_URL ({env_url}) and KFBOX_CONTEXT ({env_context}) are set; unset one.")
        if env_url:
            return ApiClient.connect(env_url, home, token, timeout)
        context = env_context
    from kfbox.cluster.contexts import LOCAL, ContextStore

    store = ContextStore(home)
    if not context:
        context = store.current()
    if not context or context == LOCAL:
        return ApiClient.connect(None, home, token, timeout)
    from kfbox.cluster.remote import Remote
    from kfbox.cluster.target import ClusterApi

    return ClusterApi(Remote(store.get(context), home, timeout=max(timeout, 60.0)), timeout=max(timeout, 60.0))


def _adhoc(host: str, home: Path, token: str | None, timeout: float) -> ApiClient:
    """``--host URL``: an unsaved Kubeflow target (bearer token or none; Dex logins need a saved context)."""
    from kfbox.cluster.contexts import Context
    from kfbox.cluster.remote import Remote
    from kfbox.cluster.target import ClusterApi

    token = token or os.environ.get("KFBOX_TOKEN")
    host = host.rstrip("/").removesuffix("/pipeline")  # KFP SDK users write the /pipeline URL
    target = Context(name="host", host=host, auth="token" if token else "none", token=token).validate()
    return ClusterApi(Remote(target, home, timeout=max(timeout, 60.0)), timeout=max(timeout, 60.0))
