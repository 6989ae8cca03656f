"""Where the runnable examples live and how a workflow loads one: ``examples/<name>/<file>.py``.

The examples are plain scripts beside the package (in a checkout or an editable install), not
part of it, so a workflow finds them by walking up from this file and imports the pipeline
module by path.

Example::

    module = load_example_module(find_example_dir("iris", "pipelines.py", "make run"), "pipelines.py")
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from kfbox.errors import NotFound


def find_example_dir(name: str, filename: str, make_target: str, start: Path | None = None) -> Path:
    """``examples/<name>`` of the source tree kfbox runs from: the first one holding ``filename``."""
    here = start or Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / name / filename).exists():
            return parent / "examples" / name
    raise NotFound(f"Cannot find examples/{name}/{filename} next to this kfbox. Run from a kfbox checkout "
                   f"(`{make_target}`) or pass --examples-dir PATH/examples/{name}.")


def load_example_module(examples_dir: Path, filename: str) -> ModuleType:
    """Import ``examples_dir/filename`` as module ``kfbox_<dir>_<stem>`` (kfp reads components from it)."""
    path = examples_dir / filename
    spec = importlib.util.spec_from_file_location(f"kfbox_{examples_dir.name}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise NotFound(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
