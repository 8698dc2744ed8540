"""Exact Y'CbCr <-> R'G'B' for video frames, in numpy, from the equations of ITU-R BT.601, BT.709 and BT.2020.

swscale's packed-RGB path (bicubic chroma, its own fixed-point rounding) left 8-bit frames 1-2 levels darker
than the same frames decoded as still images; here each step is the standard's formula in float32, rounded once:

    limited range, n bits:  Y' = 219*2^(n-8)*E'y + 16*2^(n-8)      C = 224*2^(n-8)*E'c + 128*2^(n-8)
    full range, n bits:     Y' = (2^n - 1)*E'y                      C = (2^n - 1)*E'c + 2^(n-1)
    E'y = Kr*R' + (1-Kr-Kb)*G' + Kb*B'      E'cb = (B' - E'y) / (2*(1-Kb))      E'cr = (R' - E'y) / (2*(1-Kr))

Subsampled chroma is placed where the chroma location says (left/center/top-left/...): upsampling is linear
between the chroma samples' true positions, downsampling the matching triangle filter, so a flat area is exact
whatever the siting and a frame with an odd side keeps its last column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# AVColorSpace -> (Kr, Kb). 5 and 6 are both BT.601 (625 and 525 lines), 9 and 10 BT.2020 (10, constant
# luminance, is converted with the non-constant-luminance matrix: said in a note).
MATRICES = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087)}
MATRICES |= {9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
MATRIX_NAMES = {1: "BT.709", 4: "FCC", 5: "BT.601", 6: "BT.601", 7: "SMPTE 240M", 9: "BT.2020", 10: "BT.2020"}

# AVChromaLocation -> (horizontal, vertical) position of a chroma sample within its block of luma samples:
# "cosited" = on the first luma sample, "center" = between them, "bottom" = on the last one.
SITINGS = {
    1: ("cosited", "center"),  # left: MPEG-2, H.264/HEVC's default for 4:2:0
    2: ("center", "center"),  # center: JPEG, MPEG-1
    3: ("cosited", "cosited"),  # top-left: BT.2020 / UHD
    4: ("center", "cosited"),
    5: ("cosited", "bottom"),
    6: ("center", "bottom"),
}
SITING_NAMES = {1: "left", 2: "center", 3: "topleft", 4: "top", 5: "bottomleft", 6: "bottom"}

_PLANAR = re.compile(r"^yuvj?a?(4\d\d)p(\d+)?(le)?$")
# Semi-planar and big-endian layouts: swscale only moves their samples into the planar layout (no arithmetic).
_REPACK = {
    "nv12": "yuv420p",
    "nv21": "yuv420p",
    "nv16": "yuv422p",
    "nv24": "yuv444p",
    "nv42": "yuv444p",
    "p010le": "yuv420p10le",
    "p012le": "yuv420p12le",
    "p016le": "yuv420p16le",
    "nv20le": "yuv422p10le",
    "p210le": "yuv422p10le",
    "p410le": "yuv444p10le",
}


@dataclass
class ColourTags:
    """The colour description of a stream: AVColorSpace, range (1 limited, 2 full), primaries, transfer and
    AVChromaLocation; ``guessed`` when the input declared no matrix."""

    colorspace: int
    color_range: int
    primaries: int
    trc: int
    guessed: bool = False
    siting: int = 1

    def describe(self) -> str:
        name = MATRIX_NAMES.get(self.colorspace, str(self.colorspace))
        return f"{name} {'full' if self.color_range == 2 else 'limited'}"


def default_siting(pix_fmt: str) -> int:
    """The chroma location a stream without one has: JPEG's (center) for yuvj formats, else MPEG-2's (left),
    which H.264, HEVC and VP9 take as theirs when their headers say nothing."""
    return 2 if pix_fmt.startswith("yuvj") else 1


def colour_of(frame, stream, height: int) -> ColourTags:
    """The matrix, range and chroma siting the input declares (the frame's own tags first, then the stream's);
    undeclared matrix: BT.709 from 720 lines up, else BT.601; undeclared range: limited (the video default)."""
    ctx = stream.codec_context if stream is not None else None
    space = int(frame.colorspace) or int(getattr(ctx, "colorspace", 0) or 0)
    rng = int(frame.color_range) or int(getattr(ctx, "color_range", 0) or 0)
    primaries = int(frame.color_primaries) or int(getattr(ctx, "color_primaries", 0) or 0)
    trc = int(frame.color_trc) or int(getattr(ctx, "color_trc", 0) or 0)
    guessed = space not in MATRICES
    if frame.format.name.startswith("yuvj"):
        rng = 2
    if guessed:
        space = 1 if height >= 720 else 6
    if rng not in (1, 2):
        rng = 1
    siting = int(getattr(frame, "chroma_location", 0) or 0)  # PyAV >= 18 does not expose it yet: the default
    if siting not in SITINGS:
        siting = default_siting(frame.format.name)
    return ColourTags(
        space,
        rng,
        primaries if primaries not in (0, 2) else 2,
        trc if trc not in (0, 2) else 2,
        guessed,
        siting,
    )


# --------------------------------------------------------------------------------------------------- layout


def planar_layout(pix_fmt: str) -> tuple[str, int, int, int] | None:
    """(planar format, bits, horizontal and vertical subsampling factors) of a Y'CbCr pixel format that the
    exact path handles (after a repack for semi-planar ones), else None."""
    name = _REPACK.get(pix_fmt, pix_fmt)
    match = _PLANAR.match(name)
    if match is None or (match.group(2) and not match.group(3)):
        return None
    sub = match.group(1)
    fx = {"444": 1, "440": 1, "422": 2, "420": 2, "411": 4, "410": 4}.get(sub)
    fy = {"444": 1, "440": 2, "422": 1, "420": 2, "411": 1, "410": 2}.get(sub)
    if fx is None or fy is None:
        return None
    return name, int(match.group(2) or 8), fx, fy


def _plane(plane, dtype) -> np.ndarray:
    item = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // item)
    return rows[:, : plane.width]


def read_planes(frame) -> tuple[list[np.ndarray], int, int, int] | None:
    """Y, Cb, Cr of a decoded frame as arrays (uint8 or uint16 samples), with bits and subsampling factors;
    None for a frame that is not Y'CbCr."""
    layout = planar_layout(frame.format.name)
    if layout is None:
        return None
    name, bits, fx, fy = layout
    if name != frame.format.name:
        frame = frame.reformat(format=name)  # a repack: the samples move, their values do not
    dtype = np.uint16 if bits > 8 else np.uint8
    return [_plane(p, dtype) for p in frame.planes[:3]], bits, fx, fy


