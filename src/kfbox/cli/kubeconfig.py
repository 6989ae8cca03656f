"""``kfbox kubeconfig``: a kubeconfig that points ``kubectl`` and the kserve SDK at a running kfbox.

Example::

    kfbox kubeconfig -o ~/.kube/kfbox.yaml
    export KUBECONFIG=~/.kube/kfbox.yaml
    kubectl apply -f examples/iris/inference.yaml && kubectl get isvc -w
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from kfbox.cli.options import HomeOption, TokenOption, UrlOption
from kfbox.cli.output import err_console
from kfbox.client import resolve_url

CONTEXT = "kfbox"


def register(app: typer.Typer) -> None:
    app.command()(kubeconfig)


def build(server: str, token: str | None, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context named ``kfbox``."""
    user: dict[str, Any] = {"token": token} if token else {}
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
            "users": [{"name": CONTEXT, "user": user}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
            "current-context": CONTEXT}


def kubeconfig(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (mode 600) instead of printing.", show_default=False)] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The context's default namespace.")] = "default",
    url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
) -> None:
    """Print (or write) a kubeconfig for kubectl and the kserve SDK, pointing at the running kfbox."""
    server = resolve_url(url, home)
    text = yaml.safe_dump(build(server, token, namespace), sort_keys=False)
    if token and server.startswith("http://"):
        # client-go sends credentials over TLS only (kubernetes/kubectl#744); Python's client sends them anyway
        err_console.print("Note: kubectl sends the token only over https, so against this http:// server it "
                          "will get 401; the kserve SDK and the kubernetes Python client do send it. Put a TLS "
                          "proxy in front of kfbox for kubectl, or use kubectl on loopback without a token.")
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the token
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    err_console.print(f"Wrote {output}. Use it with: export KUBECONFIG={output}  (context {CONTEXT!r})")
