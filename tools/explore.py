"""The files of the website's Explore page (docs/explore.md, docs/assets/explore.js), written when the site is built:

    python -m tools.explore site/explore      # what tools/site_hooks.py does after the English build

notebook 08's model (``deploy.export.foodvision_mini``) exported to ONNX with its attention and its preprocessing
JSON; ``explore.json`` with the position-embedding similarity of every two patches (Figure 7, centre) and the
photos to pick from; four of the course's photos; ONNX Runtime Web's files from node_modules/ (``npm ci``).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from going_modular import data_setup
from going_modular.common import settings
from going_modular.deploy import export
from going_modular.figures import figure7

ROOT = Path(__file__).resolve().parent.parent
ORT_DIST = ROOT / "node_modules" / "onnxruntime-web" / "dist"
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")


def build(folder: Path) -> Path:
    """Write the page's files into ``folder``; returns it.

    Raises:
        FileNotFoundError: ONNX Runtime Web is not installed (``npm ci``).
        data_setup.DownloadError, pretrained.PretrainedWeightsUnavailableError: the photos or weights are not there
            and cannot be downloaded.
    """
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise FileNotFoundError(f"The Explore page needs ONNX Runtime Web ({', '.join(missing)} in {ORT_DIST}): run "
                                f"`npm ci` in the repository first (node and npm: `sudo apt-get install nodejs npm`).")
    data_dir = data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    model, transform, class_names = export.foodvision_mini(data_dir)
    export.export_onnx(model, folder / "foodvision.onnx", transform, class_names)
    photos = {"04-pizza-dad.jpeg": data_setup.download_file(data_setup.CUSTOM_IMAGE_URL,
                                                            settings.get_data_dir() / "04-pizza-dad.jpeg")}
    for name in class_names:  # the first test photo of each class
        first = sorted((data_dir / "test" / name).glob("*.jpg"))[0]
        photos[f"{name}/{first.name}"] = first
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for photo in photos.values():
        shutil.copyfile(photo, folder / "photos" / photo.name)
    (folder / "ort").mkdir(exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(ORT_DIST / name, folder / "ort" / name)
    similarity = figure7.position_embedding_similarity(model).flatten(2).flatten(0, 1)  # [N, N], row-major patches
    extra = {"grid_size": model.grid_size[0], "patch_size": model.patch_size, "layers": len(model.transformer_encoder),
             "position_similarity": [[round(value, 4) for value in row] for row in similarity.tolist()],
             "photos": [{"file": f"photos/{photo.name}", "label": label} for label, photo in photos.items()]}
    (folder / "explore.json").write_text(json.dumps(extra, separators=(",", ":")))
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
