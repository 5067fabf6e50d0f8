"""Distillation through attention (Touvron et al., 2021, "Training data-efficient image transformers", DeiT): a
student learns from the true labels and from a frozen teacher that sees the same augmented batch:

    hard (DeiT's best):  1/2 CE(Z_cls, y) + 1/2 CE(Z_dist, argmax Z_t)                          (section 4)
    soft:                (1 - lambda) CE(Z_cls, y) + lambda tau^2 KL(softmax(Z_t / tau) || softmax(Z_dist / tau))

Z_cls and Z_dist are the student's class and distillation heads (``ViT(distillation_token=True)``); a student
without a distillation token puts both terms on its one head."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode, Resize

from going_modular import data_setup, pretrained, utils
from going_modular.model_builder import averaged_logits

DISTILLATION_KINDS = ("hard", "soft")
SOFT_TEMPERATURE, SOFT_WEIGHT = 3.0, 0.1  # DeiT's tau and lambda for soft distillation


class DistillationOutputs(NamedTuple):
    """What ``TeacherStudent`` returns in training: the student's two heads' logits (the same tensor twice for a
    student without a distillation token) and the teacher's. The engine's accuracy reads the first."""
    class_logits: torch.Tensor
    distillation_logits: torch.Tensor
    teacher_logits: torch.Tensor


class TeacherStudent(nn.Module):
    """The student beside a frozen teacher (always in eval mode): in training both see the batch and the forward pass
    returns ``DistillationOutputs``; in evaluation it is the student alone. Optimise and save the student."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "TeacherStudent":
        super().train(mode)
        self.teacher.eval()  # its dropout and BatchNorm statistics never change
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | DistillationOutputs:
        outputs = self.student(x)
        if not self.training:
            return outputs
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        class_logits, distillation_logits = outputs if isinstance(outputs, tuple) else (outputs, outputs)
        return DistillationOutputs(class_logits, distillation_logits, teacher_logits)


def load_teacher(name: str, path: Path, num_classes: int, device: Union[str, torch.device]) -> nn.Module:
    """The teacher of ``train --distill`` with the weights saved at ``path``: "resnet18", torchvision's ResNet-18
    (from scratch), or a ``pretrained.PRETRAINED_WEIGHTS`` name, that ViT fine-tuned at its weights' resolution
    ("not from scratch"), which sees each batch resized to it (bicubic); ValueError when its normalisation is not the
    course's (``data_setup.VIT_MEAN``, ``VIT_STD``), which the student's batches have."""
    if name == "resnet18":
        return utils.load_model(torchvision.models.resnet18(num_classes=num_classes), path, device)
    model, transform = pretrained.load_pretrained_vit(name, num_classes, device, freeze_backbone=False)
    normalize = transform.transforms[-1]
    if (tuple(normalize.mean), tuple(normalize.std)) != (data_setup.VIT_MEAN, data_setup.VIT_STD):
        raise ValueError(f"The {name} teacher expects inputs normalised with {normalize}, not the course's.")
    return nn.Sequential(Resize(model.img_size, InterpolationMode.BICUBIC, antialias=True),
                         utils.load_model(model, path, device))


class DistillationLoss(nn.Module):
    """DeiT's objective (module docstring; ``temperature`` tau, ``weight`` lambda) on ``DistillationOutputs``; on plain
    logits (evaluation) ``base_loss`` alone (the recipe's cross-entropy); ValueError for an unknown kind."""

    def __init__(self, base_loss: nn.Module, kind: str = "hard", temperature: float = SOFT_TEMPERATURE,
                 weight: float = SOFT_WEIGHT) -> None:
        super().__init__()
        if kind not in DISTILLATION_KINDS:
            raise ValueError(f"Distillation is {' or '.join(DISTILLATION_KINDS)}, got {kind!r}.")
        self.base_loss, self.kind, self.temperature, self.weight = base_loss, kind, temperature, weight

    def forward(self, outputs: torch.Tensor | DistillationOutputs, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, DistillationOutputs):
            return self.base_loss(outputs, labels)
        label_term = self.base_loss(outputs.class_logits, labels)
        if self.kind == "hard":
            return (label_term + F.cross_entropy(outputs.distillation_logits, outputs.teacher_logits.argmax(dim=1))) / 2
        tau = self.temperature
        teacher_term = F.kl_div(F.log_softmax(outputs.distillation_logits / tau, dim=1),
                                F.log_softmax(outputs.teacher_logits / tau, dim=1), reduction="batchmean",
                                log_target=True) * tau ** 2
        return (1 - self.weight) * label_term + self.weight * teacher_term


@torch.no_grad()
def head_logits(student: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A ``ViT(distillation_token=True)``'s eval-mode logits of each head alone and of their average, its prediction:
    {"class": ..., "distillation": ..., "average": ...}; ValueError when the model has no distillation token."""
    if getattr(student, "head_dist", None) is None:
        raise ValueError("This model has no distillation token: build it with ViT(distillation_token=True).")
    features = student.eval().forward_features(images)
    logits = student.train().forward_head(features)  # in training mode: the two heads' logits apart
    student.eval()
    return {"class": logits[0], "distillation": logits[1], "average": averaged_logits(logits)}
