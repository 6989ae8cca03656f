"""Tiny pipelines the tests run; each exercises one thing kfbox must get right."""
# no `from __future__ import annotations` here: kfp reads the annotations as types

from typing import Any

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

IMAGE = "python:3.11"


@dsl.component(base_image=IMAGE)
def make_dataset(rows: int, data: Output[Dataset]) -> int:
    with open(data.path, "w") as f:
        f.write("\n".join(str(i) for i in range(rows)))
    data.metadata["rows"] = rows
    return rows


@dsl.component(base_image=IMAGE)
def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


@dsl.component(base_image=IMAGE)
def add_all(values: list) -> int:
    return int(sum(values))


@dsl.component(base_image=IMAGE)
def train(data: Input[Dataset], scale: int, model: Output[Model], metrics: Output[Metrics],
          confusion: Output[ClassificationMetrics]) -> float:
    with open(data.path) as f:
        count = len(f.read().split())
    with open(model.path, "w") as f:
        f.write(f"model trained on {count} rows, scale {scale}")
    accuracy = 0.5 + min(count * scale, 40) / 100
    metrics.log_metric("accuracy", accuracy)
    confusion.log_confusion_matrix(["a", "b"], [[3, 1], [0, 4]])
    return accuracy


@dsl.component(base_image=IMAGE, packages_to_install=["model-registry"])
def register(model: Input[Model], name: str) -> str:
    import os

    from model_registry import ModelRegistry

    registry = ModelRegistry(
        os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local"),
        int(os.environ.get("MODEL_REGISTRY_PORT", "8080")), author="pipeline", is_secure=False,
        user_token=os.environ.get("MODEL_REGISTRY_TOKEN"))
    registered = registry.register_model(name, model.uri, version="v1", model_format_name="sklearn",
                                         model_format_version="1")
    return str(registered.id)


@dsl.component(base_image=IMAGE)
def say(message: str) -> str:
    print(message)
    return message


@dsl.component(base_image=IMAGE)
def report(status: dsl.PipelineTaskFinalStatus) -> str:
    print(f"pipeline finished: {status.state}")
    return status.state


@dsl.pipeline(name="acceptance")
def acceptance(items: list = [1, 2, 3], threshold: int = 5, model_name: str = "acceptance-model"):  # noqa: B006
    final = report()
    with dsl.ExitHandler(final):
        data = make_dataset(rows=8)
        with dsl.ParallelFor(items) as item:
            squared = square(x=item)
        total = add_all(values=dsl.Collected(squared.output))
        with dsl.If(total.output > threshold):
            trained = train(data=data.outputs["data"], scale=total.output)
            register(model=trained.outputs["model"], name=model_name)
        with dsl.Else():
            say(message="too small to train")


@dsl.component(base_image=IMAGE)
def explode(message: str) -> str:
    raise ValueError(f"boom: {message}")


@dsl.pipeline(name="failing")
def failing(message: str = "bad input"):
    broken = explode(message=message)
    say(message=broken.output)


@dsl.component(base_image=IMAGE)
def hang(seconds: int) -> None:
    import os
    import time

    print(f"pid={os.getpid()}", flush=True)
    time.sleep(seconds)


@dsl.pipeline(name="hanging")
def hanging(seconds: int = 600):
    hang(seconds=seconds)


@dsl.component(base_image=IMAGE)
def slow_square(x: int) -> int:
    import time

    time.sleep(1)
    return x * x


@dsl.pipeline(name="cacheable")
def cacheable(x: int = 3):
    first = slow_square(x=x)
    slow_square(x=first.output)


@dsl.component(base_image=IMAGE, packages_to_install=["scikit-learn", "numpy>=1.0", "pyyaml"])
def with_packages() -> str:
    import os

    import sklearn

    return f"{sklearn.__version__} index={os.environ.get('PIP_INDEX_URL')}"


# The pipelines that call PipelineTask.set_env_variable are built on first use (module __getattr__ below), not
# at import: kfp runs inspect.stack() in that call, ~0.3-0.8 s of CPU each under pytest's deep stack, and every
# pytest worker imports this module.
def _offline() -> Any:
    @dsl.pipeline(name="offline")
    def offline():
        task = with_packages()
        task.set_env_variable("PIP_NO_INDEX", "1")
        task.set_env_variable("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        task.set_caching_options(False)

    return offline


@dsl.container_component
def shell(message: str) -> dsl.ContainerSpec:
    return dsl.ContainerSpec(image="alpine:3", command=["echo"], args=[message])


@dsl.pipeline(name="containerised")
def containerised(message: str = "hi"):
    shell(message=message)


@dsl.pipeline(name="typed")
def typed(count: int, ratio: float = 0.5, label: str = "x", flag: bool = False):
    say(message=label)


@dsl.component(base_image=IMAGE)
def label() -> str:
    return "made-before-the-loop"


@dsl.component(base_image=IMAGE)
def combine(k: int, tag: str) -> str:
    import os

    return f"{k}:{tag}:{os.environ.get('KFBOX_SAMPLE_SETTING', 'unset')}:{os.getpid()}"


def _loop_reads_outer_output() -> Any:
    @dsl.pipeline(name="loop-reads-outer-output")
    def loop_reads_outer_output(ks: list = [2, 9]):  # noqa: B006
        """A ParallelFor body reading an output made before the loop (kfp.local 2.17 replaced it by the item)."""
        made = label()
        with dsl.ParallelFor(ks) as k:
            task = combine(k=k, tag=made.output)
            task.set_env_variable("KFBOX_SAMPLE_SETTING", "from-the-task")

    return loop_reads_outer_output


@dsl.component(base_image=IMAGE)
def needs_flag(flag: str, given: str) -> str:
    import os

    if not os.path.exists(flag):
        raise RuntimeError(f"no flag at {flag}")
    return given + "+flag"


@dsl.pipeline(name="flaky")
def flaky(flag: str):
    made = say(message="one").set_caching_options(False)
    needs_flag(flag=flag, given=made.output).set_caching_options(False)


_BUILT_ON_FIRST_USE = {"offline": _offline, "loop_reads_outer_output": _loop_reads_outer_output}


def __getattr__(name: str) -> Any:
    if name not in _BUILT_ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    pipeline = globals()[name] = _BUILT_ON_FIRST_USE[name]()
    return pipeline