def write_planes(av, planes: list[np.ndarray], name: str):
    """A VideoFrame of planar format ``name`` holding ``planes``."""
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], name)
    for plane, values in zip(frame.planes, planes):
        _plane(plane, values.dtype)[...] = values
    return frame


# --------------------------------------------------------------------------------------------------- chroma


def _offset(position: str, factor: int) -> float:
    return {"cosited": 0.0, "center": (factor - 1) / 2, "bottom": float(factor - 1)}[position]


def _along(a: np.ndarray, axis: int, start: int, count: int, step: int) -> np.ndarray:
    """``count`` samples of ``a`` along ``axis`` from ``start`` every ``step`` (a view)."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, start + (count - 1) * step + 1, step)
    return a[tuple(index)]


def _edge_pad(a: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (before, after)
    return np.pad(a, pad, mode="edge")


def upsample(c: np.ndarray, size: int, factor: int, position: str, axis: int) -> np.ndarray:
    """Chroma samples along ``axis`` -> ``size`` luma positions, linear between the samples' true places (edges
    held). Luma position x = k*factor + p lies at chroma coordinate k + (p - offset)/factor: one weight pair
    per phase p, so each phase is two shifted views of the padded samples."""
    if factor == 1:
        return c
    offset = _offset(position, factor)
    padded = _edge_pad(c, axis, 2, factor + 2)
    shape = list(c.shape)
    shape[axis] = size
    out = np.empty(shape, np.float32)
    for phase in range(min(factor, size)):
        count = len(range(phase, size, factor))
        d = (phase - offset) / factor
        base = int(np.floor(d))
        w = np.float32(d - base)
        lo = _along(padded, axis, 2 + base, count, 1)
        target = _along(out, axis, phase, count, factor)
        if w == 0:
            target[...] = lo
        else:
            target[...] = lo * (1 - w) + _along(padded, axis, 3 + base, count, 1) * w
    return out


def downsample(c: np.ndarray, factor: int, position: str, axis: int) -> np.ndarray:
    """Full-resolution chroma along ``axis`` -> one sample per ``factor`` luma samples at the siting's place:
    a triangle filter of half-width ``factor`` (the transpose of linear upsampling), edges replicated."""
    if factor == 1:
        return c
    size = c.shape[axis]
    n = -(-size // factor)
    offset = _offset(position, factor)
    first = int(np.floor(offset))
    margin = factor + 1
    padded = _edge_pad(c, axis, margin, n * factor - size + 2 * margin)
    out, term, total = None, None, 0.0
    for tap in range(-factor, factor + 2):
        weight = max(0.0, 1 - abs(first + tap - offset) / factor)
        if weight == 0:
            continue
        view = _along(padded, axis, margin + first + tap, n, factor)
        if out is None:  # then in place: the same products and sums in the same order, no new arrays
            out = view * np.float32(weight)
            term = np.empty_like(out)
        else:
            out += np.multiply(view, np.float32(weight), out=term)
        total += weight
    assert out is not None
    out /= np.float32(total)
    return out


# --------------------------------------------------------------------------------------------------- conversion


def _quant(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(Y scale, Y offset, C scale, C offset) of n-bit code values."""
    if full:
        top = float((1 << bits) - 1)
        return top, 0.0, top, float(1 << (bits - 1))
    s = float(1 << (bits - 8))
    return 219 * s, 16 * s, 224 * s, 128 * s


