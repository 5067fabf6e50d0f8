"""The course's ViT as one ONNX file, its preprocessing as JSON, int8 copies, and what each costs (notebook 08).

    export_onnx(model, "models/foodvision.onnx", transform, class_names)   # + models/foodvision.json
    quantize("models/foodvision.onnx", "models/foodvision_int8.onnx")      # dynamic int8; static with photos
    measure(size, logits, one_thread, photo, batch, scoring)               # a row of the table: size, time, accuracy

The file outputs the logits and every layer's attention [batch, layers, heads, tokens, tokens] (the app's rollout,
the Explore page); its batch axis is dynamic. ``serving`` runs it without torch."""
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
from going_modular.features import extract_features, train_head, vit_backbone
from going_modular.model_builder import ViT
from going_modular.pretrained import load_pretrained_vit
from going_modular.utils import PathLike, write_atomically


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
    class_names}; ValueError unless ``transform`` is Resize(int), CenterCrop, ToTensor, Normalize (the weights' own)."""
    steps = {type(step).__name__: step for step in transform.transforms}
    if list(steps) != ["Resize", "CenterCrop", "ToTensor", "Normalize"] or not isinstance(steps["Resize"].size, int):
        raise ValueError(f"Expected Resize(shorter side), CenterCrop, ToTensor, Normalize, got {transform}: export the "
                         f"model with the transforms of its weights (load_pretrained_vit returns them).")
    return {"resize": steps["Resize"].size, "crop": steps["CenterCrop"].size[0],
            "interpolation": steps["Resize"].interpolation.value, "mean": list(steps["Normalize"].mean),
            "std": list(steps["Normalize"].std), "class_names": list(class_names)}


def export_onnx(model: ViT, path: PathLike, transform: transforms.Compose, class_names: Sequence[str],
                opset: int = 18) -> Path:
    """Export ``model`` (eval mode) to ``path`` (``torch.onnx.export``, dynamo) and its preprocessing beside it as
    .json, each whole or not at all; ValueError when ``transform`` cannot be written down (``preprocessing_config``)."""
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
        self.inputs = ({"images": image[None].astype(np.float32)} for image in images)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        return next(self.inputs, None)


def quantize(path: PathLike, output: PathLike, calibration_images: Optional[np.ndarray] = None) -> Path:
    """An int8 copy of the export at ``path`` (its JSON copied beside it): dynamic (weights int8, activations
    quantized on the fly) without ``calibration_images``, static (activation ranges measured on those preprocessed
    photos, training photos only) with them, by ``onnxruntime.quantization`` (its log lines kept out of the output)."""
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
    """Notebook 06's frozen-head model, the one deployed: the ImageNet-trained ViT-Ti/16 and a new 3-class head trained
    by Adam at 1e-3 on the cached features of ``data_dir``/train (seed 42, chosen there before any result), in eval
    mode on the CPU, with its transforms and class names; PretrainedWeightsUnavailableError without the weights."""
    model, transform = load_pretrained_vit(num_classes=3, device=device)
    loader, _, class_names = create_dataloaders(Path(data_dir) / "train", Path(data_dir) / "test", transform,
                                                batch_size=32, num_workers=0)
    in_order = DataLoader(loader.dataset, batch_size=32, shuffle=False)
    cached = extract_features(vit_backbone(model), in_order, device, progress=False, max_batches=max_batches)
    with contextlib.redirect_stdout(io.StringIO()):  # one line per epoch
        train_head(model.head, cached, cached, device, seed=seed, epochs=epochs, batch_size=32)
    return model.cpu().eval(), transform, class_names


class Milliseconds(NamedTuple):
    """Milliseconds per call: the median and the 10th and 90th percentiles (the spread)."""
    median: float
    p10: float
    p90: float

    def __str__(self) -> str:
        return f"{self.median:.1f} ({self.p10:.1f}-{self.p90:.1f})"


def timed(run: Callable[[np.ndarray], object], images: np.ndarray, runs: int = 50, warmup: int = 5) -> Milliseconds:
    """``run(images)`` timed over ``runs`` calls, after ``warmup`` calls left out."""
    times = []
    for _ in range(warmup + runs):
        start = time.perf_counter()
        run(images)
        times.append((time.perf_counter() - start) * 1000)
    deciles = statistics.quantiles(times[warmup:], n=10)
    return Milliseconds(statistics.median(times[warmup:]), deciles[0], deciles[-1])


def torch_logits(model: nn.Module, threads: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    """``model``'s logits as a function of a NumPy batch: PyTorch eager, inference mode, on ``threads`` threads
    (None: torch's setting). ``serving.Classifier(path, threads).logits`` is the same for an ONNX file."""
    def logits(images: np.ndarray) -> np.ndarray:
        default = torch.get_num_threads()
        torch.set_num_threads(threads or default)
        try:
            with torch.inference_mode():
                return model(torch.from_numpy(images)).numpy()
        finally:
            torch.set_num_threads(default)
    return logits


def accuracy(logits: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
             batch_size: int = 32) -> float:
    """The share of ``images`` whose largest logit is their label."""
    predicted = np.concatenate([np.asarray(logits(images[start:start + batch_size])).argmax(axis=1)
                                for start in range(0, len(images), batch_size)])
    return float((predicted == labels).mean())


def measure(size_bytes: int, logits: Callable[[np.ndarray], np.ndarray], one_thread: Callable[[np.ndarray], object],
            photo: np.ndarray, batch: np.ndarray, scoring: dict[str, tuple[np.ndarray, np.ndarray]],
            runs: int = 50) -> dict[str, object]:
    """One row of notebook 08's table, measured now: file size; milliseconds per photo at batch 1 (``timed``), on
    one thread and on all; photos per second at ``batch``; accuracy on each of ``scoring``'s (images, labels)."""
    return {"file (MB)": size_bytes / 1e6, "ms per photo, 1 thread": timed(one_thread, photo, runs),
            "ms per photo, all threads": timed(logits, photo, runs),
            f"photos/s, batch {len(batch)}": len(batch) * 1000 / timed(logits, batch, 3, warmup=1).median,
            **{f"{split} accuracy": accuracy(logits, *data) for split, data in scoring.items()}}


def markdown_table(rows: dict[str, dict[str, object]]) -> str:
    """``measure``'s rows, by model name, as Markdown; "-" where a row has no accuracy (random weights)."""
    columns = list(max(rows.values(), key=len))
    lines = [f"| model | {' | '.join(columns)} |", "| --- " * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        cells = ["-" if column not in row else f"{row[column]:.3f}" if "accuracy" in column else
                 f"{row[column]:.1f}" if isinstance(row[column], float) else str(row[column]) for column in columns]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


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
