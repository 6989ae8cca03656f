"""Pipelines the schedule and secret tests compile: one quick task each."""
# no `from __future__ import annotations` here: kfp reads the annotations as types

from typing import Any

from kfp import dsl, kubernetes


@dsl.component(base_image="python:3.11")
def echo(text: str) -> str:
    print(text)
    return text


@dsl.pipeline(name="ticker")
def ticker(text: str = "tick"):
    echo(text=text)


@dsl.pipeline(name="with-secrets")
def echo_with_secrets():
    task = echo(text="x")
    kubernetes.use_secret_as_env(task, secret_name="db", secret_key_to_env={"password": "DB_PASSWORD"})
    kubernetes.use_secret_as_volume(task, secret_name="db", mount_path="/mnt/db")
    kubernetes.use_secret_as_volume(task, secret_name="extra", mount_path="/mnt/extra", optional=True)
    kubernetes.use_config_map_as_env(task, config_map_name="settings", config_map_key_to_env={"mode": "MODE"})
    kubernetes.use_config_map_as_volume(task, config_map_name="settings", mount_path="/etc/settings")


@dsl.container_component
def greet_in_shell(name: str, greeting: dsl.OutputPath(str), report: dsl.Output[dsl.Dataset]):
    return dsl.ContainerSpec(
        image="alpine:3.20", command=["sh", "-c"],
        args=['echo "hello $0" > "$1" && echo "rows: 3" > "$2"', name, greeting, report.path])


def _shell_greeting() -> Any:
    """Built on first use (module __getattr__ below), not at import: kfp's set_env_variable runs inspect.stack(),
    ~0.2 s of CPU under pytest's deep stack, and every pytest worker imports this module."""
    @dsl.pipeline(name="shell-greeting")
    def shell_greeting(name: str = "kfbox"):
        task = greet_in_shell(name=name)
        task.set_env_variable("GREETING_TOKEN", "t0ps3cret")

    return shell_greeting


@dsl.pipeline(name="secret-by-parameter")
def secret_by_parameter(secret: str = "db"):
    task = echo(text="x")
    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={"password": "DB_PASSWORD"})


@dsl.component(base_image="python:3.11")
def digest_of_env(name: str) -> str:
    import hashlib
    import os

    return hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()


@dsl.pipeline(name="secret-env")
def secret_env():
    secret = digest_of_env(name="DB_PASSWORD").set_caching_options(False)
    kubernetes.use_secret_as_env(secret, secret_name="db", secret_key_to_env={"password": "DB_PASSWORD"})
    config = echo(text="config").set_caching_options(False)
    kubernetes.use_config_map_as_env(config, config_map_name="settings", config_map_key_to_env={"mode": "MODE"})


@dsl.container_component
def long_running():
    return dsl.ContainerSpec(image="alpine:3.20", command=["sleep", "300"])


@dsl.pipeline(name="long-container")
def long_container():
    long_running().set_caching_options(False)


@dsl.pipeline(name="gs-importing")
def gs_importing():
    dsl.importer(artifact_uri="gs://bucket/notes.txt", artifact_class=dsl.Dataset, reimport=False)


def __getattr__(name: str) -> Any:
    if name != "shell_greeting":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    pipeline = globals()[name] = _shell_greeting()
    return pipeline
