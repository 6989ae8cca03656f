"""Pipeline files as users write them: ``FILE.py[:PIPELINE]`` (compiled with the KFP compiler) or ``FILE.yaml``.

Used by the CLI (``kfbox run``, ``kfbox compile``); imports kfp only when a ``.py`` file is loaded.

Example::

    spec = load_spec("pipelines/train.py:training")      # the compiled run spec as a dict
    compile_file("pipelines/train.py", Path("train.yaml"))
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kfbox.errors import InvalidInput
from kfbox.pipelines import spec as specs


def split_target(target: str) -> tuple[Path, str | None]:
    """``dir/file.py:name`` -> (path, name); a Windows-free world, so the last ':' after '.py' splits."""
    path, sep, name = target.rpartition(":")
    if sep and path.endswith(".py"):
        return Path(path), name or None
    return Path(target), None


def load_pipeline(path: Path, name: str | None) -> Any:
    """The ``@dsl.pipeline`` object ``name`` from a Python file (the only one when no name is given)."""
    if not path.is_file():
        raise InvalidInput(f"Pipeline file {str(path)!r} does not exist.")
    from kfp.dsl import graph_component

    module_name = f"_kfbox_pipeline_{uuid.uuid4().hex[:8]}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InvalidInput(f"Cannot load {str(path)!r} as Python.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise InvalidInput(f"Pipeline file {str(path)!r} has a syntax error at line {exc.lineno}: {exc.msg}.") from exc
    except Exception as exc:
        raise InvalidInput(f"Pipeline file {str(path)!r} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    found = {k: v for k, v in vars(module).items() if isinstance(v, graph_component.GraphComponent)}
    if name is not None:
        if name not in found:
            raise InvalidInput(f"{str(path)!r} has no pipeline named {name!r}. Its pipelines: "
                               f"{', '.join(sorted(found)) or 'none (decorate a function with @dsl.pipeline)'}.")
        return found[name]
    if len(found) != 1:
        what = ", ".join(sorted(found)) if found else "none (decorate a function with @dsl.pipeline)"
        raise InvalidInput(f"{str(path)!r} defines {len(found)} pipelines; pick one with {path}:NAME. "
                           f"Its pipelines: {what}.")
    return next(iter(found.values()))


def compile_file(target: str, output: Path) -> Path:
    path, name = split_target(target)
    if path.suffix not in (".py",):
        raise InvalidInput(f"Compile takes a Python file (FILE.py[:PIPELINE]); got {target!r}.")
    from kfp import compiler

    pipeline = load_pipeline(path, name)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(output))
    return output


def load_spec(target: str) -> dict[str, Any]:
    """The run spec of a pipeline file: compiled from ``.py``, read from ``.yaml``/``.yml``/``.json``."""
    path, _ = split_target(target)
    if path.suffix == ".py":
        with tempfile.TemporaryDirectory() as tmp:
            compiled = compile_file(target, Path(tmp) / "pipeline.yaml")
            return specs.parse_package(compiled.read_bytes(), compiled.name)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise InvalidInput(f"Pipeline file {str(path)!r} does not exist.")
        return specs.parse_package(path.read_bytes(), path.name)
    raise InvalidInput(f"{target!r} is neither a Python pipeline file (FILE.py[:PIPELINE]) nor a compiled one "
                       "(FILE.yaml).")