def yuv_to_rgb(planes: list[np.ndarray], bits: int, fx: int, fy: int, tags: ColourTags, out_bits: int) -> np.ndarray:
    """Y, Cb, Cr code values -> HxWx3 full-range R'G'B' (uint8 for ``out_bits`` 8, uint16 for 16)."""
    kr, kb = MATRICES[tags.colorspace]
    ys, yo, cs, co = _quant(bits, tags.color_range == 2)
    hpos, vpos = SITINGS.get(tags.siting, SITINGS[1])
    y = (planes[0].astype(np.float32) - yo) / ys
    height, width = y.shape
    chroma = []
    for plane in planes[1:]:
        c = (plane.astype(np.float32) - co) / cs
        c = upsample(c, width, fx, hpos, axis=1)
        chroma.append(upsample(c, height, fy, vpos, axis=0))
    cb, cr = chroma
    r = y + (2 * (1 - kr)) * cr
    b = y + (2 * (1 - kb)) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    top = float((1 << out_bits) - 1)
    rgb = np.stack([r, g, b], axis=-1)
    np.clip(rgb, 0, 1, out=rgb)
    rgb *= top
    return np.rint(rgb).astype(np.uint16 if out_bits > 8 else np.uint8)


def rgb_to_yuv(rgb: np.ndarray, bits: int, fx: int, fy: int, tags: ColourTags) -> list[np.ndarray]:
    """HxWx3 full-range R'G'B' (uint8 or uint16) -> Y, Cb, Cr code values of ``bits`` bits, chroma subsampled
    by ``fx`` x ``fy`` at the siting of ``tags``."""
    scale = 1 / (65535.0 if rgb.dtype == np.uint16 else 255.0)
    r, g, b = (np.ascontiguousarray(rgb[..., k], dtype=np.float32) for k in range(3))
    return planes_to_yuv(r, g, b, scale, bits, fx, fy, tags)


def planes_to_yuv(
    r: np.ndarray, g: np.ndarray, b: np.ndarray, scale: float, bits: int, fx: int, fy: int, tags: ColourTags
) -> list[np.ndarray]:
    """:func:`rgb_to_yuv` from float32 planes of R'G'B' code values (``scale`` takes them to [0, 1]); the
    planes are not changed."""
    kr, kb = MATRICES[tags.colorspace]
    kg = 1 - kr - kb
    ys, yo, cs, co = _quant(bits, tags.color_range == 2)
    hpos, vpos = SITINGS.get(tags.siting, SITINGS[1])
    height, width = r.shape
    top = (1 << bits) - 1
    dtype = np.uint16 if bits > 8 else np.uint8

    # Chroma from the filtered R'G'B' (the filter is linear: the same as filtering full-resolution Cb and Cr).
    rs, gs, bs = (downsample(downsample(p, fx, hpos, axis=1), fy, vpos, axis=0) for p in (r, g, b))
    y_small = kr * rs + kg * gs + kb * bs
    chroma, seen = [], []
    for c in ((bs - y_small) * np.float32(scale / (2 * (1 - kb))), (rs - y_small) * np.float32(scale / (2 * (1 - kr)))):
        code = np.clip(np.rint(c * cs + co), 0, top)
        chroma.append(code.astype(dtype))
        code -= co
        code /= cs  # the chroma a decoder will see, at every luma position
        seen.append(upsample(upsample(code, width, fx, hpos, axis=1), height, fy, vpos, axis=0))
    # Luma chosen for the chroma as quantised: the least-squares Y' over R, G, B given Cb and Cr (the standard's
    # E'y when the chroma is exact), so the rounding of Cb and Cr, worth up to a level in blue, is taken back by
    # Y' where it can: E'y = (R'+G'+B')/3 + a*(Kr/Kg - 1)/3*Cr + b*(Kb/Kg - 1)/3*Cb, a = 2(1-Kr), b = 2(1-Kb).
    cbq, crq = seen
    y = r + g
    y += b
    y *= np.float32(scale / 3)
    crq *= np.float32(2 * (1 - kr) * (kr / kg - 1) / 3)
    y += crq
    cbq *= np.float32(2 * (1 - kb) * (kb / kg - 1) / 3)
    y += cbq
    y *= np.float32(ys)
    y += np.float32(yo)
    np.rint(y, out=y)
    return [np.clip(y, 0, top, out=y).astype(dtype), *chroma]


