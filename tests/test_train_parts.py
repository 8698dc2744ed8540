"""Training building blocks against closed forms and published facts: EMA, GAN/perceptual losses, VGG19 layout,
the frozen discriminator of the generator's step, partial initialisation across scales."""

import math

import pytest
import torch
from torch.nn import functional as F

from realesr.archs import RRDBNet, UNetDiscriminatorSN
from realesr.archs.vgg import VGG19_LAYER_NAMES, VGGFeatureExtractor, load_vgg19_imagenet
from realesr.errors import ModelNotFoundError, RealesrError, WeightsFormatError
from realesr.train.config import config_from_dict
from realesr.train.ema import ema_update
from realesr.train.loop import LRSchedule, discriminator_frozen, generator_losses, init_generator_from
from realesr.train.losses import PerceptualLoss, gan_loss_discriminator, gan_loss_generator

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_ema_matches_closed_form():
    # With the network held fixed at p, n updates give e_n = d^n e_0 + (1 - d^n) p.
    torch.manual_seed(0)
    net = RRDBNet(num_feat=4, num_block=1, num_grow_ch=2, scale=4)
    ema = RRDBNet(num_feat=4, num_block=1, num_grow_ch=2, scale=4)
    e0 = {k: v.clone() for k, v in ema.state_dict().items()}
    d, n = 0.999, 50
    for _ in range(n):
        ema_update(ema, net, d)
    for k, p in net.state_dict().items():
        expected = d**n * e0[k].double() + (1 - d**n) * p.double()
        assert torch.allclose(ema.state_dict()[k].double(), expected, atol=1e-6), k


def test_ema_one_step_by_hand():
    a, b = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(2.0)
        b.weight.fill_(10.0)
    ema_update(b, a, 0.9)  # 0.9 * 10 + 0.1 * 2
    assert b.weight.item() == pytest.approx(9.2)


def test_gan_losses_closed_forms():
    zeros = torch.zeros(2, 1, 4, 4)
    assert gan_loss_generator(zeros, None, "vanilla").item() == pytest.approx(math.log(2))
    real, fake = gan_loss_discriminator(zeros, zeros, "vanilla")
    assert real.item() == pytest.approx(math.log(2)) and fake.item() == pytest.approx(math.log(2))
    big = torch.full((1, 1, 2, 2), 20.0)
    assert gan_loss_generator(big, None, "vanilla").item() == pytest.approx(math.log1p(math.exp(-20)), rel=1e-3)
    real, fake = gan_loss_discriminator(big, -big, "vanilla")  # a perfect discriminator: both ~0
    assert real.item() < 1e-8 and fake.item() < 1e-8
    # relativistic: D(real) - mean D(fake) = 3 for the real term, D(fake) - mean D(real) = -3 for the fake one
    r, f = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), -2.0)
    lr_, lf = gan_loss_discriminator(r, f, "ragan")
    assert lr_.item() == pytest.approx(0.5 * math.log1p(math.exp(-3)), rel=1e-5)
    assert lf.item() == pytest.approx(0.5 * math.log1p(math.exp(-3)), rel=1e-5)
    g = gan_loss_generator(f, r, "ragan")  # (BCE(3, 0) + BCE(-3, 1)) / 2 = log(1 + e^3)
    assert g.item() == pytest.approx(math.log1p(math.exp(3)), rel=1e-5)


def test_vgg19_layout_is_torchvisions():
    # torchvision's vgg19().features: 37 modules, convolutions at these indices, 20,024,384 parameters
    # (143,667,240 in all minus the 123,642,856 of the classifier).
    full = VGGFeatureExtractor(["pool5"])
    convs = [i for i, m in enumerate(full.features) if isinstance(m, torch.nn.Conv2d)]
    assert len(full.features) == 37
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert sum(p.numel() for p in full.parameters()) == 20_024_384
    assert VGG19_LAYER_NAMES[34] == "conv5_4" and VGG19_LAYER_NAMES[2] == "conv1_2"
    assert VGG19_LAYER_NAMES[16] == "conv3_4" and VGG19_LAYER_NAMES[25] == "conv4_4"
    assert not any(p.requires_grad for p in full.parameters())
    # truncated after the deepest requested layer
    assert len(VGGFeatureExtractor(["conv1_2", "conv2_2"]).features) == 8


def test_vgg19_loads_torchvision_state_dict_and_rejects_others(tmp_path):
    ext = VGGFeatureExtractor(["conv2_2"])
    g = torch.Generator().manual_seed(1)
    sd = {
        f"features.{k}": torch.randn(v.shape, generator=g)
        for k, v in VGGFeatureExtractor(["pool5"]).features.state_dict().items()
    }
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "vgg.pth")
    ext.load_torchvision_state_dict(load_vgg19_imagenet(str(tmp_path / "vgg.pth")))
    assert torch.equal(ext.features[7].weight, sd["features.7.weight"])
    with pytest.raises(WeightsFormatError):
        ext.load_torchvision_state_dict({"features.0.weight": torch.zeros(1)})


def test_vgg19_imagenet_without_file_and_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="vgg19-dcbb9e9d.pth"):
        load_vgg19_imagenet("imagenet", allow_download=False)


