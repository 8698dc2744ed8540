"""Video colours against the standards, not against the code: a second Y'CbCr <-> R'G'B' written here in numpy
from ITU-R BT.601/709/2020 (limited and full range, 8 and 10 bit) checks the video path's conversion on flat
patches, gradients and colour bars, and the same frame upscaled as a video and as a still image must agree to a
fraction of a level (issue 19: swscale's packed-RGB path was 1-2 levels dark, hidden by a 3-level tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from test_video import make_clip, tiny_upscaler  # noqa: E402

from realesr.infer.video import VideoOptions, upscale_video  # noqa: E402
from realesr.infer.video.colour import (  # noqa: E402
    ColourTags,
    encoder_input,
    encoder_input_levels,
    encoder_input_like,
    frame_to_rgb,
    rgb_to_frame,
)

# (AVColorSpace, Kr, Kb) as the standards give them
STANDARDS = {"BT.601": (6, 0.299, 0.114), "BT.709": (1, 0.2126, 0.0722), "BT.2020": (9, 0.2627, 0.0593)}
BIAS_LIMIT = 0.25  # levels of the RGB output; a 0.5-level shift fails


def ref_encode(rgb01: np.ndarray, kr: float, kb: float, bits: int, full: bool) -> list[np.ndarray]:
    """R'G'B' in [0, 1] -> Y', Cb, Cr code values (4:4:4), BT.709-6 / BT.2020-2 section 3/4 equations."""
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    if full:
        top = 2**bits - 1
        planes = [top * y, top * cb + 2 ** (bits - 1), top * cr + 2 ** (bits - 1)]
    else:
        s = 2 ** (bits - 8)
        planes = [(219 * y + 16) * s, (224 * cb + 128) * s, (224 * cr + 128) * s]
    return [np.clip(np.round(p), 0, 2**bits - 1).astype(np.uint16 if bits > 8 else np.uint8) for p in planes]


def ref_decode(planes: list[np.ndarray], kr: float, kb: float, bits: int, full: bool) -> np.ndarray:
    """Y', Cb, Cr code values (4:4:4) -> R'G'B' in [0, 1] (float, not rounded), the inverse equations."""
    y, cb, cr = (p.astype(np.float64) for p in planes)
    if full:
        top = 2**bits - 1
        y, cb, cr = y / top, (cb - 2 ** (bits - 1)) / top, (cr - 2 ** (bits - 1)) / top
    else:
        s = 2 ** (bits - 8)
        y, cb, cr = (y / s - 16) / 219, (cb / s - 128) / 224, (cr / s - 128) / 224
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.stack([r, g, b], -1)


def colour_picture(h: int = 48, w: int = 96) -> np.ndarray:
    """Flat patches (top), a grey and a colour gradient (middle), 75 % colour bars (bottom), in [0, 1]."""
    img = np.zeros((h, w, 3))
    patches = [(0.9, 0.15, 0.15), (0.2, 0.8, 0.25), (0.2, 0.25, 0.85), (0.5, 0.5, 0.5), (0.05, 0.05, 0.05), (1, 1, 1)]
    for i, colour in enumerate(patches):
        img[: h // 3, i * w // 6 : (i + 1) * w // 6] = colour
    ramp = np.linspace(0, 1, w)
    img[h // 3 : h // 2] = ramp[None, :, None]
    img[h // 2 : 2 * h // 3] = np.stack([ramp, 1 - ramp, 0.5 + 0 * ramp], -1)[None]
    bars = [(0.75, 0.75, 0.75), (0.75, 0.75, 0), (0, 0.75, 0.75), (0, 0.75, 0), (0.75, 0, 0.75), (0.75, 0, 0)]
    for i, colour in enumerate(bars + [(0, 0, 0.75)]):
        img[2 * h // 3 :, i * w // 7 : (i + 1) * w // 7] = colour
    return img


def yuv444_frame(planes: list[np.ndarray], bits: int, space: int, full: bool):
    fmt = "yuv444p10le" if bits == 10 else "yuv444p"
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], fmt)
    dtype = np.uint16 if bits > 8 else np.uint8
    for plane, values in zip(frame.planes, planes):
        rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype().itemsize)
        rows[:, : plane.width] = values
    frame.colorspace, frame.color_range = space, 2 if full else 1
    return frame


def read_planes(frame) -> list[np.ndarray]:
    dtype = np.uint16 if "10" in frame.format.name else np.uint8
    return [
        np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype().itemsize)[:, : p.width].copy()
        for p in frame.planes[:3]
    ]


CASES = [(name, full, bits) for name in STANDARDS for full in (False, True) for bits in (8, 10)]


@pytest.mark.parametrize(("name", "full", "bits"), CASES)
def test_decode_matches_the_standard(name, full, bits):
    """Y'CbCr made with the standard's equations -> RGB: the same RGB as the standard's inverse, unbiased."""
    space, kr, kb = STANDARDS[name]
    planes = ref_encode(colour_picture(), kr, kb, bits, full)
    frame = yuv444_frame(planes, bits, space, full)
    deep = bits > 8
    got = frame_to_rgb(frame, ColourTags(space, 2 if full else 1, 2, 2), deep).astype(np.float64)
    top = 65535.0 if deep else 255.0
    want = np.clip(ref_decode(planes, kr, kb, bits, full), 0, 1) * top
    diff = (got - want) / (top / 255)  # in 8-bit levels
    assert np.abs(diff.mean(axis=(0, 1))).max() <= BIAS_LIMIT, diff.mean(axis=(0, 1))
    assert np.abs(diff).max() <= 0.51  # only the final rounding differs


