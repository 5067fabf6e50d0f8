"""What deploying FoodVision Mini costs: PyTorch against ONNX Runtime, float32 against int8 (notebook 08's table).

    python benchmarks/deploy.py                # about 3 minutes on a 2-core CPU; prints the Markdown table

The model is notebook 06's frozen-head ViT-Ti/16 (``deploy.export.foodvision_mini``), exported to ONNX, then
quantized to int8 dynamically and statically (calibrated on every third training photo). Each row is measured in
this one run (``deploy.export.measure``, a row each): file size; milliseconds per photo at batch 1, median and 10th-90th
percentile over --runs calls, one thread and all; photos per second at batch 32; accuracy on the 75 test and the
391 validation photos. The chapter's ViT-B/16 feature extractor is measured with random weights (torchvision's
cannot be downloaded here): its size and time are real, it claims no accuracy.
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torchvision

from going_modular import data_setup
from going_modular.deploy import export
from going_modular.deploy.serving import Classifier
from going_modular.training import validation_split


def _state_dict_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _preprocessed(folder: Path, transform, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    loader = validation_split.create_validation_dataloader(folder, transform, 64, class_names, num_workers=0)
    images, labels = map(torch.cat, zip(*loader))
    return images.numpy(), labels.numpy()


def main(argv: Optional[Sequence[str]] = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="Timed calls at batch 1 per row and thread count.")
    parser.add_argument("--output-dir", type=Path, default=Path(tempfile.gettempdir()) / "deploy",
                        help="Where the ONNX files and deploy.json (the rows) go.")
    options = parser.parse_args(argv)

    data_dir = data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    val_dir = validation_split.download_validation_split()
    model, transform, class_names = export.foodvision_mini(data_dir)
    fp32 = export.export_onnx(model, options.output_dir / "foodvision.onnx", transform, class_names)
    train_photos = data_setup.image_folder(data_dir / "train", transform, "train")
    calibration = torch.stack([train_photos[index][0] for index in range(0, len(train_photos), 3)]).numpy()
    dynamic = export.quantize(fp32, options.output_dir / "foodvision_int8_dynamic.onnx")
    static = export.quantize(fp32, options.output_dir / "foodvision_int8_static.onnx", calibration)

    vit_b_16 = torchvision.models.vit_b_16(weights=None)
    vit_b_16.heads = torch.nn.Linear(768, len(class_names))  # the chapter's feature extractor: a new 3-class head
    runners = {  # name: (size in bytes, logits on all threads, logits on one thread)
        "PyTorch eager, float32": (_state_dict_bytes(model), export.torch_logits(model), export.torch_logits(model, 1)),
        **{f"ONNX Runtime, {kind}": (path.stat().st_size, Classifier(path).logits, Classifier(path, threads=1).logits)
           for kind, path in (("float32", fp32), ("dynamic int8", dynamic), ("static int8", static))},
        "the chapter's ViT-B/16 feature extractor, PyTorch (random weights: size and time only)": (
            _state_dict_bytes(vit_b_16), export.torch_logits(vit_b_16.eval()), export.torch_logits(vit_b_16, 1)),
    }
    scoring = {"test": _preprocessed(data_dir / "test", transform, class_names),
               "validation": _preprocessed(val_dir, transform, class_names)}
    rows = {name: export.measure(*runner, scoring["test"][0][:1], scoring["validation"][0][:32],
                                 {} if "random weights" in name else scoring, options.runs)
            for name, runner in runners.items()}
    (options.output_dir / "deploy.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(export.markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
