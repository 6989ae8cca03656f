"""Loading a model from a GGUF file with transformers, parsing the file once instead of three times.

``from_pretrained(..., gguf_file=...)`` of a tokenizer and then a model reads the file's metadata three
times (the tokenizer's config, the model's config, the weights), each through a new ``gguf.GGUFReader``
that parses every field, vocabulary and merges included, with a numpy slice of the file per element.
The weights map then calls ``gguf.get_tensor_name_map(arch, n_blocks)`` once per module (397 times for
SmolLM2-135M), building the same table each time. Within ``parsed_once()`` a file gets one reader, over
a plain array view of its mapping (slicing an ``np.memmap`` runs Python code per slice), and an
architecture one name map: SmolLM2's first load takes a quarter of the CPU (5.6 s against 24.8 s), with the same
weights (benchmarks/llm_load.py).

transformers imports both names from ``gguf`` when it calls them, so replacing them on the module is
enough; a transformers that no longer calls them loads as before, only without the gain.

Imports ``gguf``: import this module only where ``gguf`` is installed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any, Literal

import gguf
import numpy as np

_ONE_AT_A_TIME = threading.RLock()
_open = False
"""Whether a block is open (read and written under the lock): a block inside it, in its thread, is part of it."""


class PlainReader(gguf.GGUFReader):
    """``gguf.GGUFReader`` over a plain ndarray view of its read-only ``np.memmap``: the same bytes, without
    ``memmap.__getitem__`` and ``__array_finalize__`` (Python) on each of the ~250k slices the reader takes
    of a 49k-word vocabulary, nor on each element transformers reads back. The view holds the mapping."""

    @property  # type: ignore[override]  # the base class assigns a plain attribute in __init__
    def data(self) -> np.ndarray[Any, Any]:
        return self._plain

    @data.setter
    def data(self, mapped: np.ndarray[Any, Any]) -> None:
        self._plain = mapped.view(np.ndarray)


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """Within the block ``gguf.GGUFReader(path)`` is one ``PlainReader`` per file and
    ``gguf.get_tensor_name_map(arch, n_blocks)`` one map per argument; both are ``gguf``'s own after it.

    The replacements are on the ``gguf`` module, so other threads see them too while the block runs. That is
    safe where it is used, a model replica loading its one chat model under its lock: another reader of the
    file in that window would get the same read-only reader of the same unchanged bytes, and a name map is
    a pure function of its arguments that transformers only looks names up in. Blocks in several threads take
    turns, so each restores the originals; a block inside a block is part of the outer one. Inside a block
    ``gguf.GGUFReader`` is a function, not a class (transformers only calls it).

    Example::

        with parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    """
    global _open
    with _ONE_AT_A_TIME:
        if _open:
            yield
            return
        reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
        readers: dict[str, PlainReader] = {}

        def read(path: os.PathLike[str] | str, mode: Literal["r", "r+", "c"] = "r") -> Any:
            if mode != "r":  # a writable mapping is not ours to share
                return reader(path, mode)
            key = os.path.realpath(path)
            if key not in readers:
                readers[key] = PlainReader(path)
            return readers[key]

        gguf.GGUFReader, gguf.get_tensor_name_map = read, functools.cache(name_map)  # type: ignore[misc,assignment]
        _open = True
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[misc]
            _open = False