@pytest.mark.parametrize(("name", "full", "bits"), CASES)
def test_encode_matches_the_standard(name, full, bits):
    """RGB -> Y'CbCr code values: chroma the standard's (4:4:4, no filter) within one rounding and unbiased; luma
    within one code of the standard's, chosen for the quantised chroma, so that the frame decodes (with the
    standard's inverse) unbiased and as close to the RGB as the standard's own rounding."""
    space, kr, kb = STANDARDS[name]
    pic = colour_picture()
    deep = bits > 8
    top = 65535 if deep else 255
    rgb = np.round(pic * top).astype(np.uint16 if deep else np.uint8)
    tags = ColourTags(space, 2 if full else 1, 2, 2)
    frame = rgb_to_frame(av, rgb, "yuv444p10le" if deep else "yuv444p", tags)
    assert (int(frame.colorspace), int(frame.color_range)) == (space, 2 if full else 1)
    want = ref_encode(rgb / top, kr, kb, bits, full)
    got = read_planes(frame)
    for k, (plane, ref) in enumerate(zip(got, want)):
        assert np.abs(plane.astype(int) - ref.astype(int)).max() <= 1
        if k:
            assert abs((plane.astype(float) - ref).mean()) <= 0.05  # no bias in the chroma code values
    target = rgb / top * 255
    ours = np.clip(ref_decode(got, kr, kb, bits, full), 0, 1) * 255 - target
    standard = np.clip(ref_decode(want, kr, kb, bits, full), 0, 1) * 255 - target
    assert np.abs(ours.mean(axis=(0, 1))).max() <= BIAS_LIMIT
    assert np.abs(ours).mean() <= np.abs(standard).mean() + 0.02  # (a least-squares Y' can lose a tie)


