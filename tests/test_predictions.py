"""Tests for going_modular.predictions: awkward image files, validation, and batched prediction."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn
from torchvision import transforms

from going_modular.data_setup import manual_transforms
from going_modular.predictions import (
    Prediction,
    confusion_matrix,
    plot_confusion_matrix,
    plot_predictions,
    pred_and_plot_image,
    predict,
)

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


def test_a_model_that_carries_its_preprocessing_is_fed_with_it_by_default(tmp_path, model):
    # load_pretrained_vit's weights normalise to [-1, 1]: the course's plain transform would silently feed [0, 1].
    path = tmp_path / "image.png"
    image = Image.new("RGB", (40, 30), (30, 160, 90))
    image.save(path)
    own = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor(), transforms.Normalize([0.5] * 3,
                                                                                                     [0.5] * 3)])
    model.preprocessing = own
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    predict(model, [path], CLASS_NAMES)
    pred_and_plot_image(model, CLASS_NAMES, path)
    predict(model, [path], CLASS_NAMES, transform=BY_HAND)  # a transform given still wins
    for images in seen[:2]:
        torch.testing.assert_close(images[0], own(image), atol=0, rtol=0)
    assert tuple(seen[2].shape) == (1, 3, *IMAGE_SIZE)


def test_the_arguments_in_the_other_helpers_order_are_refused_naming_the_right_one(tmp_path, model):
    path = tmp_path / "image.png"
    Image.new("RGB", (40, 30), RED).save(path)
    for image_path in (path, str(path)):
        with pytest.raises(TypeError, match=r"takes \(model, class_names, image_path\).*helper_functions"):
            pred_and_plot_image(model, image_path, CLASS_NAMES)


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


def test_predict_says_when_the_transform_gives_images_of_different_shapes(tmp_path, model):
    paths = [tmp_path / "wide.png", tmp_path / "tall.png"]
    Image.new("RGB", (40, 30)).save(paths[0])
    Image.new("RGB", (30, 40)).save(paths[1])
    with pytest.raises(ValueError, match="different shapes.*resizes every image"):
        predict(model, paths, CLASS_NAMES, transform=transforms.ToTensor())


# ------------------------------------------------------------------------------------------ plot_predictions


def _photos(tmp_path, classes: list[str]) -> list:
    """One small photo per entry, saved in a folder named after its class (the course's data layout)."""
    paths = []
    for index, class_name in enumerate(classes):
        folder = tmp_path / class_name
        folder.mkdir(exist_ok=True)
        paths.append(folder / f"photo_{index}.png")
        # Portrait photos fill their panel's height, leaving no spare room for titles unless the layout makes it.
        Image.new("RGB", (40, 60 + 7 * index), (20 * index, 80, 200)).save(paths[-1])
    return paths


def _boxes_overlap(first, second) -> bool:
    return first.x0 < second.x1 and second.x0 < first.x1 and first.y0 < second.y1 and second.y0 < first.y1


def test_plot_predictions_titles_each_photo_true_and_pred_in_green_or_red(tmp_path):
    paths = _photos(tmp_path, ["pizza", "steak", "sushi"])
    predictions = [Prediction(paths[0], "pizza", 0.91), Prediction(paths[1], "sushi", 0.5), Prediction(paths[2], "sushi", 0.777)]
    figure = plot_predictions(predictions, ncols=2, title="three photos")
    axes = figure.axes
    assert len(axes) == 4  # 2 rows x 2 columns, the last one empty
    assert [axis.get_title() for axis in axes[:3]] == [
        "true: pizza\npred: pizza (0.91)", "true: steak\npred: sushi (0.50)", "true: sushi\npred: sushi (0.78)"
    ]
    colours = [axis.title.get_color() for axis in axes[:3]]
    assert [to_rgba(colour) for colour in colours] == [to_rgba("green"), to_rgba("red"), to_rgba("green")]
    assert axes[3].get_title() == "" and not axes[3].images
    assert figure.get_suptitle() == "three photos"
    plt.close(figure)


def test_plot_predictions_true_classes_override_the_folder_names(tmp_path):
    paths = _photos(tmp_path, ["pizza", "pizza"])
    predictions = [Prediction(path, "steak", 0.6) for path in paths]
    figure = plot_predictions(predictions, true_classes=["steak", "pizza"])
    assert [axis.title.get_color() for axis in figure.axes] == ["green", "red"]
    assert figure.axes[0].get_title().startswith("true: steak\n")
    plt.close(figure)


def test_plot_predictions_shrinks_photos_for_display(tmp_path):
    path = tmp_path / "pizza" / "big.png"
    path.parent.mkdir()
    Image.new("RGB", (600, 300), (200, 10, 10)).save(path)
    figure = plot_predictions([Prediction(path, "pizza", 1.0)], max_pixels=100)
    assert figure.axes[0].images[0].get_array().shape[:2] == (50, 100)  # aspect ratio kept
    plt.close(figure)


@pytest.mark.parametrize("count, ncols", [(1, 4), (5, 5), (12, 4), (20, 6)])
def test_plot_predictions_titles_never_overlap(tmp_path, count, ncols):
    paths = _photos(tmp_path, ["sushi"] * count)
    predictions = [Prediction(path, "steak", 0.123) for path in paths]
    figure = plot_predictions(predictions, ncols=ncols, title="A long title over the whole grid of predictions")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    titles = [axis.title.get_window_extent(renderer) for axis in figure.axes if axis.get_title()]
    photos = [axis.get_window_extent(renderer) for axis in figure.axes]
    suptitle = figure._suptitle.get_window_extent(renderer)
    assert len(titles) == count
    for index, box in enumerate(titles):
        assert not _boxes_overlap(box, suptitle)
        assert all(not _boxes_overlap(box, other) for other in titles[index + 1 :])
        # Each title sits above its own photo and clear of every other panel's photo area.
        assert all(not _boxes_overlap(box, photo) for photo in photos)
    figure_box = figure.bbox
    assert all(figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and box.y1 <= figure_box.y1 for box in titles)
    plt.close(figure)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"predictions": []}, "no predictions"),
        ({"ncols": 0}, "ncols should be at least 1, got 0"),
        ({"true_classes": ["pizza", "steak"]}, "1 predictions but 2 true_classes"),
    ],
)
def test_plot_predictions_rejects_bad_input(tmp_path, kwargs, message):
    (path,) = _photos(tmp_path, ["pizza"])
    arguments = {"predictions": [Prediction(path, "pizza", 0.9)], **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_predictions(**arguments)


# ------------------------------------------------------------------------------------------ confusion matrix


def test_confusion_matrix_counts_rows_as_true_and_columns_as_predicted():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], torch.tensor([0, 1, 1, 2, 0, 2]), num_classes=3)
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_matrix([], [], num_classes=2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("true, pred, message", [
    ([0, 1], [0], "2 true labels but 1 predicted"),
    ([0, 3], [0, 1], r"true label is outside 0 .. 2: \[0, 3\]"),
    ([0, 1], [-1, 1], "predicted label is outside"),
])
def test_confusion_matrix_rejects_bad_labels(true, pred, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(true, pred, num_classes=3)


def test_plot_confusion_matrix_writes_every_count_and_the_accuracy():
    matrix = torch.tensor([[5, 1, 0], [0, 4, 0], [2, 0, 3]])
    figure = plot_confusion_matrix(matrix, CLASS_NAMES)
    axis = figure.axes[0]
    assert sorted(text.get_text() for text in axis.texts) == sorted(str(v) for v in matrix.flatten().tolist())
    assert axis.get_title() == "Confusion matrix (15 photos, accuracy 0.800)"
    assert [label.get_text() for label in axis.get_xticklabels()] == CLASS_NAMES
    with pytest.raises(ValueError, match=r"Expected a \[2, 2\] matrix for 2 class names, got \(3, 3\)"):
        plot_confusion_matrix(matrix, ["a", "b"])
    plt.close("all")

