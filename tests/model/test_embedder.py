"""The embedder: normalised, deterministic, order-preserving, chunked, flip TTA, any input type or size."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from model import Embedder, ModelMeta, RGAReID

from .conftest import randomize_batchnorm


def person(seed: int, size=(64, 128)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2] = rng.integers(0, 256, 3)
    img[h // 2 :] = rng.integers(0, 256, 3)
    img += rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    img[:, : w // 3] //= 2  # asymmetric, so a mirror image differs
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def embedder():
    return Embedder.random_init(variant="none", input_size=(128, 64), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def images():
    return [person(i) for i in range(7)]


def test_unit_norm_float32_shape(embedder, images):
    out = embedder.embed(images)
    assert out.shape == (7, 2048) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 2048)


def test_deterministic_and_order_preserving(embedder, images):
    a = embedder.embed(images)
    assert np.array_equal(a, embedder.embed(images))
    reversed_out = embedder.embed(images[::-1])
    assert np.allclose(reversed_out[::-1], a, atol=1e-5)
    one_by_one = np.concatenate([embedder.embed([im]) for im in images])
    assert np.allclose(one_by_one, a, atol=1e-5)  # chunking does not change the result
    assert not np.allclose(a[0], a[1], atol=1e-3)  # different images, different vectors


def test_same_seed_same_network_other_seed_other_network(images):
    a = Embedder.random_init(variant="none", input_size=(128, 64), seed=3).embed(images[:2])
    b = Embedder.random_init(variant="none", input_size=(128, 64), seed=3).embed(images[:2])
    c = Embedder.random_init(variant="none", input_size=(128, 64), seed=4).embed(images[:2])
    assert np.array_equal(a, b) and not np.allclose(a, c, atol=1e-3)


def test_global_rng_untouched():
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    Embedder.random_init(variant="none", input_size=(128, 64))
    assert torch.equal(torch.rand(3), expected)


def test_flip_tta_is_mirror_invariant(images):
    flip = Embedder.random_init(variant="none", input_size=(128, 64), flip=True)
    plain = Embedder.random_init(variant="none", input_size=(128, 64))
    mirrored = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images[:3]]
    assert np.allclose(flip.embed(images[:3]), flip.embed(mirrored), atol=1e-5)
    assert not np.allclose(plain.embed(images[:3]), plain.embed(mirrored), atol=1e-3)


def test_input_types_and_modes_agree(embedder, images, tmp_path):
    image = images[0]
    path = tmp_path / "p.png"
    image.save(path)
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    rgba = image.convert("RGBA")
    sources = [image, np.asarray(image), buf.getvalue(), path, str(path), rgba]
    out = embedder.embed(sources)
    assert np.allclose(out, out[0], atol=1e-6)
    grey = embedder.embed([image.convert("L"), image.convert("P")])
    assert grey.shape == (2, 2048) and np.isfinite(grey).all()


def test_any_input_size_is_resized(embedder, images):
    small = images[0].resize((20, 40))
    big = images[0].resize((300, 700))
    out = embedder.embed([small, big, images[0]])
    assert out.shape == (3, 2048)
    assert float(out[1] @ out[2]) > 0.95  # same picture at another size, same person


def test_preprocess_resizes_and_normalises_with_the_metadata_mean_and_std():
    emb = Embedder.random_init(variant="none", input_size=(128, 64))
    x = emb.preprocess([Image.new("RGB", (30, 70), (255, 128, 0))])
    assert x.shape == (1, 3, 128, 64) and x.dtype == torch.float32
    for c, value in enumerate((255, 128, 0)):
        expected = (value / 255 - emb.meta.mean[c]) / emb.meta.std[c]
        assert torch.allclose(x[0, c], torch.full((128, 64), expected), atol=1e-5)


def test_feature_choice_embeds_the_chosen_output(images):
    # A fresh BNNeck (running mean 0, variance 1, weight 1, bias 0) is a near-identity, which would hide
    # a feature argument that is ignored: give it non-trivial statistics first.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = RGAReID("none", 0, (128, 64))
    randomize_batchnorm(net.feat_bn)
    meta = ModelMeta(variant="none", input_size=(128, 64), source="random-init")
    chosen = {name: Embedder(copy.deepcopy(net), meta, feature=name) for name in ("feat", "feat_")}
    x = chosen["feat"].preprocess(images[:2])
    with torch.inference_mode():
        out = net.eval()(x)
    for name, emb in chosen.items():
        expected = torch.nn.functional.normalize(getattr(out, name), dim=1).numpy()
        assert np.allclose(emb.embed(images[:2]), expected, atol=1e-4), name
    assert not np.allclose(chosen["feat"].embed(images[:2]), chosen["feat_"].embed(images[:2]), atol=1e-2)
    both = chosen["feat_"].embed_features(images[:2], ("feat_", "feat"))  # one pass, both features
    for name, emb in chosen.items():
        assert np.allclose(both[name], emb.embed(images[:2]), atol=1e-6), name
    with pytest.raises(ValueError, match="features"):
        chosen["feat"].embed_features(images[:2], ("logits",))
    assert Embedder(net, dataclasses.replace(meta, embed_feature="feat")).feature == "feat"  # the default


def test_bad_arguments(images):
    with pytest.raises(ValueError, match="feature"):
        Embedder.random_init(variant="none", input_size=(128, 64), feature="logits")
    with pytest.raises(ValueError, match="batch_size"):
        Embedder.random_init(variant="none", input_size=(128, 64), batch_size=0)


def test_full_rgasc_embedder(images):
    emb = Embedder.random_init(variant="rgasc", device="cpu", batch_size=2)
    out = emb.embed(images[:3])
    assert out.shape == (3, 2048) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_agree(images):
    cpu = Embedder.random_init(variant="rgasc", device="cpu").embed(images)
    gpu = Embedder.random_init(variant="rgasc", device="cuda").embed(images)
    assert (cpu * gpu).sum(axis=1).min() >= 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_embeddings_stay_close_to_fp32_on_cuda(images):
    fp32 = Embedder.random_init(variant="rgasc", device="cuda", precision="fp32").embed(images)
    bf16 = Embedder.random_init(variant="rgasc", device="cuda", precision="bf16").embed(images)
    assert (fp32 * bf16).sum(axis=1).min() >= 0.999
