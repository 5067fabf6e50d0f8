"""DeiT's distillation through attention (going_modular.training.distillation and train --distill): the token and
its head, the averaged prediction, both losses against hand-computed values, a frozen teacher, exact resumption."""
import math
import signal

import pytest
import torch
import torchvision
from torch import nn

from going_modular import engine, train
from going_modular.model_builder import ViT
from going_modular.training import checkpoint, distillation
from test_resume import KILLER, _assert_same_run, _dataset, _flags, _run


def tiny_vit(**options) -> ViT:
    return ViT(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=24, mlp_size=48, num_heads=2,
               num_classes=3, **options)


def test_the_distillation_token_adds_one_token_one_position_and_one_head():
    torch.manual_seed(0)
    plain, distilled = tiny_vit(), tiny_vit(distillation_token=True)
    assert set(distilled.state_dict()) - set(plain.state_dict()) == {
        "distillation_token", "head_dist.weight", "head_dist.bias"}
    assert distilled.position_embedding.shape == (1, 16 + 2, 24) and plain.position_embedding.shape == (1, 17, 24)
    images = torch.randn(5, 3, 32, 32)
    assert distilled.forward_features(images).shape == (5, 18, 24)
    distilled.train()
    class_logits, distillation_logits = distilled(images)
    assert class_logits.shape == distillation_logits.shape == (5, 3)


def test_evaluation_predicts_the_mean_of_the_two_heads_softmaxes():
    torch.manual_seed(0)
    model = tiny_vit(distillation_token=True)
    for head in (model.head, model.head_dist):  # zero heads would make both predictions uniform
        nn.init.normal_(head.weight)
    images = torch.randn(4, 3, 32, 32)
    heads = distillation.head_logits(model, images)
    mean = (heads["class"].softmax(1) + heads["distillation"].softmax(1)) / 2
    assert not torch.allclose(heads["class"].softmax(1), heads["distillation"].softmax(1))
    with torch.no_grad():
        predicted = model.eval()(images).softmax(1)
    torch.testing.assert_close(predicted, mean)
    torch.testing.assert_close(heads["average"].softmax(1), mean)
    with pytest.raises(ValueError, match="no distillation token"):
        distillation.head_logits(tiny_vit(), images)


def test_a_distillation_token_needs_the_class_token_pool():
    with pytest.raises(ValueError, match='pool="cls"'):
        tiny_vit(distillation_token=True, pool="mean")


# Two photos, three classes: the student's two heads, the teacher and the labels, small enough to check by hand.
CLASS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
DISTILL = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
TEACHER = torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, 0.0]])
LABELS = torch.tensor([0, 1])


def _cross_entropy(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(value) for value in logits)) - logits[target]


def test_hard_distillation_is_half_the_label_loss_and_half_the_teachers_class():
    loss = distillation.DistillationLoss(nn.CrossEntropyLoss(), "hard")(
        distillation.DistillationOutputs(CLASS, DISTILL, TEACHER), LABELS)
    label_term = (_cross_entropy([2, 0, 0], 0) + _cross_entropy([0, 1, 0], 1)) / 2
    teacher_term = (_cross_entropy([0, 1, 0], 1) + _cross_entropy([0, 0, 3], 0)) / 2  # the teacher says 1, then 0
    assert loss.item() == pytest.approx(label_term / 2 + teacher_term / 2, rel=1e-6)


def test_soft_distillation_weighs_the_tempered_kl_divergence():
    tau, weight = 3.0, 0.1
    loss = distillation.DistillationLoss(nn.CrossEntropyLoss(), "soft", temperature=tau, weight=weight)(
        distillation.DistillationOutputs(CLASS, DISTILL, TEACHER), LABELS)

    def softmax(logits):
        exps = [math.exp(value / tau) for value in logits]
        return [value / sum(exps) for value in exps]
    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(teacher), softmax(student)))
             for teacher, student in zip(TEACHER.tolist(), DISTILL.tolist())) / 2
    label_term = (_cross_entropy([2, 0, 0], 0) + _cross_entropy([0, 1, 0], 1)) / 2
    assert loss.item() == pytest.approx((1 - weight) * label_term + weight * tau ** 2 * kl, rel=1e-6)


def test_evaluation_outputs_get_the_label_loss_alone_and_kinds_are_checked():
    base = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert distillation.DistillationLoss(base, "soft")(CLASS, LABELS).item() == base(CLASS, LABELS).item()
    with pytest.raises(ValueError, match="hard or soft"):
        distillation.DistillationLoss(base, "medium")