def frame_to_rgb(frame, tags: ColourTags, deep: bool) -> np.ndarray:
    """A decoded frame -> HxWx3 uint8 (uint16 when ``deep``) full-range R'G'B' with the declared matrix,
    range and chroma siting. Frames that are not Y'CbCr (RGB, grey, palette) go through swscale, which only
    unpacks them."""
    found = read_planes(frame) if tags.colorspace in MATRICES else None
    if found is not None:
        planes, bits, fx, fy = found
        return yuv_to_rgb(planes, bits, fx, fy, tags, 16 if deep else 8)
    return frame.reformat(format="rgb48le" if deep else "rgb24").to_ndarray()


def encoder_input(rgb: np.ndarray, pix_fmt: str, tags: ColourTags) -> list[np.ndarray]:
    """HxWx3 uint8/uint16 full-range R'G'B' -> what the encoder's frame is made of: the Y'CbCr planes of
    ``pix_fmt`` (matrix, range and siting of ``tags``), or the RGB itself for RGB and grey outputs."""
    layout = planar_layout(pix_fmt)
    if layout is None or tags.colorspace not in MATRICES:
        return [rgb]
    name, bits, fx, fy = layout
    return _with_alpha(name, bits, rgb_to_yuv(rgb, bits, fx, fy, tags))


def encoder_input_levels(levels: np.ndarray, pix_fmt: str, tags: ColourTags) -> list[np.ndarray]:
    """:func:`encoder_input` of the network's result handed over as 3xHxW float32 16-bit code values (see
    ``Upscaler.upscale_arrays(levels=True)``): the same arrays as from the uint16 image they stand for."""
    layout = planar_layout(pix_fmt)
    if layout is None or tags.colorspace not in MATRICES:
        return [levels.transpose(1, 2, 0).astype(np.uint16, order="C")]
    name, bits, fx, fy = layout
    return _with_alpha(name, bits, planes_to_yuv(levels[0], levels[1], levels[2], 1 / 65535.0, bits, fx, fy, tags))


def _with_alpha(name: str, bits: int, planes: list[np.ndarray]) -> list[np.ndarray]:
    if "yuva" in name:  # video alpha is not carried: an opaque alpha plane
        planes.append(np.full_like(planes[0], (1 << bits) - 1))
    return planes


def encoder_input_like(width: int, height: int, pix_fmt: str, tags: ColourTags) -> list[np.ndarray]:
    """Arrays of the shapes and dtypes :func:`encoder_input` gives for a ``width`` x ``height`` frame (contents
    undefined), without converting one."""
    layout = planar_layout(pix_fmt)
    if layout is None or tags.colorspace not in MATRICES:
        return [np.empty((height, width, 3), np.uint16)]
    name, bits, fx, fy = layout
    dtype = np.uint16 if bits > 8 else np.uint8
    luma, chroma = np.empty((height, width), dtype), np.empty((-(-height // fy), -(-width // fx)), dtype)
    return [luma, chroma, chroma, luma] if "yuva" in name else [luma, chroma, chroma]


def frame_from(av, payload: list[np.ndarray], pix_fmt: str, tags: ColourTags):
    """The frame in ``pix_fmt`` made of :func:`encoder_input`'s arrays, carrying the tags."""
    layout = planar_layout(pix_fmt)
    if layout is not None and len(payload) >= 3:
        frame = write_planes(av, payload, layout[0])
        if layout[0] != pix_fmt:
            frame = frame.reformat(format=pix_fmt)
    else:  # RGB or grey outputs: swscale packs them
        rgb = payload[0]
        source = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
        frame = source.reformat(format=pix_fmt, dst_colorspace=tags.colorspace, dst_color_range=tags.color_range)
    frame.colorspace = tags.colorspace
    frame.color_range = tags.color_range
    frame.color_primaries = tags.primaries
    frame.color_trc = tags.trc
    return frame


def rgb_to_frame(av, rgb: np.ndarray, pix_fmt: str, tags: ColourTags):
    """HxWx3 uint8/uint16 full-range R'G'B' -> a frame in ``pix_fmt`` with the matrix, range and siting of
    ``tags`` (the frame carries those tags)."""
    return frame_from(av, encoder_input(rgb, pix_fmt, tags), pix_fmt, tags)
