"""realesr.imagefiles: decoding real files, exact 16-bit, EXIF orientation, ICC, bad files, atomic writes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from realesr.errors import ImageReadError, ImageWriteError
from realesr.imagefiles import LoadedImage, read_image, write_image

INPUTS = "real_lr/RealESRGAN_inputs"
EXPECTED_MODES = {
    "00003.png": ("RGB", 8),
    "00017_gray.png": ("L", 8),
    "0014.jpg": ("RGB", 8),
    "0030.jpg": ("RGB", 8),
    "ADE_val_00000114.jpg": ("RGB", 8),
    "OST_009.png": ("RGB", 8),
    "children-alpha.png": ("RGBA", 8),
    "tree_alpha_16bit.png": ("RGBA", 16),
    "wolf_gray.jpg": ("L", 8),
}


def test_real_inputs_decode_with_their_modes_and_depths(shared_data):
    folder = shared_data / INPUTS
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPECTED_MODES)
    for name, (mode, depth) in EXPECTED_MODES.items():
        image = read_image(folder / name)
        with Image.open(folder / name) as im:
            width, height = im.size
        assert (image.mode, image.bit_depth) == (mode, depth), name
        assert (image.height, image.width) == (height, width), name


def test_16bit_rgba_png_is_exact(shared_data):
    path = shared_data / INPUTS / "tree_alpha_16bit.png"
    image = read_image(path)
    assert image.array.dtype == np.uint16 and image.array.shape[2] == 4
    # Pillow's own (8-bit) decode keeps the high byte of each sample: ours must agree on it ...
    with Image.open(path) as im:
        high = np.asarray(im)
    np.testing.assert_array_equal(image.array >> 8, high)
    # ... and carry real low bytes (a file that is 8-bit content scaled by 257 would have low == high).
    low = (image.array & 0xFF).astype(np.uint8)
    assert (low != high).mean() > 0.5
    assert image.icc_profile  # this file embeds a profile


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_round_trip_is_exact(tmp_path, channels, ext):
    rng = np.random.default_rng(channels)
    shape = (23, 37) if channels == 1 else (23, 37, channels)
    array = rng.integers(0, 65536, shape, dtype=np.uint16)
    path = write_image(tmp_path / f"x.{ext}", array, icc_profile=b"profile-bytes" * 7)
    back = read_image(path)
    assert back.array.dtype == np.uint16
    if channels == 2 and ext == "tif":  # stored as RGBA (see encode_tiff16)
        np.testing.assert_array_equal(back.array[..., 0], array[..., 0])
        np.testing.assert_array_equal(back.array[..., 3], array[..., 1])
    else:
        np.testing.assert_array_equal(back.array, array)
    assert back.icc_profile == b"profile-bytes" * 7
    # An independent decoder (Pillow) reads the same file: grey exactly, colour by its high bytes.
    with Image.open(path) as im:
        pillow = np.asarray(im)
    if channels == 1:
        np.testing.assert_array_equal(pillow.astype(np.uint16), array)
    elif channels in (3, 4):
        np.testing.assert_array_equal(pillow, (array >> 8).astype(np.uint8))


def test_palette_la_cmyk_and_i16_are_converted(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    # palette without transparency -> RGB, with transparency -> RGBA
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    got = read_image(tmp_path / "p.png")
    assert got.mode == "RGB"
    np.testing.assert_array_equal(got.array, np.asarray(pal.convert("RGB")))
    pal.save(tmp_path / "pt.png", transparency=0)
    got = read_image(tmp_path / "pt.png")
    assert got.mode == "RGBA"
    assert set(np.unique(got.array[..., 3])) <= {0, 255} and (got.array[..., 3] == 0).any()
    # LA
    la = Image.fromarray(rng.integers(0, 256, (16, 16, 2), dtype=np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    got = read_image(tmp_path / "la.png")
    assert got.mode == "LA"
    np.testing.assert_array_equal(got.array, np.asarray(la))
    # CMYK JPEG -> RGB: pure cyan ink gives (0, 255, 255) in the naive conversion
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    cmyk.save(tmp_path / "c.jpg", quality=100)
    got = read_image(tmp_path / "c.jpg")
    assert got.mode == "RGB"
    assert np.abs(got.array.astype(int) - [0, 255, 255]).max() <= 3
    # 16-bit grey
    grey16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    got = read_image(tmp_path / "g16.png")
    assert got.mode == "L" and got.bit_depth == 16
    np.testing.assert_array_equal(got.array, grey16)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_applied_and_reset(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    im = Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "realesr-test-camera"
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    got = read_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference))
    np.testing.assert_array_equal(got.array, expected)
    carried = Image.Exif()
    carried.load(got.exif)
    assert carried[0x0112] == 1 and carried[0x010F] == "realesr-test-camera"


def test_icc_and_exif_carried_through_write(tmp_path, shared_data):
    source = read_image(shared_data / INPUTS / "wolf_gray.jpg")
    assert source.icc_profile and source.exif
    for ext in ("png", "jpg", "webp", "tif"):
        path = write_image(tmp_path / f"w.{ext}", source)
        back = read_image(path)
        assert back.icc_profile == source.icc_profile, ext
        if ext != "tif":
            assert back.exif, ext
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = write_image(tmp_path / "s16.png", np.zeros((4, 4, 3), np.uint16), icc_profile=srgb)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == srgb


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.png", b"", "empty file"),
        ("text.jpg", b"this is not a JPEG\n", "not an image"),
        ("trunc.png", None, "truncated"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, shared_data, name, content, message):
    path = tmp_path / name
    if content is None:
        content = (shared_data / INPUTS / "00003.png").read_bytes()[:5000]
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_writes_are_atomic_and_never_overwrite_the_input(tmp_path):
    source = tmp_path / "in.png"
    array = np.full((8, 8, 3), 7, np.uint8)
    write_image(source, array)
    before = source.read_bytes()
    with pytest.raises(ImageWriteError, match="overwrite the input"):
        write_image(tmp_path / "." / "in.png", np.zeros((8, 8, 3), np.uint8), source=source)
    assert source.read_bytes() == before
    # A failing encode (JPEG with alpha) leaves an existing output untouched and no temporary file behind.
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")
    with pytest.raises(ImageWriteError, match="alpha"):
        write_image(target, np.zeros((8, 8, 4), np.uint8))
    assert target.read_bytes() == b"old"
    with pytest.raises(ImageWriteError, match="cannot write '.xyz'"):
        write_image(tmp_path / "x.xyz", array)
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "nope" / "x.png", array)
    write_image(target, array, quality=90)
    assert sorted(os.listdir(tmp_path)) == ["in.png", "out.jpg"]


def test_write_8bit_formats_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    for ext in ("png", "tif"):
        back = read_image(write_image(tmp_path / f"a.{ext}", rgba)).array
        np.testing.assert_array_equal(back, rgba)
    back = read_image(write_image(tmp_path / "a.bmp", rgba[..., :3])).array
    np.testing.assert_array_equal(back, rgba[..., :3])
    with pytest.raises(ImageWriteError, match="BMP has no alpha"):
        write_image(tmp_path / "b.bmp", rgba)
    lossless_webp = read_image(write_image(tmp_path / "a.webp", rgba, quality=100)).array
    assert lossless_webp.shape == rgba.shape
    # 16-bit to an 8-bit format rounds x/257 to nearest: 257*k maps back to k exactly.
    values = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    back = read_image(write_image(tmp_path / "g.bmp", values)).array
    np.testing.assert_array_equal(back, np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_loaded_image_properties():
    image = LoadedImage(np.zeros((5, 7, 2), np.uint16))
    assert (image.mode, image.bit_depth, image.has_alpha, image.height, image.width) == ("LA", 16, True, 5, 7)
    assert io  # keeps the import used for readers of this file who try BytesIO round trips