def test_the_teacher_stays_frozen_in_eval_mode_and_gets_no_gradient():
    torch.manual_seed(0)
    student, teacher = tiny_vit(distillation_token=True), torchvision.models.resnet18(num_classes=3)
    pair = distillation.TeacherStudent(student, teacher)
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 3, 32, 32),
                                                                        torch.randint(0, 3, (8,))), batch_size=4)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    engine.train_step(pair, loader, distillation.DistillationLoss(nn.CrossEntropyLoss()), optimizer, "cpu")
    assert pair.training and student.training and not teacher.training
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in teacher.parameters())
    assert all(torch.equal(value, before[name]) for name, value in teacher.state_dict().items())  # BatchNorm stats too
    assert student.head_dist.weight.abs().sum() > 0  # the distillation head learned
    pair.eval()
    assert pair(torch.randn(2, 3, 32, 32)).shape == (2, 3)  # evaluation: the student alone


@pytest.fixture(scope="module")
def teacher_and_run(tmp_path_factory):
    """A tiny ResNet-18 teacher, and a student distilled from it for 4 epochs without interruption."""
    root = tmp_path_factory.mktemp("distill")
    data_dir = _dataset(root / "data")
    teacher = _run(["-m", "going_modular.train", "--recipe", "ztm", "--model", "resnet18", "--image-size", "32",
                    "--batch-size", "4", "--epochs", "1", "--num-workers", "0", "--device", "cpu", "--model-name",
                    "teacher", "--data-dir", str(data_dir), "--output-dir", str(root)], root)
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    flags = ["--distill", "hard", "--teacher", str(root / "teacher.pth")]
    completed = _run(["-m", "going_modular.train", *_flags(data_dir, root / "uninterrupted", *flags)], root)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return data_dir, flags, root / "uninterrupted"


def test_a_distilled_student_resumes_exactly(teacher_and_run, tmp_path):
    data_dir, flags, reference_dir = teacher_and_run
    (tmp_path / "killer.py").write_text(KILLER)
    killed = _run(["killer.py", "2", "after", *_flags(data_dir, tmp_path / "out", *flags)], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert checkpoint.load_checkpoint(tmp_path / "out" / "run_checkpoint.pth")["epoch"] == 2
    resumed = _run(["-m", "going_modular.train", *_flags(data_dir, tmp_path / "out", *flags, "--resume")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(tmp_path / "out", reference_dir)
    weights = torch.load(reference_dir / "run.pth", weights_only=True)  # the student alone is saved
    assert "distillation_token" in weights and not any(key.startswith("teacher") for key in weights)


@pytest.mark.parametrize("flags, message", [
    (["--distill", "hard"], "--distill and --teacher go together"),
    (["--teacher", "teacher.pth"], "--distill and --teacher go together"),
    (["--no-distillation-token"], "--distillation-token belongs to distilling a ViT preset"),
    (["--distill", "soft", "--teacher", "missing.pth", "--distillation-token", "--model", "resnet18"],
     "--distillation-token belongs to distilling a ViT preset"),
])
def test_distillation_flags_that_do_not_fit_stop_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        train.parse_args(flags)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error


def test_a_missing_teacher_file_is_named_in_one_line(teacher_and_run, tmp_path, capsys):
    data_dir, _, _ = teacher_and_run
    with pytest.raises(SystemExit) as stopped:
        train.main(_flags(data_dir, tmp_path, "--distill", "hard", "--teacher", str(tmp_path / "missing.pth")))
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "missing.pth" in error and "\n" not in error
    assert not any(tmp_path.iterdir())  # nothing written


def test_without_distill_the_course_model_has_no_distillation_token():
    options = train.parse_args([])
    assert options.distill is None and options.teacher is None
    assert not any("dist" in key for key in train._create_model(options, 3).state_dict())


def test_a_pretrained_vit_teacher_sees_each_batch_resized_to_its_resolution(tmp_path):
    """The "not from scratch" teacher: the fine-tuned ViT-Ti/16 at 224 pixels teaching a 96-pixel student."""
    import torch.nn.functional as F

    from going_modular import pretrained, utils

    if not pretrained.pretrained_weights_path("vit_ti_16_augreg").exists():
        pytest.skip("The ViT-Ti/16 weights are not staged; .ci/run stages them from ../shared/weights/.")
    model, _ = pretrained.load_pretrained_vit("vit_ti_16_augreg", num_classes=3)
    nn.init.normal_(model.head.weight)  # a head that tells the classes apart
    utils.save_model(model, tmp_path, "teacher.pth")
    teacher = distillation.load_teacher("vit_ti_16_augreg", tmp_path / "teacher.pth", 3, "cpu").eval()
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model.eval()(F.interpolate(images, size=224, mode="bicubic", antialias=True))
        torch.testing.assert_close(teacher(images), expected)
    assert expected.abs().max() > 0.1
