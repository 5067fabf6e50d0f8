"""FoodVision Mini as a Gradio app: upload a photo, see pizza, steak or sushi with their probabilities, the time the
prediction took and the attention rollout over the photo. It reads only the ONNX file and its JSON (no torch):
``python -m going_modular.deploy.app models/foodvision_space`` (the folder notebook 08 writes), or ``python app.py``
in that folder or on a Hugging Face Space."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the app sends nothing anywhere
import gradio as gr  # noqa: E402

try:
    from going_modular.deploy.serving import Classifier, resize_and_crop, rollout_map
except ImportError:  # in the Space folder, serving.py lies beside this file
    from serving import Classifier, resize_and_crop, rollout_map

MODEL_FILE = "foodvision.onnx"


def attention_overlay(image: Image.Image, attention_map: np.ndarray) -> Image.Image:
    """The photo as the model saw it, dimmed where the rollout is low: brightness from 25 % at its lowest value to
    100 % at its highest (stretched, as notebook 07 draws it)."""
    low, high = attention_map.min(), attention_map.max()
    stretched = (attention_map - low) / (high - low) if high > low else np.ones_like(attention_map)
    heat = Image.fromarray(np.uint8(255 * stretched)).resize(image.size, Image.Resampling.BILINEAR)
    brightness = 0.25 + 0.75 * np.asarray(heat, dtype=np.float32)[..., None] / 255
    return Image.fromarray(np.uint8(np.asarray(image, dtype=np.float32) * brightness))


def build_app(classifier: Classifier, examples: Sequence[str] = ()) -> gr.Interface:
    """One function, one photo in, three things out."""
    def predict(image: Image.Image) -> tuple[dict[str, float], str, Image.Image]:
        result = classifier.predict(image)
        overlay = attention_overlay(resize_and_crop(image, classifier.config), rollout_map(result.attention))
        return result.probabilities, f"{result.seconds * 1000:.0f} ms", overlay

    return gr.Interface(
        predict, gr.Image(type="pil", label="photo"),
        [gr.Label(num_top_classes=len(classifier.class_names), label="prediction"),
         gr.Textbox(label="time the model took"), gr.Image(label="attention rollout (what the class token drew on)")],
        examples=[[example] for example in examples] or None, title="FoodVision Mini: a ViT-Ti/16",
        description="Pizza, steak or sushi? The ImageNet-trained ViT-Ti/16 with a head trained on 225 photos "
                    "(the Vision Transformer course, notebook 08), run by ONNX Runtime.",
        flagging_mode="never")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="FoodVision Mini as a Gradio app.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path(__file__).resolve().parent,
                        help=f"The folder with {MODEL_FILE}, its JSON and examples/ (default: this file's).")
    parser.add_argument("--port", type=int, default=7860, help="The local port.")
    options = parser.parse_args(argv)
    examples = sorted(str(path) for path in (options.folder / "examples").glob("*.jpg"))
    build_app(Classifier(options.folder / MODEL_FILE), examples).launch(server_port=options.port)


if __name__ == "__main__":
    main()
