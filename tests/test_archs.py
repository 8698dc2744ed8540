"""Network layouts against the official BasicSR key names and published parameter counts."""

import pytest
import torch

from realesr.archs import RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_rrdbnet_parameter_counts_match_official_models():
    # RealESRGAN_x4plus (23 blocks) and RealESRGAN_x4plus_anime_6B (6 blocks), from the official checkpoints.
    assert n_params(RRDBNet(num_block=23, scale=4)) == 16_697_987
    assert n_params(RRDBNet(num_block=6, scale=4)) == 4_467_779


def test_rrdbnet_official_key_names():
    keys = set(RRDBNet(num_block=2, scale=4).state_dict())
    expected = {
        "conv_first.weight",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.weight",
        "body.1.rdb3.conv5.bias",
    }
    assert expected <= keys
    for i in range(2):
        for r in (1, 2, 3):
            for c in range(1, 6):
                assert f"body.{i}.rdb{r}.conv{c}.weight" in keys
    assert not any(k.startswith("conv_up3") for k in keys)


@pytest.mark.parametrize("scale,in_ch", [(1, 48), (2, 12), (4, 3), (8, 3)])
def test_rrdbnet_scales_and_pixel_unshuffle(scale, in_ch):
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=scale)
    assert net.conv_first.in_channels == in_ch
    assert hasattr(net, "conv_up3") == (scale == 8)
    out = net(torch.rand(2, 3, 8, 12))
    assert out.shape == (2, 3, 8 * scale, 12 * scale)


def test_rrdbnet_residual_scaling_is_identity_when_branches_are_zero():
    # With every dense-block conv zeroed each RDB is the identity (0*0.2 + x), so each RRDB gives
    # rdb3(rdb2(rdb1(x)))*0.2 + x = 1.2x, and two RRDBs 1.44x.
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)
    with torch.no_grad():
        for p in net.body.parameters():
            p.zero_()
    x = torch.rand(1, 8, 5, 5)
    torch.testing.assert_close(net.body(x), 1.44 * x)


def test_srvgg_layout_and_residual_to_nearest_upsampling():
    net = SRVGGNetCompact(num_feat=64, num_conv=16, upscale=4)
    keys = list(net.state_dict())
    # conv, prelu, (conv, prelu) x16, conv: last conv is body.34 for num_conv=16 (realesr-animevideov3)
    assert keys[-2:] == ["body.34.weight", "body.34.bias"]
    assert net.state_dict()["body.1.weight"].shape == (64,)  # per-channel PReLU
    # realesr-general-x4v3: first conv, 32 hidden convs, 33 PReLUs, the 64 -> 48 output conv
    assert n_params(SRVGGNetCompact(num_conv=32)) == (3 * 64 * 9 + 64) + 32 * (64 * 64 * 9 + 64) + 33 * 64 + (
        64 * 48 * 9 + 48
    )
    tiny = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    with torch.no_grad():
        tiny.body[-1].weight.zero_()
        tiny.body[-1].bias.zero_()
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(tiny(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_unet_discriminator_layout_and_shape():
    d = UNetDiscriminatorSN(3, num_feat=16)
    keys = set(d.state_dict())
    assert {
        "conv0.weight",
        "conv0.bias",
        "conv1.weight_orig",
        "conv1.weight_u",
        "conv1.weight_v",
        "conv9.weight",
        "conv9.bias",
    } <= keys
    assert "conv1.bias" not in keys
    assert d(torch.rand(2, 3, 32, 48)).shape == (2, 1, 32, 48)
    assert n_params(UNetDiscriminatorSN(3, 64)) == 4_376_897
