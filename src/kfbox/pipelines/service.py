"""Mounts the pipelines subsystem into the platform app (filled in by its issue)."""

from __future__ import annotations

from fastapi import FastAPI

from kfbox.server.platform import Platform


def install(app: FastAPI, platform: Platform) -> None:
    return None
