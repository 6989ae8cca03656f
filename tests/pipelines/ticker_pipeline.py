"""The pipeline the schedule tests fire: one quick task with a parameter."""
# no `from __future__ import annotations` here: kfp reads the annotations as types

from kfp import dsl


@dsl.component(base_image="python:3.11")
def echo(text: str) -> str:
    print(text)
    return text


@dsl.pipeline(name="ticker")
def ticker(text: str = "tick"):
    echo(text=text)
