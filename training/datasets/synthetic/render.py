"""Draw one synthetic person crop: a label map of body parts from an IdentityLook and a viewpoint,
coloured and patterned, composited on the camera's scene, then the camera's occlusion, light,
colour cast, resolution, blur and noise.

Everything random comes from the `numpy.random.Generator` passed in, so a caller that seeds one
generator per image gets the same pixels on every run and in any process.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from training.datasets.synthetic.appearance import IdentityLook, identity_look
from training.datasets.synthetic.camera import (
    BACKGROUND_MARGIN,
    CameraLook,
    camera_background,
    camera_look,
    tone,
)

# body-part labels in the label map; 0 is background
SKIN, HAIR, UPPER, LOWER, SHOES, BAG, HAT, UPPER_SECONDARY = range(1, 9)
NUM_PARTS = 9
VIEWS = ("front", "back", "left", "right")  # left / right: side views, walking towards that side
KINDS = ("person", "distractor", "junk")


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


class _Canvas:
    """A label map with helpers that paint a shape inside its bounding box only (fast)."""

    def __init__(self, height: int, width: int) -> None:
        self.labels = np.zeros((height, width), np.uint8)
        self.ys, self.xs = _grid(height, width)
        self.height, self.width = height, width

    def _box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.height)
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        part: int,
        y_min: float = -1e9,
        y_max: float = 1e9,
        x_min: float = -1e9,
        x_max: float = 1e9,
    ) -> None:
        box = self._box(max(cy - ry, y_min), min(cy + ry, y_max), max(cx - rx, x_min), min(cx + rx, x_max))
        if box is None:
            return
        ys, xs = self.ys[box], self.xs[box]
        inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        inside &= (ys >= y_min) & (ys <= y_max) & (xs >= x_min) & (xs <= x_max)
        self.labels[box][inside] = part

    def quad(
        self,
        y_top: float,
        y_bottom: float,
        left_top: float,
        right_top: float,
        left_bottom: float,
        right_bottom: float,
        part: int,
    ) -> None:
        """A shape with horizontal top and bottom edges and straight (possibly slanted) sides."""
        box = self._box(y_top, y_bottom, min(left_top, left_bottom), max(right_top, right_bottom))
        if box is None:
            return
        ys, xs = self.ys[box], self.xs[box]
        t = (ys - y_top) / max(y_bottom - y_top, 1e-3)
        left = left_top + t * (left_bottom - left_top)
        right = right_top + t * (right_bottom - right_top)
        inside = (xs >= left) & (xs <= right) & (ys >= y_top) & (ys <= y_bottom)
        self.labels[box][inside] = part

    def rect(self, y_top: float, y_bottom: float, x_left: float, x_right: float, part: int) -> None:
        self.quad(y_top, y_bottom, x_left, x_right, x_left, x_right, part)


def draw_person(
    canvas: _Canvas,
    look: IdentityLook,
    view: str,
    cx: float,
    feet_y: float,
    body_height: float,
    stride: float,
) -> None:
    """Paint the body-part labels of `look` seen from `view` (side views face right; flip for left).

    `body_height` is the person's height in pixels, `stride` in [-1, 1] the leg swing of a side view.
    """
    h = body_height
    top = feet_y - h
    side = view in ("left", "right")
    # seen from the back, the person's right is on the image's right
    mirror = -1 if view == "back" else 1
    shoulder = (0.08 if side else 0.13) * h * look.build
    waist = shoulder * 0.82
    y_shoulder, y_hip, y_knee, y_ankle = top + 0.165 * h, top + 0.5 * h, top + 0.72 * h, top + 0.945 * h
    head_cx, head_cy, head_rx, head_ry = (
        cx + (0.015 * h if side else 0.0),
        top + 0.075 * h,
        0.052 * h,
        0.07 * h,
    )

    # backpack seen from the side hangs behind the torso: draw first so the body covers its edge
    if look.bag == "backpack" and side:
        canvas.rect(
            y_shoulder + 0.03 * h, top + 0.43 * h, cx - shoulder - 0.08 * h, cx - shoulder + 0.03 * h, BAG
        )

    # legs and shoes
    if side:
        swing = stride * 0.11 * h
        for direction in (1, -1):
            foot = cx + direction * swing
            canvas.quad(
                y_hip, y_ankle, cx - 0.045 * h, cx + 0.045 * h, foot - 0.035 * h, foot + 0.035 * h, LOWER
            )
            canvas.rect(y_ankle - 0.01 * h, feet_y, foot - 0.04 * h, foot + 0.07 * h, SHOES)
    else:
        hip = 0.1 * h * look.build
        gap = 0.012 * h
        for direction in (1, -1):
            outer_top, inner_top = cx + direction * hip, cx + direction * gap
            outer_bottom, inner_bottom = cx + direction * (hip * 0.75), cx + direction * (gap + 0.01 * h)
            l_top, r_top = sorted((outer_top, inner_top))
            l_bot, r_bot = sorted((outer_bottom, inner_bottom))
            canvas.quad(y_hip - 0.01 * h, y_ankle, l_top, r_top, l_bot, r_bot, LOWER)
            canvas.rect(y_ankle - 0.01 * h, feet_y, l_bot - 0.01 * h, r_bot + 0.01 * h, SHOES)
    if look.lower_style == "shorts":  # bare lower legs
        mask = (canvas.labels == LOWER) & (canvas.ys > top + 0.66 * h)
        canvas.labels[mask] = SKIN
    elif look.lower_style == "skirt":
        mask = (canvas.labels == LOWER) & (canvas.ys > y_hip)
        canvas.labels[mask] = SKIN
        flare = 0.05 * h
        canvas.quad(
            y_hip - 0.02 * h, y_knee, cx - waist, cx + waist, cx - waist - flare, cx + waist + flare, LOWER
        )

    # torso (upper garment) and the lower garment's waistband
    canvas.quad(y_shoulder, y_hip + 0.01 * h, cx - shoulder, cx + shoulder, cx - waist, cx + waist, UPPER)
    canvas.rect(y_hip - 0.035 * h, y_hip + 0.02 * h, cx - waist, cx + waist, LOWER)
    canvas.ellipse(cx, y_shoulder + 0.01 * h, shoulder, 0.035 * h, UPPER)

    # arms: sleeves in the upper colour, then skin, then a hand
    sleeve_end = top + (0.47 if look.long_sleeves else 0.29) * h
    arm_w = 0.05 * h * np.sqrt(look.build)
    if side:
        swing = -stride * 0.08 * h
        canvas.quad(
            y_shoulder,
            top + 0.48 * h,
            cx - arm_w / 2,
            cx + arm_w / 2,
            cx + swing - arm_w / 2,
            cx + swing + arm_w / 2,
            SKIN,
        )
        canvas.quad(
            y_shoulder,
            sleeve_end,
            cx - arm_w / 2,
            cx + arm_w / 2,
            cx + swing * (sleeve_end - y_shoulder) / (0.31 * h) - arm_w / 2,
            cx + swing * (sleeve_end - y_shoulder) / (0.31 * h) + arm_w / 2,
            UPPER,
        )
        canvas.ellipse(cx + swing, top + 0.49 * h, arm_w * 0.55, 0.025 * h, SKIN)
    else:
        for direction in (1, -1):
            inner = cx + direction * (shoulder - 0.01 * h)
            outer_top = cx + direction * (shoulder + arm_w)
            outer_bottom = cx + direction * (shoulder + arm_w + 0.015 * h)
            l_top, r_top = sorted((inner, outer_top))
            l_bot, r_bot = sorted((inner + direction * 0.015 * h, outer_bottom))
            canvas.quad(y_shoulder + 0.01 * h, top + 0.48 * h, l_top, r_top, l_bot, r_bot, SKIN)
            canvas.quad(y_shoulder + 0.01 * h, sleeve_end, l_top, r_top, l_bot, r_bot, UPPER)
            canvas.ellipse((l_bot + r_bot) / 2, top + 0.49 * h, arm_w * 0.55, 0.025 * h, SKIN)

    # straps and bags in front of the body
    if look.bag == "backpack" and not side:
        if view == "back":
            canvas.rect(y_shoulder + 0.025 * h, top + 0.44 * h, cx - 0.1 * h, cx + 0.1 * h, BAG)
        else:
            for direction in (1, -1):
                x = cx + direction * 0.07 * h
                canvas.rect(y_shoulder, top + 0.34 * h, x - 0.012 * h, x + 0.012 * h, BAG)
    elif look.bag == "shoulder":
        bag_side = look.bag_side * mirror
        if not side:
            x_from, x_to = cx - bag_side * shoulder * 0.8, cx + bag_side * shoulder * 0.9
            width = 0.014 * h
            canvas.quad(
                y_shoulder, top + 0.44 * h, x_from - width, x_from + width, x_to - width, x_to + width, BAG
            )
            x_bag = cx + bag_side * (shoulder + 0.04 * h)
        else:
            x_bag = cx - 0.03 * h
        canvas.rect(top + 0.42 * h, top + 0.56 * h, x_bag - 0.065 * h, x_bag + 0.065 * h, BAG)
    elif look.bag == "handbag":
        x_hand = cx + (look.bag_side * mirror * (shoulder + arm_w) if not side else 0.0)
        canvas.rect(top + 0.5 * h, top + 0.6 * h, x_hand - 0.045 * h, x_hand + 0.045 * h, BAG)
        canvas.rect(top + 0.48 * h, top + 0.5 * h, x_hand - 0.01 * h, x_hand + 0.01 * h, BAG)

    # neck, head, hair, hat
    canvas.rect(top + 0.12 * h, y_shoulder + 0.01 * h, cx - 0.025 * h, cx + 0.025 * h, SKIN)
    canvas.ellipse(head_cx, head_cy, head_rx, head_ry, SKIN)
    if look.hair_style != "bald":
        long_hair = look.hair_style == "long"
        if view == "back":
            canvas.ellipse(
                head_cx, head_cy, head_rx * 1.05, head_ry * 1.02, HAIR, y_max=head_cy + 0.75 * head_ry
            )
            if long_hair:
                canvas.rect(head_cy, top + 0.27 * h, head_cx - head_rx, head_cx + head_rx, HAIR)
        elif view == "front":
            canvas.ellipse(
                head_cx, head_cy, head_rx * 1.05, head_ry * 1.02, HAIR, y_max=head_cy - 0.35 * head_ry
            )
            if long_hair:
                for direction in (1, -1):
                    x0 = head_cx + direction * head_rx * 0.7
                    canvas.rect(
                        head_cy - 0.4 * head_ry,
                        top + 0.24 * h,
                        min(x0, x0 + direction * 0.03 * h),
                        max(x0, x0 + direction * 0.03 * h),
                        HAIR,
                    )
        else:  # side, facing right: hair on the top and the back of the head
            canvas.ellipse(
                head_cx, head_cy, head_rx * 1.05, head_ry * 1.02, HAIR, y_max=head_cy - 0.3 * head_ry
            )
            canvas.ellipse(
                head_cx,
                head_cy,
                head_rx * 1.05,
                head_ry * 1.02,
                HAIR,
                x_max=head_cx - 0.1 * head_rx,
                y_max=head_cy + 0.5 * head_ry,
            )
            if long_hair:
                canvas.rect(head_cy, top + 0.26 * h, head_cx - head_rx, head_cx - 0.2 * head_rx, HAIR)
    if look.hat is not None:
        canvas.ellipse(head_cx, head_cy, head_rx * 1.1, head_ry * 1.05, HAT, y_max=head_cy - 0.25 * head_ry)
        canvas.rect(
            head_cy - 0.3 * head_ry,
            head_cy - 0.18 * head_ry,
            head_cx - head_rx * 1.25,
            head_cx + head_rx * 1.25,
            HAT,
        )


def _palette(look: IdentityLook, camera: CameraLook, rng: np.random.Generator) -> np.ndarray:
    """(NUM_PARTS, 3) float32 colours of the label map as `camera` sees them, with a little
    per-image variation in how each part catches the light."""
    palette = np.zeros((NUM_PARTS, 3), np.float32)
    palette[SKIN], palette[HAIR], palette[UPPER] = look.skin, look.hair, look.upper
    palette[LOWER], palette[SHOES], palette[BAG] = look.lower, look.shoes, look.bag_color
    palette[HAT] = look.hat if look.hat is not None else look.hair
    palette[UPPER_SECONDARY] = look.upper_secondary
    palette *= rng.uniform(0.93, 1.07, (NUM_PARTS, 1)).astype(np.float32)
    return tone(camera, palette)


def _occlude(image: np.ndarray, camera: CameraLook, rng: np.random.Generator) -> None:
    """Paint, in place, a pole, a counter or part of a passer-by in front of the person."""
    height, width = image.shape[:2]
    colour = tone(camera, np.asarray(camera.occluder, np.float32) * rng.uniform(0.8, 1.2))
    kind = rng.integers(3)
    if kind == 0:  # a pole or door frame
        x0 = int(rng.integers(0, width - 4))
        image[:, x0 : x0 + int(rng.integers(4, max(5, width // 6)))] = colour
    elif kind == 1:  # a counter, railing or trolley covering the legs
        image[height - int(height * rng.uniform(0.15, 0.4)) :] = colour
    else:  # another person's shoulder at one edge
        ys, xs = _grid(height, width)
        cx = -width * 0.1 if rng.random() < 0.5 else width * 1.1
        mask = ((xs - cx) / (width * rng.uniform(0.25, 0.4))) ** 2 + (
            (ys - height * 0.6) / (height * 0.5)
        ) ** 2 <= 1
        image[mask] = tone(camera, rng.integers(20, 230, 3))


def render_crop(
    look: IdentityLook | None,
    camera: CameraLook,
    rng: np.random.Generator,
    *,
    view: str = "front",
    kind: str = "person",
    height: int = 128,
    width: int = 64,
) -> np.ndarray:
    """Render one detection crop as seen by `camera`.

    Args:
        look: the person; ignored for `kind="junk"` (background or a fragment only).
        kind: "person" (a good detection), "distractor" (a bad detection: off-centre, cut or tiny),
            "junk" (mostly background).
    Returns:
        (height, width, 3) uint8 RGB.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    scene = camera_background(camera, height, width)
    oy, ox = rng.integers(0, BACKGROUND_MARGIN + 1, 2)
    image = scene[oy : oy + height, ox : ox + width].copy()

    scale = rng.uniform(*camera.person_scale)
    cx = width / 2 + rng.uniform(-0.07, 0.07) * width
    feet_y = height * (1 - rng.uniform(0.01, 0.05))
    if kind == "distractor":
        mode = rng.integers(3)
        if mode == 0:
            cx += rng.choice((-1, 1)) * width * rng.uniform(0.3, 0.45)
        elif mode == 1:
            scale *= rng.uniform(1.4, 1.9)
            feet_y = height * scale * rng.uniform(0.9, 1.0)
        else:
            scale *= rng.uniform(0.4, 0.55)
            feet_y = height * rng.uniform(0.5, 0.95)
    elif kind == "junk":
        cx = rng.choice((-0.35, 1.35)) * width
        scale *= 0.8
    if look is not None:
        canvas = _Canvas(height, width)
        body_height = height * scale * look.height
        draw_person(
            canvas,
            look,
            "right" if view == "left" else view,
            cx if view != "left" else width - cx,
            feet_y,
            body_height,
            stride=float(rng.uniform(-1, 1)),
        )
        labels = canvas.labels[:, ::-1].copy() if view == "left" else canvas.labels
        if look.upper_pattern != "plain":
            ys, xs = _grid(height, width)
            period = max(look.pattern_period * body_height / 100.0, 1.5)
            bands = np.floor((ys - feet_y) / period)
            if look.upper_pattern == "checks":
                bands += np.floor((xs - cx) / period)
            labels[(labels == UPPER) & (bands % 2 == 1)] = UPPER_SECONDARY
        xs = _grid(height, width)[1]
        shade = np.clip(1.0 - 0.3 * ((xs - cx) / max(0.16 * body_height, 1.0)) ** 2, 0.65, 1.0)
        person = np.take(_palette(look, camera, rng), labels, axis=0) * shade[..., None]
        np.copyto(image, person, where=(labels > 0)[..., None])
    if rng.random() < camera.occlusion:
        _occlude(image, camera, rng)

    # per-shot light: the camera's tone is already in the scene and palette
    image *= (rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, 3)).astype(np.float32)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if camera.resolution < 1.0:
        small = (max(int(width * camera.resolution), 8), max(int(height * camera.resolution), 16))
        picture = picture.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
    if camera.blur > 0:
        picture = picture.filter(_blur_kernel(camera.blur))
    bank = _noise_bank(height, width)
    ny, nx = rng.integers(0, NOISE_MARGIN + 1, 2)
    noise = bank[ny : ny + height, nx : nx + width] * np.float32(camera.noise)
    return np.clip(np.asarray(picture, np.float32) + noise, 0, 255).astype(np.uint8)


