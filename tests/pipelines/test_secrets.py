"""Secrets and config maps: encrypted at rest on every database, never in a reply, a log or a repr;
what the engine gets for a task compiled with kfp-kubernetes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import Client, compiler
from typer.testing import CliRunner, Result

from kfbox.cli import main
from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.pipelines.secret_values import SealedSecrets, load_key, task_env, write_task_volumes
from kfbox.pipelines.secrets import SecretStore, seal
from tests.pipelines.conftest import wait_run
from tests.pipelines.ticker_pipeline import echo_with_secrets, secret_by_parameter, secret_env
from tests.support import ServerProcess

VALUE = "hunter2-Zq9xV7"  # distinctive, so a grep for it cannot match by chance


def store_at(url: str, home: Path, key: str | None = None) -> SecretStore:
    db = Database(url)
    db.upgrade()
    return SecretStore(db, lambda: load_key(home, key))


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's server (tests/pipelines/conftest.py)


def test_round_trip_on_every_database(database_url: str, tmp_path: Path) -> None:
    store = store_at(database_url, tmp_path)
    store.set("secret", "db", {"password": VALUE, "user": "app"})
    store.set("configmap", "settings", {"mode": "fast"})
    assert store.get("secret", "db") == {"password": VALUE, "user": "app"}
    store.set("secret", "db", {"token": "t"}, merge=True)
    assert sorted(store.get("secret", "db")) == ["password", "token", "user"]
    store.set("secret", "db", {"only": "this"})
    assert store.get("secret", "db") == {"only": "this"}
    assert [(e.name, e.keys) for e in store.list("configmap")] == [("settings", ["mode"])]
    store.delete("secret", "db")
    with pytest.raises(NotFound, match="kfbox secrets set db KEY=VALUE"):
        store.get("secret", "db")


def test_values_are_encrypted_at_rest_and_hidden_from_repr(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = store_at(f"sqlite:///{tmp_path / 'kfbox.db'}", home)
    store.set("secret", "db", {"password": VALUE})
    store.set("configmap", "plain", {"mode": "visible-config"})
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("kfbox.db*"))  # the database, its WAL and shm
    assert VALUE.encode() not in stored
    assert b"visible-config" in stored  # config maps are plain, so the grep above would have found it
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    values = store.get("secret", "db")
    assert VALUE not in repr(values) and VALUE not in str(values) and "password" in repr(values)
    assert VALUE not in repr(store) and key_file.read_text().strip() not in repr(store)


def test_a_changed_or_exposed_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kfbox.db'}"
    store_at(url, tmp_path / "a", key="first key").set("secret", "db", {"password": VALUE})
    assert store_at(url, tmp_path / "b", key="first key").get("secret", "db")["password"] == VALUE
    with pytest.raises(Conflict, match="cannot be decrypted with this server's key"):
        store_at(url, tmp_path / "c", key="another key").get("secret", "db")
    home = tmp_path / "home"
    load_key(home, None)
    os.chmod(home / "secret.key", 0o644)
    with pytest.raises(Conflict, match="chmod 600"):
        load_key(home, None)


@pytest.mark.parametrize(("kind", "name", "data", "message"), [
    ("secret", "DB", {"a": "b"}, "not a valid Kubernetes name"),
    ("secret", "db", {"../x": "b"}, "key '../x' is not valid"),
    ("configmap", "c", {"..": "b"}, "key '..' is not valid"),
    ("secret", "db", {}, "needs data"),
    ("secret", "db", {"a": 1}, "must have a string value"),
])
def test_bad_names_and_keys_are_refused(tmp_path: Path, kind: Any, name: str, data: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        store_at(f"sqlite:///{tmp_path / 'kfbox.db'}", tmp_path).set(kind, name, data)


def test_task_env_and_volumes_from_a_compiled_kfp_kubernetes_pipeline(tmp_path: Path) -> None:
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(echo_with_secrets, str(package))
    platform = list(yaml.safe_load_all(package.read_text()))[1]
    [config] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    store = store_at(f"sqlite:///{tmp_path / 'kfbox.db'}", tmp_path)
    with pytest.raises(NotFound, match="uses secret 'db', which does not exist"):
        task_env(store, config)
    store.set("secret", "db", {"password": VALUE})
    with pytest.raises(NotFound, match="uses config map 'settings'"):
        task_env(store, config)
    store.set("configmap", "settings", {"mode": "fast"})
    assert task_env(store, config) == {"DB_PASSWORD": VALUE, "MODE": "fast"}
    mounts = write_task_volumes(store, config, tmp_path / "sandbox")
    assert set(mounts) == {"/mnt/db", "/etc/settings"}  # /mnt/extra is optional and absent
    secret_file = mounts["/mnt/db"] / "password"
    assert secret_file.read_text() == VALUE and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert (mounts["/etc/settings"] / "mode").read_text() == "fast"


def test_a_sealed_run_job_gives_the_worker_what_the_store_would(tmp_path: Path) -> None:
    """The worker never opens the database: the server seals the run's secrets into its job, encrypted."""
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(echo_with_secrets, str(package))
    pipeline, platform = yaml.safe_load_all(package.read_text())
    spec = {"pipeline_spec": pipeline, "platform_spec": platform}
    [config] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    settings = Settings(home=tmp_path / "home")
    store = SecretStore.from_settings(Database(f"sqlite:///{tmp_path / 'kfbox.db'}"), settings)
    store.db.upgrade()
    assert seal(store, spec, {}) is None  # nothing it names exists yet
    store.set("secret", "db", {"password": VALUE})
    store.set("secret", "unrelated", {"other": "not-for-this-run"})
    store.set("configmap", "settings", {"mode": "fast"})
    token = seal(store, spec, {})
    assert token is not None and VALUE not in token and "not-for-this-run" not in token
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"secrets": token}))
    opened = SealedSecrets.open(json.loads(job.read_text())["secrets"], settings)
    assert task_env(opened, config) == task_env(store, config) == {"DB_PASSWORD": VALUE, "MODE": "fast"}
    assert VALUE not in repr(opened) and "unrelated" not in repr(opened)
    with pytest.raises(NotFound, match="uses secret 'unrelated'"):  # only what the spec names was sealed
        task_env(opened, {"secretAsEnv": [{"secretName": "unrelated",
                                           "keyToEnv": [{"secretKey": "other", "envVar": "X"}]}]})
    with pytest.raises(Conflict, match="Submit the run again"):
        SealedSecrets.open(token, Settings(home=tmp_path / "home", secret_key="a different key"))