@pytest.mark.parametrize(("siting", "offset"), [(1, 0.0), (2, 0.5)])
def test_chroma_siting_places_samples_where_tagged(siting, offset):
    """4:2:0 chroma sampled from a horizontal ramp at the sited places (left: on even luma columns, center:
    between them) comes back as the same ramp at every luma column; read with the other siting it is half a
    column off."""
    w, h = 64, 8
    kr, kb = 0.2126, 0.0722
    x = np.arange(w // 2) * 2 + offset
    cr = 128 + (x - w / 2) * 2  # 2 code values per luma column: whole codes at both sitings
    planes = [np.full((h, w), 120, np.uint8), np.full((h // 2, w // 2), 128, np.uint8)]
    planes.append(np.repeat(np.round(cr)[None], h // 2, 0).astype(np.uint8))
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, values in zip(frame.planes, planes):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width] = values
    got = frame_to_rgb(frame, ColourTags(1, 1, 2, 2, siting=siting), False).astype(float)
    luma_x = np.arange(w)
    ideal_cr = 128 + (luma_x - w / 2) * 2
    want = ref_decode(
        [planes[0].astype(float), np.full((h, w), 128.0), np.repeat(ideal_cr[None], h, 0)], kr, kb, 8, False
    )
    inner = slice(4, w - 4)
    err = got[:, inner, 0] - np.clip(want[:, inner, 0], 0, 1) * 255
    assert np.abs(err).max() <= 0.51  # red follows Cr: 2*(1-Kr)*2/224*255 = 3.6 levels per column
    other = frame_to_rgb(frame, ColourTags(1, 1, 2, 2, siting=3 - siting), False).astype(float)
    assert np.abs(other[:, inner, 0] - got[:, inner, 0]).mean() > 1.5  # half a column off: 1.8 levels


@pytest.mark.parametrize(("name", "full"), [("BT.709", False), ("BT.601", True), ("BT.2020", False)])
def test_video_and_still_image_paths_agree(tmp_path, name, full):
    """The same frame upscaled as a video (lossless encode both ways) and as a PNG (the frame as the standard
    decodes it): per-channel mean bias <= 0.25 level and mean |diff| <= 0.5 level over flat areas."""
    space, kr, kb = STANDARDS[name]
    rgb = np.round(colour_picture(48, 96) * 255).astype(np.uint8)
    planes = ref_encode(rgb / 255, kr, kb, 8, full)
    clip = make_clip(
        tmp_path / "c.mkv",
        n=3,
        audio=False,
        pix_fmt="yuv444p",
        w=96,
        h=48,
        colorspace=space,
        color_range=2 if full else 1,
        frames=lambda i: yuv444_frame(planes, 8, space, full),
        lossless=True,
    )
    up = tiny_upscaler()
    out = tmp_path / "o.mkv"
    upscale_video(up, clip, out, VideoOptions(crf=0, pix_fmt="yuv444p"))
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
    # both results as 8-bit RGB images: the video's frame as the standard decodes it, the PNG's as written
    video = np.round(np.clip(ref_decode(read_planes(frame), kr, kb, 8, full), 0, 1) * 255)
    # the still image: the input frame as a PNG holds it (the standard's decode, 8 bits), upscaled as an image
    png = np.round(np.clip(ref_decode(planes, kr, kb, 8, full), 0, 1) * 255).astype(np.uint8)
    still = up.upscale_array(png).astype(float)
    flat = np.zeros(rgb.shape[:2], bool)  # patch interiors, 3 pixels from any edge of a patch
    for i in range(6):
        flat[3 : 16 - 3, i * 16 + 3 : (i + 1) * 16 - 3] = True
    for i in range(7):
        x0, x1 = int(np.ceil(i * 96 / 7)), (i + 1) * 96 // 7
        flat[32 + 3 : 48 - 3, x0 + 3 : x1 - 3] = True
    flat = np.repeat(np.repeat(flat, 2, 0), 2, 1)
    diff = video[flat] - still[flat]
    assert np.abs(diff.mean(axis=0)).max() <= BIAS_LIMIT, diff.mean(axis=0)
    assert np.abs(diff).mean(axis=0).max() <= 0.5, np.abs(diff).mean(axis=0)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p10le", "yuv444p", "yuva420p", "rgb24"])
def test_float_hand_off_gives_the_encoder_what_the_uint16_image_gives(pix_fmt):
    """The network's result as float 16-bit levels (Upscaler.upscale_arrays(levels=True)) makes the same encoder
    planes as the uint16 image those levels are, and the upscaler's two forms hold the same values; the shapes
    of a cached frame are those planes' shapes."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 65536, (9, 15, 3)).astype(np.uint16)  # odd sides: the chroma's last column kept
    tags = ColourTags(1, 1, 2, 2)
    want = encoder_input(image, pix_fmt, tags)
    got = encoder_input_levels(image.transpose(2, 0, 1).astype(np.float32), pix_fmt, tags)
    assert [a.dtype for a in got] == [a.dtype for a in want]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    like = encoder_input_like(15, 9, pix_fmt, tags)
    assert [(a.shape, a.dtype) for a in like] == [(a.shape, a.dtype) for a in want]
    up = tiny_upscaler()
    small = [image[:5, :7].copy(), image[4:, 8:].copy()]
    for batch in (small[:1], small):
        ints, levels = up.upscale_arrays(batch), up.upscale_arrays(batch, levels=True)
        assert all(np.array_equal(i.transpose(2, 0, 1), lv) and lv.dtype == np.float32 for i, lv in zip(ints, levels))