NOISE_MARGIN = 96


@lru_cache(maxsize=4)
def _noise_bank(height: int, width: int) -> np.ndarray:
    """Unit Gaussian sensor noise, larger than a crop; each image takes a random window of it
    (drawing fresh noise per image costs more than the rest of the rendering)."""
    bank = np.random.default_rng(12345).standard_normal((height + NOISE_MARGIN, width + NOISE_MARGIN, 3))
    bank = bank.astype(np.float32)
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=16)
def _blur_kernel(sigma: float) -> ImageFilter.Kernel:
    """A 3x3 Gaussian blur (enough for sigma <= 1 at this size, and far cheaper than GaussianBlur)."""
    taps = np.exp(-(np.array([1.0, 0.0, 1.0]) ** 2) / (2 * sigma**2))
    weights = np.outer(taps, taps).ravel()
    return ImageFilter.Kernel((3, 3), (weights / weights.sum()).tolist(), scale=1)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes (deterministic for the same pixels and quality)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_identity_image(
    pid: int,
    camid: int,
    *,
    seed: int = 0,
    index: int = 0,
    view: str | None = None,
    twin_fraction: float = 0.1,
    height: int = 128,
    width: int = 64,
) -> np.ndarray:
    """A synthetic photo of identity `pid` (>= 1) seen by camera `camid` (0-based), for tests and demos.

    The identity and camera looks are those of a dataset generated with the same `seed` and
    `twin_fraction`; `index` picks one of endlessly many shots (pose, crop, light, noise); `view`
    (front / back / left / right) defaults to one drawn from the camera's usual viewpoints.
    Returns (height, width, 3) uint8 RGB; the same arguments always give the same pixels.
    """
    if camid < 0:
        raise ValueError(f"camid is 0-based and must be >= 0, not {camid}")
    rng = np.random.default_rng([seed, 6, pid, camid, index])
    camera = camera_look(seed, camid)
    if view is None:
        weights = np.asarray(camera.view_weights)
        view = ("front", "back", "side")[rng.choice(3, p=weights / weights.sum())]
        if view == "side":
            view = ("left", "right")[rng.integers(2)]
    return render_crop(
        identity_look(seed, pid, twin_fraction), camera, rng, view=view, height=height, width=width
    )
