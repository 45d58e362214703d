import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from model.images import resize_to_input
from training.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Random2DTranslation,
    RandomErasing,
    RandomHorizontalFlip,
    build_train_transform,
)


def noise_image(h: int = 40, w: int = 20, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_translation_is_a_crop_of_the_enlarged_image_or_a_plain_resize():
    image = noise_image()
    size = (16, 8)
    enlarged = TF.resize(image, [18, 9], antialias=True)  # round(1.125 * (16, 8))
    candidates = {
        (top, left): np.asarray(TF.crop(enlarged, top, left, 16, 8)) for top in range(3) for left in range(2)
    }
    g = torch.Generator().manual_seed(0)
    always = Random2DTranslation(size, p=1.0, generator=g)
    seen = set()
    for _ in range(60):
        out = np.asarray(always(image))
        assert out.shape == (16, 8, 3)
        matches = [k for k, c in candidates.items() if np.array_equal(c, out)]
        assert matches, "output is not a crop of the enlarged image"
        seen.update(matches)
    assert seen == set(candidates)  # every offset occurs
    never = Random2DTranslation(size, p=0.0, generator=g)
    assert np.array_equal(np.asarray(never(image)), np.asarray(image.resize((8, 16), Image.BILINEAR)))


def test_flip_mirrors():
    image = noise_image()
    assert np.array_equal(np.asarray(RandomHorizontalFlip(1.0)(image)), np.asarray(image)[:, ::-1])
    assert RandomHorizontalFlip(0.0)(image) is image


def test_erasing_zeroes_one_rectangle_within_area_and_aspect_bounds():
    g = torch.Generator().manual_seed(1)
    eraser = RandomErasing(1.0, generator=g)
    source = torch.rand(3, 64, 32) + 1.0  # strictly positive, so zeros come only from erasing
    for _ in range(50):
        out = eraser(source)
        zero = (out == 0).all(dim=0)
        rows, cols = torch.nonzero(zero, as_tuple=True)
        assert len(rows) > 0
        h = int(rows.max() - rows.min() + 1)
        w = int(cols.max() - cols.min() + 1)
        assert int(zero.sum()) == h * w  # one solid rectangle
        assert (out == 0).all(dim=0).sum() == (out == 0).sum() / 3  # all channels erased together
        assert 0.02 * 0.6 <= h * w / (64 * 32) <= 0.4 * 1.4
        assert 0.3 * 0.5 <= h / w <= 3.33 * 2
    assert (source > 0).all(), "input tensor modified in place"
    assert RandomErasing(0.0)(source) is source


def test_erasing_probability_is_respected():
    g = torch.Generator().manual_seed(2)
    eraser = RandomErasing(0.5, generator=g)
    source = torch.ones(3, 32, 16)
    erased = sum(bool((eraser(source) == 0).any()) for _ in range(400))
    assert 150 < erased < 250


def test_train_transform_shape_and_determinism_with_generator():
    image = noise_image(70, 30)
    make = lambda seed: build_train_transform((16, 8), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = make(5), make(5), make(6)
    outs_a = [a(image) for _ in range(8)]
    outs_b = [b(image) for _ in range(8)]
    outs_c = [c(image) for _ in range(8)]
    assert all(o.shape == (3, 16, 8) and o.dtype == torch.float32 for o in outs_a)
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(outs_a, outs_c, strict=True))
    assert len({o.sum().item() for o in outs_a}) > 1  # it does augment


def test_train_transform_uses_torch_global_rng_without_generator():
    image = noise_image()
    transform = build_train_transform((16, 8))
    torch.manual_seed(3)
    first = [transform(image) for _ in range(6)]
    torch.manual_seed(3)
    second = [transform(image) for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))


def test_train_transform_without_augmentation_equals_the_test_time_preprocessing():
    image = noise_image(50, 21)
    train = build_train_transform((16, 8), translate_p=0.0, flip_p=0.0, erasing_p=0.0)
    pixels = torch.from_numpy(resize_to_input(image, (16, 8))).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(train(image), (pixels - mean) / std, atol=1e-6)


def test_accepts_uint8_tensor_input():
    tensor = torch.from_numpy(np.array(noise_image())).permute(2, 0, 1).contiguous()
    assert build_train_transform((16, 8))(tensor).shape == (3, 16, 8)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build_train_transform((256,)), "input_size"),
        (lambda: build_train_transform(flip_p=1.5), "probability"),
        (lambda: build_train_transform(erasing_area=(0.5, 0.2)), "area"),
        (lambda: build_train_transform(erasing_aspect=(0.0, 3.0)), "aspect"),
        (lambda: build_train_transform(mean=(0.5, 0.5)), "mean and std"),
        (lambda: build_train_transform(std=(0.2, 0.0, 0.2)), "std"),
        (lambda: RandomErasing(1.0)(torch.zeros(16, 8)), r"\(C, H, W\)"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
