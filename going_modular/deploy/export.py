"""The course's ViT as one ONNX file, its preprocessing as JSON, int8 copies, and what each costs (notebook 08).

    export_onnx(model, "models/foodvision.onnx", transform, class_names)   # + models/foodvision.json
    quantize("models/foodvision.onnx", "models/foodvision_int8.onnx")      # dynamic int8; static with photos
    measure_latency(run, image), measure_throughput(run, batch), accuracy(run, images, labels)

The file outputs the logits and every layer's attention [batch, layers, heads, tokens, tokens] (the app's rollout,
the Explore page); its batch axis is dynamic. ``serving`` runs it without torch.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from going_modular.data_setup import create_dataloaders
from going_modular.deploy.serving import Classifier
from going_modular.features import extract_features, train_head, vit_backbone
from going_modular.model_builder import ViT
from going_modular.pretrained import load_pretrained_vit
from going_modular.utils import write_atomically

PathLike = Union[str, Path]


class _WithAttention(nn.Module):
    """The ViT's logits and its attention, stacked over layers: [B, classes], [B, L, heads, N + 1, N + 1]."""

    def __init__(self, model: ViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attention = self.model(images, return_attention=True)
        return logits, torch.stack(attention, dim=1)


def preprocessing_config(transform: transforms.Compose, class_names: Sequence[str]) -> dict:
    """What ``serving.preprocess`` needs to do what ``transform`` does: {resize, crop, interpolation, mean, std,
    class_names}.

    Raises:
        ValueError: ``transform`` is not Resize(int), CenterCrop, ToTensor, Normalize (the pretrained weights' own).
    """
    steps = {type(step).__name__: step for step in transform.transforms}
    if list(steps) != ["Resize", "CenterCrop", "ToTensor", "Normalize"] or not isinstance(steps["Resize"].size, int):
        raise ValueError(f"Expected Resize(shorter side), CenterCrop, ToTensor, Normalize, got {transform}: export the "
                         f"model with the transforms of its weights (load_pretrained_vit returns them).")
    crop = steps["CenterCrop"].size
    return {"resize": steps["Resize"].size, "crop": crop[0] if isinstance(crop, (tuple, list)) else crop,
            "interpolation": steps["Resize"].interpolation.value, "mean": list(steps["Normalize"].mean),
            "std": list(steps["Normalize"].std), "class_names": list(class_names)}


def export_onnx(model: ViT, path: PathLike, transform: transforms.Compose, class_names: Sequence[str],
                opset: int = 18) -> Path:
    """Export ``model`` (eval mode) with ``torch.onnx.export``'s dynamo exporter to ``path``, and its preprocessing
    to ``path`` with the suffix .json. Both are written whole or not at all. Returns ``path``.

    Raises:
        ValueError: ``transform`` cannot be written down (``preprocessing_config``).
    """
    path = Path(path)
    config = preprocessing_config(transform, class_names)
    example = torch.zeros(1, 3, config["crop"], config["crop"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            torch.onnx.export(_WithAttention(model.eval()), (example,), str(partial), dynamo=True,
                              opset_version=opset, input_names=["images"], output_names=["logits", "attention"],
                              dynamic_shapes={"images": {0: torch.export.Dim("batch")}}, external_data=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    write_atomically(path.with_suffix(".json"), lambda file: file.write(json.dumps(config, indent=1).encode()))
    return path


class _CalibrationPhotos:
    """ONNX Runtime's CalibrationDataReader over preprocessed photos, one at a time."""

    def __init__(self, images: np.ndarray) -> None:
        self.batches = iter(images[index:index + 1] for index in range(len(images)))

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch.astype(np.float32)}


def quantize(path: PathLike, output: PathLike, calibration_images: Optional[np.ndarray] = None) -> Path:
    """An int8 copy of the export at ``path`` (its JSON copied beside it): dynamic (weights int8, activations
    quantized on the fly) without ``calibration_images``, static (activation ranges measured on those preprocessed
    photos, training photos only) with them. ``onnxruntime.quantization`` does the work; its log lines are kept
    out of the output."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path, output = Path(path), Path(output)
    prepared = output.with_name(output.stem + "_prepared.onnx")
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # the quantizer warns once per LayerNorm weight it leaves alone
    try:
        if calibration_images is None:
            quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8)
        else:
            # Only the layers with weights: int8 softmax, LayerNorm and GELU outputs lose the ViT (chance accuracy).
            quantize_static(str(prepared), str(output), _CalibrationPhotos(calibration_images),
                            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm", "Conv"])
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)
    output.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    return output


def foodvision_mini(data_dir: PathLike, device: Union[str, torch.device] = "cpu", seed: int = 42,
                    epochs: int = 10, max_batches: Optional[int] = None) -> tuple[ViT, transforms.Compose, list[str]]:
    """Notebook 06's frozen-head model, the one deployed: the ImageNet-trained ViT-Ti/16 and a new 3-class head
    trained with Adam at 1e-3 for ``epochs`` epochs on the cached features of ``data_dir``/train (seed 42, chosen
    there before any result). Returns (model in eval mode on the CPU, its transforms, class names).

    Raises:
        pretrained.PretrainedWeightsUnavailableError: the weights are not there and cannot be downloaded.
    """
    model, transform = load_pretrained_vit(num_classes=3, device=device)
    loader, _, class_names = create_dataloaders(Path(data_dir) / "train", Path(data_dir) / "test", transform,
                                                batch_size=32, num_workers=0)
    in_order = DataLoader(loader.dataset, batch_size=32, shuffle=False)
    cached = extract_features(vit_backbone(model), in_order, device, progress=False, max_batches=max_batches)
    with contextlib.redirect_stdout(io.StringIO()):  # one line per epoch
        train_head(model.head, cached, cached, device, seed=seed, epochs=epochs, batch_size=32)
    return model.cpu().eval(), transform, class_names


class Candidate(NamedTuple):
    """One way to serve a model, as ``measure`` compares them: its file size, its logits as a function of a batch
    (all threads, and one thread), and whether its accuracy means anything (False: random weights)."""
    size_bytes: int
    logits: Callable[[np.ndarray], np.ndarray]
    one_thread: Callable[[np.ndarray], np.ndarray]
    scored: bool = True


def measure(candidates: dict[str, Candidate], photo: np.ndarray, batch: np.ndarray,
            scoring: dict[str, tuple[np.ndarray, np.ndarray]], runs: int = 50) -> list[dict]:
    """One row a candidate, all measured in this call: size in MB, latency at batch 1 (``measure_latency``, one
    thread and all), photos per second at ``batch``, and accuracy on each of ``scoring``'s (images, labels)."""
    rows = []
    for name, candidate in candidates.items():
        row = {"model": name, "size_mb": candidate.size_bytes / 1e6,
               "latency_1_thread": measure_latency(candidate.one_thread, photo, runs),
               "latency_all_threads": measure_latency(candidate.logits, photo, runs),
               "photos_per_second": measure_throughput(candidate.logits, batch)}
        for split, (images, labels) in scoring.items():
            row[f"{split}_accuracy"] = accuracy(candidate.logits, images, labels) if candidate.scored else None
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """``measure``'s rows as Markdown: latency as median (10th-90th percentile) in ms, accuracy to 3 decimals."""
    splits = [key.removesuffix("_accuracy") for key in rows[0] if key.endswith("_accuracy")]
    lines = ["| model | file (MB) | ms per photo, 1 thread | ms per photo, all threads | photos/s, batch "
             "32 | " + " | ".join(f"{split} accuracy" for split in splits) + " |",
             "| --- " * (5 + len(splits)) + "|"]
    for row in rows:
        latency = [f"{row[key]['median_ms']:.1f} ({row[key]['p10_ms']:.1f}-{row[key]['p90_ms']:.1f})"
                   for key in ("latency_1_thread", "latency_all_threads")]
        scores = ["-" if row[f"{split}_accuracy"] is None else f"{row[f'{split}_accuracy']:.3f}" for split in splits]
        lines.append(f"| {row['model']} | {row['size_mb']:.1f} | {' | '.join(latency)} | "
                     f"{row['photos_per_second']:.1f} | {' | '.join(scores)} |")
    return "\n".join(lines)


def onnx_candidate(path: PathLike) -> Candidate:
    """An exported file as a ``Candidate``: ONNX Runtime with its default threads, and with one."""
    return Candidate(Path(path).stat().st_size, Classifier(path).logits, Classifier(path, threads=1).logits)


def torch_candidate(model: nn.Module, size_bytes: int, scored: bool = True) -> Candidate:
    """A PyTorch model in eager mode as a ``Candidate`` (``torch.set_num_threads(1)`` for the one-thread runs)."""
    run = torch_runner(model)

    def one_thread(images: np.ndarray) -> np.ndarray:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(images)
        finally:
            torch.set_num_threads(threads)
    return Candidate(size_bytes, run, one_thread, scored)


def measure_latency(run: Callable[[np.ndarray], object], image: np.ndarray, runs: int = 50,
                    warmup: int = 5) -> dict[str, float]:
    """Milliseconds per call of ``run`` on one preprocessed photo [1, 3, H, W]: median, 10th and 90th percentile."""
    for _ in range(warmup):
        run(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        times.append((time.perf_counter() - start) * 1000)
    deciles = statistics.quantiles(times, n=10)
    return {"median_ms": statistics.median(times), "p10_ms": deciles[0], "p90_ms": deciles[-1]}


def measure_throughput(run: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int = 3) -> float:
    """Photos per second of ``run`` on ``batch`` (the best of ``repeats``, after one untimed call)."""
    run(batch)
    best = min(_seconds(run, batch) for _ in range(repeats))
    return len(batch) / best


def _seconds(run: Callable[[np.ndarray], object], batch: np.ndarray) -> float:
    start = time.perf_counter()
    run(batch)
    return time.perf_counter() - start


def accuracy(logits: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
             batch_size: int = 32) -> float:
    """The share of ``images`` whose largest logit is their label."""
    predicted = np.concatenate([np.asarray(logits(images[start:start + batch_size])).argmax(axis=1)
                                for start in range(0, len(images), batch_size)])
    return float((predicted == labels).mean())


def torch_runner(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``model``'s logits as a function of a NumPy batch, in inference mode (PyTorch eager)."""
    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(images)).numpy()
    return run


SPACE_REQUIREMENTS = ["gradio>=5", "onnxruntime>=1.17", "numpy>=1.23", "pillow>=9.1"]
SPACE_README = """---
title: FoodVision Mini
emoji: 🍕
colorFrom: red
colorTo: yellow
sdk: gradio
app_file: app.py
---

Pizza, steak or sushi: the ImageNet-trained ViT-Ti/16 with a new head trained on 225 photos, exported to ONNX and
run by ONNX Runtime (no torch). Built by notebook 08 of the Vision Transformer course.
"""


def write_space(folder: PathLike, model_path: PathLike, examples: Sequence[PathLike] = ()) -> Path:
    """Write the folder a Hugging Face Space runs: app.py and serving.py, the model as foodvision.onnx with its
    JSON, examples/, requirements.txt and README.md (the Space's settings). Nothing is uploaded. Returns ``folder``."""
    folder, model_path = Path(folder), Path(model_path)
    package = Path(__file__).resolve().parent
    (folder / "examples").mkdir(parents=True, exist_ok=True)
    for name in ("app.py", "serving.py"):
        shutil.copyfile(package / name, folder / name)
    shutil.copyfile(model_path, folder / "foodvision.onnx")
    shutil.copyfile(model_path.with_suffix(".json"), folder / "foodvision.json")
    for example in examples:
        shutil.copyfile(example, folder / "examples" / Path(example).name)
    (folder / "requirements.txt").write_text("\n".join(SPACE_REQUIREMENTS) + "\n")
    (folder / "README.md").write_text(SPACE_README)
    return folder
