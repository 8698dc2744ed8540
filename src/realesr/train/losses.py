"""The losses of Real-ESRGAN: L1, VGG19 perceptual (BasicSR PerceptualLoss), GAN (vanilla BCE or relativistic)."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from realesr.archs.vgg import VGGFeatureExtractor, load_vgg19_imagenet

__all__ = ["PerceptualLoss", "build_perceptual_loss", "gan_loss_discriminator", "gan_loss_generator"]

log = logging.getLogger("realesr.train")


class PerceptualLoss(nn.Module):
    """Sum over layers of ``layer_weight * distance(vgg(x)[layer], vgg(gt)[layer])``, times ``weight``.

    The distance is the mean absolute (``l1``) or mean squared (``l2``) difference, as BasicSR's
    PerceptualLoss with ``criterion: l1``; the GT features carry no gradient.
    """

    def __init__(
        self,
        extractor: VGGFeatureExtractor,
        layer_weights: dict[str, float],
        weight: float = 1.0,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion must be l1 or l2, not {criterion!r}")
        self.vgg = extractor
        self.layer_weights = dict(layer_weights)
        self.weight = weight
        self.criterion = criterion

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        x_feats = self.vgg(x)
        with torch.no_grad():
            gt_feats = self.vgg(gt.detach())
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = x.new_zeros((), dtype=torch.float32)
        for name, w in self.layer_weights.items():
            total = total + w * distance(x_feats[name].float(), gt_feats[name].float())
        return total * self.weight


def build_perceptual_loss(
    layer_weights: dict[str, float],
    weight: float,
    weights: str,
    use_input_norm: bool,
    criterion: str,
    allow_download: bool = True,
) -> PerceptualLoss:
    """``weights``: ``imagenet`` (cached/downloaded vgg19-dcbb9e9d.pth), a .pth path, or ``random``."""
    extractor = VGGFeatureExtractor(list(layer_weights), use_input_norm=use_input_norm)
    if weights == "random":
        log.warning(
            "!!! loss.perceptual.weights is 'random': the perceptual loss uses an UNTRAINED VGG19. "
            "This is for smoke tests only; models trained so are not Real-ESRGAN. !!!"
        )
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in extractor.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.normal_(0, (2.0 / (m.in_channels * 9)) ** 0.5, generator=gen)
                    if m.bias is not None:
                        m.bias.zero_()
    else:
        extractor.load_torchvision_state_dict(load_vgg19_imagenet(weights, allow_download=allow_download))
    return PerceptualLoss(extractor, layer_weights, weight=weight, criterion=criterion)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def gan_loss_generator(
    fake_pred: torch.Tensor, real_pred: torch.Tensor | None, kind: str, real_label: float = 1.0, fake_label: float = 0.0
) -> torch.Tensor:
    """The generator's adversarial loss, unweighted.

    vanilla: BCE(D(fake), real). ragan (ESRGAN's relativistic average GAN): the mean of
    BCE(D(real) - mean D(fake), fake) and BCE(D(fake) - mean D(real), real); ``real_pred`` is then
    the discriminator's (detached) output on the GT.
    """
    if kind == "vanilla":
        return _bce(fake_pred, real_label)
    if kind == "ragan":
        if real_pred is None:
            raise ValueError("the relativistic GAN loss needs the discriminator's output on the GT")
        real_pred = real_pred.detach()
        return (_bce(real_pred - fake_pred.mean(), fake_label) + _bce(fake_pred - real_pred.mean(), real_label)) / 2
    raise ValueError(f"unknown GAN loss {kind!r}")


def gan_loss_discriminator(
    real_pred: torch.Tensor, fake_pred: torch.Tensor, kind: str, real_label: float = 1.0, fake_label: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's losses on the GT and on the (detached) output: ``(l_d_real, l_d_fake)``.

    vanilla: BCE(D(gt), real) and BCE(D(out), fake), as the official step (each back-propagated).
    ragan: BCE(D(gt) - mean D(out), real) / 2 and BCE(D(out) - mean D(gt), fake) / 2.
    """
    if kind == "vanilla":
        return _bce(real_pred, real_label), _bce(fake_pred, fake_label)
    if kind == "ragan":
        l_real = _bce(real_pred - fake_pred.detach().mean(), real_label) * 0.5
        l_fake = _bce(fake_pred - real_pred.detach().mean(), fake_label) * 0.5
        return l_real, l_fake
    raise ValueError(f"unknown GAN loss {kind!r}")
