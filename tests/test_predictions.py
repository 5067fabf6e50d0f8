"""Tests for going_modular.predictions: awkward image files, validation, and batched prediction."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import transforms  # noqa: E402

from going_modular.data_setup import manual_transforms  # noqa: E402
from going_modular.predictions import Prediction, pred_and_plot_image, predict  # noqa: E402

CLASS_NAMES = ["pizza", "steak", "sushi"]
IMAGE_SIZE = (32, 32)




@pytest.fixture
def model() -> nn.Module:
    # Mean colour -> logits: different images get different, deterministic predictions.
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, len(CLASS_NAMES)))


class _RecordingTransform:
    """The default transform, remembering the size (width, height) of every PIL image it receives."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self._transform = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.ToTensor()])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        self.sizes.append(image.size)
        return self._transform(image)


def _check_result(result) -> None:
    pred_class, pred_prob = result
    assert pred_class in CLASS_NAMES
    assert isinstance(pred_prob, float)
    assert 1 / len(CLASS_NAMES) <= pred_prob <= 1  # the top class of a softmax


def test_rgba_png(tmp_path, model):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(path)
    _check_result(pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE))


def test_grayscale_png_and_the_plot_title(tmp_path, model):
    path = tmp_path / "gray.png"
    Image.new("L", (40, 30), 90).save(path)
    pred_class, pred_prob = pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
    _check_result((pred_class, pred_prob))
    assert plt.gca().get_title() == f"Pred: {pred_class} | Prob: {pred_prob:.3f}"


def test_exif_rotated_jpeg_reaches_the_transform_upright(tmp_path, model):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored sideways, display rotated 90 degrees clockwise
    Image.new("RGB", (40, 20), (10, 120, 200)).save(path, exif=exif)

    recorder = _RecordingTransform()
    _check_result(pred_and_plot_image(model, CLASS_NAMES, path, transform=recorder))
    assert recorder.sizes == [(20, 40)]


def test_text_file_named_jpg_gives_a_value_error_naming_it(tmp_path, model):
    path = tmp_path / "not_really.jpg"
    path.write_text("just some text")
    with pytest.raises(ValueError, match="not_really.jpg"):
        pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="not_really.jpg"):
        predict(model, [path], CLASS_NAMES, image_size=IMAGE_SIZE)


def test_wrong_number_of_class_names_gives_a_value_error_naming_both(tmp_path, model):
    path = tmp_path / "image.png"
    Image.new("RGB", (40, 30)).save(path)
    with pytest.raises(ValueError, match=r"3 output logits.*2 class_names"):
        pred_and_plot_image(model, CLASS_NAMES[:2], path, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"3 output logits.*4 class_names"):
        predict(model, [path], [*CLASS_NAMES, "ramen"], image_size=IMAGE_SIZE)


def test_default_transform_matches_the_course_transform(tmp_path, model):
    path = tmp_path / "image.png"
    Image.new("RGB", (40, 30), (30, 160, 90)).save(path)
    by_default = pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
    with_course_transform = pred_and_plot_image(model, CLASS_NAMES, path, transform=manual_transforms(IMAGE_SIZE[0]))
    assert by_default == with_course_transform


def test_predict_batches_in_order_and_matches_single_images(tmp_path, model):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 0), (0, 0, 0)]
    paths = []
    for index, colour in enumerate(colours):
        paths.append(tmp_path / f"image_{index}.png")
        Image.new("RGB", (36 + index, 30), colour).save(paths[-1])
    model.train()

    predictions = predict(model, [str(path) for path in paths], CLASS_NAMES, image_size=IMAGE_SIZE, batch_size=2)

    assert model.training  # predicting does not leave the model in eval mode
    assert len(predictions) == 5
    assert all(isinstance(prediction, Prediction) for prediction in predictions)
    assert [prediction.image_path for prediction in predictions] == paths
    assert len({prediction.pred_class for prediction in predictions}) > 1  # the images are told apart
    for prediction, path in zip(predictions, paths):
        single_class, single_prob = pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
        assert prediction.pred_class == single_class
        assert prediction.pred_prob == pytest.approx(single_prob, abs=1e-6)
        assert 1 / len(CLASS_NAMES) <= prediction.pred_prob <= 1


def test_predict_with_no_images_returns_an_empty_list(model):
    assert predict(model, [], CLASS_NAMES) == []


def test_predict_rejects_a_batch_size_below_one(model):
    with pytest.raises(ValueError, match="batch_size should be at least 1, got 0"):
        predict(model, [], CLASS_NAMES, batch_size=0)
