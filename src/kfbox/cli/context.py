"""``kfbox context add|use|list|remove``: saved Kubeflow clusters (or kfbox servers) to promote to.

Example::

    kfbox cluster expose dashboard && kfbox cluster expose s3
    kfbox context add kind --from-cluster kubeflow --check     # what kfbox cluster up installed
    kfbox context add kind --host http://127.0.0.1:8080 --auth dex --password "$PW" \\
        --kube-context kind-kubeflow --s3-endpoint http://127.0.0.1:8333 --check
    kfbox context add prod --host https://kubeflow.example.org --auth token --token "$(kubectl create token ...)"
    kfbox context use kind
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfbox.cli.options import HomeOption, OutputOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.cluster import dex
from kfbox.cluster.access import SERVICES, read_secret
from kfbox.cluster.contexts import Context, ContextStore
from kfbox.cluster.names import check_cluster_name
from kfbox.cluster.remote import Remote
from kfbox.cluster.runner import SubprocessRunner
from kfbox.cluster.state import cluster_dir
from kfbox.config import default_home
from kfbox.errors import InvalidInput

context_app = typer.Typer(help="Saved remote targets: Kubeflow clusters reached through their gateway.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(context_app, name="context")


@context_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Context name (a DNS-1123 label).", show_default=False)],
    host: Annotated[str | None, typer.Option("--host", help="Gateway URL, e.g. http://127.0.0.1:8080 (kfbox cluster expose dashboard).", show_default=False)] = None,
    from_cluster: Annotated[str | None, typer.Option("--from-cluster", help="Fill everything in from a kind cluster kfbox installed (its Dex password, kubectl context, SeaweedFS keys).", show_default=False)] = None,
    auth: Annotated[str, typer.Option("--auth", help="dex (session cookie), token (bearer) or none.")] = "dex",
    username: Annotated[str, typer.Option("--username", help="Dex user.")] = "user@example.com",
    password: Annotated[str | None, typer.Option("--password", envvar="KFBOX_CONTEXT_PASSWORD", help="Dex password.", show_default=False)] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="KFBOX_CONTEXT_TOKEN", help="Bearer token (kfbox cluster creds token).", show_default=False)] = None,
    kind: Annotated[str, typer.Option("--kind", help="kubeflow (a cluster) or kfbox (another kfbox server).")] = "kubeflow",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Profile namespace.")] = "kubeflow-user-example-com",
    kube_context: Annotated[str | None, typer.Option("--kube-context", help="kubectl context for InferenceServices (kind-kubeflow).", show_default=False)] = None,
    s3_endpoint: Annotated[str | None, typer.Option("--s3-endpoint", help="The cluster's S3 as reached from here (http://127.0.0.1:8333).", show_default=False)] = None,
    s3_cluster_endpoint: Annotated[str, typer.Option("--s3-cluster-endpoint", help="The same S3 as pods reach it.")] = "seaweedfs.kubeflow:8333",
    s3_bucket: Annotated[str, typer.Option("--s3-bucket")] = "mlpipeline",
    s3_prefix: Annotated[str, typer.Option("--s3-prefix", help="Key prefix of promoted files ({namespace} is filled in).")] = "private/{namespace}/models",
    s3_access_key: Annotated[str | None, typer.Option("--s3-access-key", envvar="KFBOX_CONTEXT_S3_ACCESS_KEY", show_default=False)] = None,
    s3_secret_key: Annotated[str | None, typer.Option("--s3-secret-key", envvar="KFBOX_CONTEXT_S3_SECRET_KEY", show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Log in and probe the Model Registry before saving.")] = False,
    use: Annotated[bool, typer.Option("--use/--no-use", help="Make it the current context.")] = True,
    home: HomeOption = None,
) -> None:
    """Save a remote target (secrets stay in <home>/contexts.json, mode 0600)."""
    home = (home or default_home()).expanduser()
    if from_cluster:
        host, password, kube_context, s3_endpoint, s3_access_key, s3_secret_key = _from_cluster(
            home, from_cluster, namespace, host, password, kube_context, s3_endpoint, s3_access_key, s3_secret_key)
    if not host:
        raise InvalidInput("Give the gateway URL with --host (or --from-cluster NAME for a kind cluster kfbox installed)")
    context = Context(name=name, host=host, auth=auth, kind=kind, namespace=namespace, username=username,
                      password=password, token=token, kube_context=kube_context, s3_endpoint=s3_endpoint,
                      s3_cluster_endpoint=s3_cluster_endpoint, s3_bucket=s3_bucket, s3_prefix=s3_prefix, s3_access_key=s3_access_key,
                      s3_secret_key=s3_secret_key).validate()
    if check:
        versions = Remote(context, home).registry_versions()
        console.print(f"Logged in to {context.host}; Model Registry at {versions['served']}", highlight=False)
        if versions["note"]:
            console.print(f"[yellow]Note:[/] {versions['note']}", highlight=False)
    ContextStore(home).add(context, make_current=use)
    console.print(f"Saved context {name!r}{' (current: commands now talk to it; back with: kfbox context use local)' if use else ''}.")


def _from_cluster(home: Path, cluster: str, namespace: str, host: str | None, password: str | None,
                  kube_context: str | None, s3_endpoint: str | None, access: str | None, secret: str | None,
                  ) -> tuple[str, str, str, str, str | None, str | None]:
    """What `kfbox cluster up` knows about a kind cluster; explicit flags win."""
    check_cluster_name(cluster)
    kube_context = kube_context or f"kind-{cluster}"
    if password is None:
        password, _ = dex.load_password(cluster_dir(home, cluster))
    if access is None or secret is None:
        keys = read_secret(SubprocessRunner(), kube_context, namespace, "mlpipeline-minio-artifact")
        access, secret = access or keys.get("accesskey"), secret or keys.get("secretkey")
    return (host or f"http://127.0.0.1:{SERVICES['dashboard'].local_port}", password, kube_context,
            s3_endpoint or f"http://127.0.0.1:{SERVICES['s3'].local_port}", access, secret)


@context_app.command("use")
def use_context(name: Annotated[str, typer.Argument(show_default=False)], home: HomeOption = None) -> None:
    """Make NAME the current context: commands without --url/--host/--context talk to it ('local': the local server)."""
    context = ContextStore((home or default_home()).expanduser()).use(name)
    if context is None:
        console.print("Current context: local (the server kfbox up started)", highlight=False)
    else:
        console.print(f"Current context: {name} ({context.host})", highlight=False)


@context_app.command("list")
def list_contexts(home: HomeOption = None, output: OutputOption = Output.table) -> None:
    """Saved contexts; secrets shown only as set or not."""
    store = ContextStore((home or default_home()).expanduser())
    current = store.current()
    rows = [{**c.public(), "current": c.name == current} for c in store.list()]
    if output is Output.json:
        print_json(rows)
        return
    print_table("Contexts", ["", "NAME", "HOST", "AUTH", "KIND", "NAMESPACE", "S3"],
                [["*" if r["current"] else "", r["name"], r["host"], r["auth"], r["kind"], r["namespace"],
                  r["s3_endpoint"] or ""] for r in rows])


@context_app.command("remove")
def remove(name: Annotated[str, typer.Argument(show_default=False)], home: HomeOption = None) -> None:
    """Forget a context (and its cached session)."""
    home = (home or default_home()).expanduser()
    ContextStore(home).remove(name)
    (home / "contexts" / f"{name}.cookies").unlink(missing_ok=True)
    console.print(f"Removed context {name!r}.")
