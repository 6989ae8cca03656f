"""``Platform.services`` is typed: every object a subsystem registers is declared in ``Services`` with its class."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kfbox.server.platform import Services


def test_every_registered_subsystem_object_is_declared_with_its_class(app_client: TestClient) -> None:
    services = app_client.app.state.platform.services  # type: ignore[attr-defined]
    # class names: the annotations are postponed (strings, or ForwardRefs once TypedDict wraps them)
    declared = {key: getattr(hint, "__forward_arg__", hint) for key, hint in Services.__annotations__.items()}
    core = {"pipelines", "schedules", "secrets", "registry", "serving", "inferenceservices", "monitoring"}
    assert core <= set(services)
    assert set(services) <= set(declared)
    for key, obj in services.items():
        assert type(obj).__name__ == declared[key], key