def test_a_secret_named_by_a_pipeline_parameter_is_sealed(tmp_path: Path) -> None:
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(secret_by_parameter, str(package))
    pipeline, platform = yaml.safe_load_all(package.read_text())
    spec = {"pipeline_spec": pipeline, "platform_spec": platform}
    settings = Settings(home=tmp_path / "home")
    store = SecretStore.from_settings(Database(f"sqlite:///{tmp_path / 'kfbox.db'}"), settings)
    store.db.upgrade()
    store.set("secret", "db", {"password": "default"})
    store.set("secret", "prod", {"password": "chosen"})
    by_default = SealedSecrets.open(seal(store, spec, {}), settings)
    assert by_default.get("secret", "db") == {"password": "default"}
    chosen = SealedSecrets.open(seal(store, spec, {"secret": "prod"}), settings)
    assert chosen.get("secret", "prod") == {"password": "chosen"}


def test_api_and_cli_never_show_a_secret_value(server: ServerProcess, tmp_path: Path) -> None:
    http = server.client()
    created = http.put("/kfbox/v1/secrets/db", json={"data": {"password": VALUE, "user": "app"}})
    assert created.status_code == 200 and created.json()["keys"] == ["password", "user"]
    replies = [created, http.get("/kfbox/v1/secrets"), http.get("/kfbox/v1/secrets/db")]
    assert replies[1].json()["secrets"][0]["keys"] == ["password", "user"]
    assert all(VALUE not in r.text for r in replies)
    assert http.put("/kfbox/v1/configmaps/settings", json={"data": {"mode": "fast"}}).status_code == 200
    assert http.get("/kfbox/v1/configmaps/settings").json()["data"] == {"mode": "fast"}
    bad = http.put("/kfbox/v1/secrets/Bad_Name", json={"data": {"k": VALUE}})
    assert bad.status_code == 400 and "not a valid Kubernetes name" in bad.json()["message"]
    assert VALUE not in bad.text
    assert http.get("/kfbox/v1/secrets/nope").status_code == 404

    value_file = tmp_path / "token.txt"
    value_file.write_text(VALUE + "-file")
    runner = CliRunner()  # in-process: the same command objects the kfbox entry point runs

    def kfbox(*args: str) -> Result:
        return runner.invoke(main.app, [*args, "--url", server.url], env={"COLUMNS": "200"})

    made = kfbox("secrets", "set", "api", f"key={VALUE}", "--from-file", f"token={value_file}")
    assert made.exit_code == 0, made.output
    listed = kfbox("secrets", "list")
    assert "api" in listed.output and "key, token" in listed.output
    assert all(VALUE not in r.output for r in (made, listed))
    wrong = kfbox("secrets", "set", "api", f"no-equals-{VALUE}")
    assert isinstance(wrong.exception, InvalidInput) and "Argument 1 after the name is not KEY=VALUE" in str(
        wrong.exception)
    assert VALUE not in str(wrong.exception) + wrong.output
    binary = tmp_path / "key.der"
    binary.write_bytes(b"\xff\xfe\x00binary")
    refused = kfbox("secrets", "set", "api", "--from-file", f"der={binary}")
    assert isinstance(refused.exception, InvalidInput) and "base64" in str(refused.exception)
    assert kfbox("configmaps", "set", "cli", "a=1").exit_code == 0
    assert "a" in kfbox("configmaps", "get", "cli").output
    assert kfbox("secrets", "delete", "api").exit_code == 0
    gone = kfbox("secrets", "delete", "api")
    assert isinstance(gone.exception, NotFound) and "does not exist" in str(gone.exception)

    stored = b"".join(p.read_bytes() for p in server.home.glob("kfbox.db*"))
    assert VALUE.encode() not in stored
    assert VALUE not in server.log()


def test_a_task_gets_the_secret_and_nothing_keeps_it_in_clear(server: ServerProcess, kfp_client: Client) -> None:
    http = server.client()
    assert http.put("/kfbox/v1/secrets/db", json={"data": {"password": VALUE}}).status_code == 200
    assert http.put("/kfbox/v1/configmaps/settings", json={"data": {"mode": "fast"}}).status_code == 200
    run = kfp_client.create_run_from_pipeline_func(secret_env, experiment_name="secrets")
    body = wait_run(server, run.run_id)
    assert body["state"] == "SUCCEEDED", body.get("error")
    digests = [t["parameters"] for t in body["run_details"]["task_details"] if t["display_name"] == "digest-of-env"]
    assert digests and digests[0]["Output"] == hashlib.sha256(VALUE.encode()).hexdigest()
    for task in body["run_details"]["task_details"]:
        log = http.get(f"/apis/v2beta1/runs/{run.run_id}/tasks/{task['task_id']}/logs")
        assert VALUE not in log.text
    assert VALUE not in json.dumps(body)
    leaks = [p for p in server.home.rglob("*") if p.is_file() and p.name != "secret.key"
             and VALUE.encode() in p.read_bytes()]
    assert leaks == []
