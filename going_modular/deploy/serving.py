"""Run the exported model without torch: ONNX Runtime, NumPy and Pillow only (notebook 08; with ``app.py``, a Space's
code). ``Classifier("foodvision.onnx").predict(photo)`` reads foodvision.json beside the model, which says how a photo
becomes its input as the course's transforms do it, so nothing is typed twice."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime
from PIL import Image


class ModelFileError(ValueError):
    """The ONNX file or its preprocessing JSON is missing, damaged or not the course's export."""


class Result(NamedTuple):
    """One photo's prediction: {class: probability}, the attention [layers, heads, tokens, tokens] (None if the file
    has none), and the seconds the model took."""
    probabilities: dict[str, float]
    attention: np.ndarray | None
    seconds: float


def resize_and_crop(image: Image.Image, config: dict) -> Image.Image:
    """The part of ``image`` the model sees, as torchvision's Resize(resize) and CenterCrop(crop) make it."""
    image, resize, crop = image.convert("RGB"), config["resize"], config["crop"]
    width, height = image.size  # the shorter side becomes `resize`, the longer one truncated as torchvision does
    size = (resize, int(resize * height / width)) if width <= height else (int(resize * width / height), resize)
    image = image.resize(size, Image.Resampling[config["interpolation"].upper()])
    top, left = int(round((image.height - crop) / 2.0)), int(round((image.width - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def preprocess(image: Image.Image, config: dict) -> np.ndarray:
    """A PIL image -> the model's input [1, 3, crop, crop]: ``resize_and_crop``, ToTensor's [0, 1], Normalize."""
    pixels = np.asarray(resize_and_crop(image, config), dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(config["mean"], dtype=np.float32)) / np.asarray(config["std"], dtype=np.float32)
    return pixels.transpose(2, 0, 1)[None]


def rollout_map(attention: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020; notebook 07 derives it) of one photo's attention [L, H, T, T]: the
    class token's row of (A_L ... A_1), A_l = rows-normalised (head mean + I), over the patch grid [side, side]."""
    rollout = np.eye(attention.shape[-1], dtype=np.float64)
    for layer in attention.astype(np.float64):
        mixed = layer.mean(axis=0) + np.eye(layer.shape[-1])
        rollout = (mixed / mixed.sum(axis=-1, keepdims=True)) @ rollout
    side = int(round((len(rollout) - 1) ** 0.5))
    return rollout[0, 1:].reshape(side, side)


class Classifier:
    """The exported model and its preprocessing, ready to predict photos; ModelFileError when the ONNX file or its
    JSON is missing or damaged (the message names the file)."""

    def __init__(self, model_path: str | Path, config_path: str | Path | None = None,
                 threads: int | None = None) -> None:
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path is not None else model_path.with_suffix(".json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelFileError(f"{path} does not exist: export the model first (notebook 08, "
                                     f"going_modular.deploy.export.export_onnx), or give the right path.")
        try:
            self.config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelFileError(f"{config_path} is not the preprocessing JSON of an export ({error}): export the "
                                 f"model again.") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own error types for a damaged or truncated file
            raise ModelFileError(f"{model_path} is not a readable ONNX model ({str(error).splitlines()[0][:200]}): "
                                 f"export it again, or download it again if it was copied.") from None
        self.class_names = list(self.config["class_names"])
        self.outputs = [output.name for output in self.session.get_outputs()]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The logits [batch, classes] of preprocessed images [batch, 3, crop, crop]."""
        return self.session.run(["logits"], {"images": images.astype(np.float32)})[0]

    def predict(self, image: Image.Image) -> Result:
        """One photo's class probabilities, attention (if exported) and time."""
        inputs = preprocess(image, self.config)
        start = time.perf_counter()
        values = dict(zip(self.outputs, self.session.run(self.outputs, {"images": inputs})))
        seconds = time.perf_counter() - start
        exp = np.exp(values["logits"][0] - values["logits"][0].max())  # softmax, shifted so that exp cannot overflow
        probabilities = dict(zip(self.class_names, map(float, exp / exp.sum())))
        return Result(probabilities, values["attention"][0] if "attention" in values else None, seconds)
