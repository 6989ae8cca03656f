"""``Platform.services`` is typed: one attribute per subsystem, declared with its class; ``required`` names
a subsystem that is off instead of failing on ``None``."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from kfbox.errors import Unavailable
from kfbox.server.platform import Services, required


def test_every_installed_subsystem_object_is_declared_with_its_class(app_client: TestClient) -> None:
    services = app_client.app.state.platform.services  # type: ignore[attr-defined]
    assert isinstance(services, Services)
    # class names: the annotations are postponed strings ("PipelinesService | None")
    declared = {f.name: str(f.type).removesuffix(" | None") for f in dataclasses.fields(Services)}
    installed = services.installed()
    core = {"pipelines", "schedules", "secrets", "registry", "serving", "inferenceservices", "monitoring"}
    assert core <= set(installed)
    for name, obj in installed.items():
        assert type(obj).__name__ == declared[name], name


def test_a_subsystem_that_is_off_is_unavailable_by_name() -> None:
    services = Services()
    assert services.installed() == {}
    with pytest.raises(Unavailable, match="The registry subsystem is not running"):
        required(services.registry, "registry")