def test_perceptual_loss_against_direct_computation():
    torch.manual_seed(0)
    ext = VGGFeatureExtractor(["conv1_1", "conv1_2"])
    with torch.no_grad():
        for m in ext.features:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.1)
                m.bias.normal_(0, 0.1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = PerceptualLoss(ext, {"conv1_1": 0.5, "conv1_2": 2.0}, weight=3.0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(t):
        c1 = F.conv2d((t - mean) / std, ext.features[0].weight, ext.features[0].bias, padding=1)
        c2 = F.conv2d(F.relu(c1), ext.features[2].weight, ext.features[2].bias, padding=1)
        return c1, c2

    (a1, a2), (b1, b2) = feats(x), feats(y)
    expected = 3.0 * (0.5 * (a1 - b1).abs().mean() + 2.0 * (a2 - b2).abs().mean())
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss(x, x).item() == 0.0


def _esrgan_cfg(**loss):
    return config_from_dict({"stage": "esrgan", "data": {"train": "x"}, "loss": loss})


def test_discriminator_gets_no_gradient_from_the_generator_step():
    torch.manual_seed(0)
    g = RRDBNet(num_feat=4, num_block=1, num_grow_ch=2, scale=4)
    d = UNetDiscriminatorSN(num_feat=4)
    cfg = _esrgan_cfg(perceptual={"weight": 0})
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    with discriminator_frozen(d):
        losses = generator_losses(cfg, g(lq), gt, gt, d, None)
        assert set(losses) == {"l_g_pix", "l_g_gan"}
        sum(losses.values()).backward()
    assert all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in d.parameters())  # unfrozen again for its own step
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    # ... and the discriminator's step (on the detached output) gives the generator nothing
    g.zero_grad(set_to_none=True)
    out = g(lq).detach()
    l_real, l_fake = gan_loss_discriminator(d(gt), d(out), "vanilla")
    (l_real + l_fake).backward()
    assert all(p.grad is None for p in g.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_ragan_generator_loss_uses_the_gt():
    torch.manual_seed(0)
    g = RRDBNet(num_feat=4, num_block=1, num_grow_ch=2, scale=4)
    d = UNetDiscriminatorSN(num_feat=4).eval()  # eval: no spectral-norm power iteration, so D is one function
    cfg = _esrgan_cfg(perceptual={"weight": 0}, gan={"type": "ragan", "weight": 1.0})
    output = g(torch.rand(1, 3, 8, 8))
    gt_a, gt_b, gt_usm = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32) * 0.2, torch.rand(1, 3, 32, 32)
    with discriminator_frozen(d):
        loss_a = generator_losses(cfg, output, gt_a, gt_usm, d, None)["l_g_gan"]
        loss_b = generator_losses(cfg, output, gt_b, gt_usm, d, None)["l_g_gan"]
        # the relativistic loss of the plain GT (gan_gt_usm is false), against its closed form
        fake, real_a = d(output), d(gt_a)
    expected_a = 0.5 * (F.softplus(real_a - fake.mean()).mean() + F.softplus(-(fake - real_a.mean())).mean())
    assert loss_a.item() == pytest.approx(expected_a.item(), rel=1e-5)
    assert abs(loss_a.item() - loss_b.item()) > 1e-4  # another GT, another loss: the GT is used


def test_partial_init_across_scales():
    x4 = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4).state_dict()
    x2 = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2)
    fresh = init_generator_from(x2, x4, strict=False, what="x4")
    assert [f.split(" ")[0] for f in fresh] == ["conv_first.weight"]  # 12 input channels after pixel-unshuffle
    assert torch.equal(x2.state_dict()["conv_body.weight"], x4["conv_body.weight"])
    x8 = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=8)
    fresh = init_generator_from(x8, x4, strict=False, what="x4")
    assert sorted(f.split(" ")[0] for f in fresh) == ["conv_up3.bias", "conv_up3.weight"]
    with pytest.raises(RealesrError, match="init_strict"):
        init_generator_from(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2), x4, strict=True, what="x4")


def test_lr_schedule_multistep_and_warmup():
    s = LRSchedule([10, 20], 0.5, 0)
    assert [s(0), s(9), s(10), s(19), s(20)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    w = LRSchedule([100], 0.5, 4)
    assert [w(0), w(1), w(3), w(50)] == [0.25, 0.5, 1.0, 1.0]


def test_vgg19_imagenet_weights_come_from_the_weights_cache(tmp_path, monkeypatch):
    from realesr.archs.vgg import vgg19_weights_path
    from realesr.train.losses import build_perceptual_loss

    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path))
    assert vgg19_weights_path() == tmp_path / "vgg19-dcbb9e9d.pth"
    full = VGGFeatureExtractor(["pool5"]).features.state_dict()
    sd = {f"features.{k}": torch.full_like(v, 0.01) for k, v in full.items()}
    torch.save(sd, tmp_path / "vgg19-dcbb9e9d.pth")
    loss = build_perceptual_loss({"conv2_2": 1.0}, 1.0, "imagenet", True, "l1", allow_download=False)
    assert torch.all(loss.vgg.features[7].weight == 0.01)
