"""Tests for going_modular.predictions: awkward image files, validation, and batched prediction."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn
from torchvision import transforms

from going_modular.data_setup import manual_transforms
from going_modular.predictions import Prediction, pred_and_plot_image, predict

CLASS_NAMES = ["pizza", "steak", "sushi"]
IMAGE_SIZE = (32, 32)
RED, BLUE = (200, 10, 10), (10, 120, 200)
# The default transform written out by hand, so the expected predictions do not come from the code under test.
BY_HAND = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.ToTensor()])


@pytest.fixture
def model() -> nn.Module:
    """Mean colour -> logits: mostly red is pizza, green steak, blue sushi; grey and black lean to steak."""
    classifier = nn.Linear(3, len(CLASS_NAMES))
    with torch.no_grad():
        classifier.weight.copy_(4 * torch.eye(3))
        classifier.bias.copy_(torch.tensor([0.0, 0.3, -0.3]))
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), classifier)


class _RecordingTransform:
    """The default transform, remembering the size (width, height) of every PIL image it receives."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, image: Image.Image) -> torch.Tensor:
        self.sizes.append(image.size)
        return BY_HAND(image)


def _expected(model: nn.Module, image: Image.Image) -> tuple[str, float]:
    """The prediction for an RGB image, worked out by hand: resize, to a tensor, model, softmax, top class."""
    pixels = BY_HAND(image)
    with torch.no_grad():
        probabilities = torch.softmax(model(pixels.unsqueeze(0)), dim=1)[0]
    return CLASS_NAMES[int(probabilities.argmax())], float(probabilities.max())


def _check_result(result, model: nn.Module, image: Image.Image, expected_class: str) -> None:
    """``result`` is the hand-worked prediction for ``image``, whose top class is ``expected_class``."""
    pred_class, pred_prob = result
    hand_class, hand_prob = _expected(model, image)
    assert hand_class == expected_class  # the fixture's model tells this image's class apart
    assert isinstance(pred_prob, float)
    assert (pred_class, pred_prob) == (hand_class, pytest.approx(hand_prob, abs=1e-6))


def _one_colour(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (40, 30), colour)


def test_rgba_png(tmp_path, model):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 30), (*RED, 128)).save(path)
    # load_image drops the alpha channel: the model sees the RGB colour as stored.
    result = pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
    _check_result(result, model, _one_colour(RED), "pizza")


def test_grayscale_png_and_the_plot_title(tmp_path, model):
    path = tmp_path / "gray.png"
    Image.new("L", (40, 30), 90).save(path)
    pred_class, pred_prob = pred_and_plot_image(model, CLASS_NAMES, path, image_size=IMAGE_SIZE)
    _check_result((pred_class, pred_prob), model, _one_colour((90, 90, 90)), "steak")
    assert plt.gca().get_title() == f"Pred: {pred_class} | Prob: {pred_prob:.3f}"


def test_exif_rotated_jpeg_reaches_the_transform_upright(tmp_path, model):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored sideways, display rotated 90 degrees clockwise
    Image.new("RGB", (40, 20), BLUE).save(path, exif=exif)

    recorder = _RecordingTransform()
    result = pred_and_plot_image(model, CLASS_NAMES, path, transform=recorder)
    assert recorder.sizes == [(20, 40)]
    with Image.open(path) as stored:  # JPEG is lossy: expect what the decoded (and turned) pixels give
        _check_result(result, model, ImageOps.exif_transpose(stored).convert("RGB"), "sushi")


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


def test_default_transform_is_the_course_transform_at_image_size(tmp_path, model):
    path = tmp_path / "image.png"
    image = Image.new("RGB", (40, 30), (30, 160, 90))
    image.paste((250, 0, 0), (0, 0, 20, 15))  # not one colour, so the resize has something to do
    image.save(path)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))

    pred_and_plot_image(model, CLASS_NAMES, path, image_size=(24, 40))
    predict(model, [path], CLASS_NAMES, image_size=20)

    assert [tuple(images.shape) for images in seen] == [(1, 3, 24, 40), (1, 3, 20, 20)]
    torch.testing.assert_close(seen[0][0], manual_transforms((24, 40))(image), atol=0, rtol=0)
    torch.testing.assert_close(seen[1][0], manual_transforms(20)(image), atol=0, rtol=0)


def test_predict_batches_in_order_and_matches_single_images(tmp_path, model):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 0), (0, 0, 0)]
    expected_classes = ["pizza", "steak", "sushi", "steak", "steak"]
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
    for prediction, colour, expected_class in zip(predictions, colours, expected_classes):
        _check_result((prediction.pred_class, prediction.pred_prob), model, _one_colour(colour), expected_class)
        single_class, single_prob = pred_and_plot_image(model, CLASS_NAMES, prediction.image_path, image_size=IMAGE_SIZE)
        assert prediction.pred_class == single_class
        assert prediction.pred_prob == pytest.approx(single_prob, abs=1e-6)


def test_predict_with_no_images_returns_an_empty_list(model):
    assert predict(model, [], CLASS_NAMES) == []


def test_predict_rejects_a_batch_size_below_one(model):
    with pytest.raises(ValueError, match="batch_size should be at least 1, got 0"):
        predict(model, [], CLASS_NAMES, batch_size=0)
