"""The service on ONNX Runtime: REID_WEIGHTS=*.onnx / REID_RUNTIME=onnxruntime, and the model guard across runtimes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from model import ModelMeta, build_model, save_checkpoint  # noqa: E402
from model.errors import ReidError  # noqa: E402
from model.onnx_export import export_onnx  # noqa: E402
from model.onnx_quantize import quantize_int8  # noqa: E402
from service.app import create_app, load_embedder  # noqa: E402
from tests.service.service_fixtures import SEARCH, identity_image, ingest, make_settings, upload  # noqa: E402

INPUT = (64, 32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx-service")
    meta = ModelMeta(variant="none", input_size=INPUT)
    net = build_model("none", input_size=INPUT).eval()
    ckpt = save_checkpoint(folder / "w.pt", net, meta)
    fp32 = export_onnx(net, meta, folder / "w.onnx")
    int8 = quantize_int8(fp32, folder / "w.int8.onnx", [identity_image(i, 0) for i in range(4)])
    return {"ckpt": ckpt, "fp32": fp32, "int8": int8}


def _top(client):
    r = client.post("/search", files=upload([identity_image(1, 99)]), data={"top_k": 3}, headers=SEARCH)
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["hits"]]


def test_a_torch_gallery_is_served_by_its_onnx_export_but_not_by_int8(tmp_path, weights):
    settings = make_settings(tmp_path, weights=weights["ckpt"])
    with TestClient(create_app(settings)) as client:
        for identity in range(3):
            assert ingest(client, [identity_image(identity, s) for s in range(2)]).status_code in (200, 201)
        before = _top(client)
    onnx_settings = make_settings(tmp_path, weights=weights["fp32"])
    with TestClient(create_app(onnx_settings)) as client:
        assert client.app.state.ctx.embedder.runtime == "onnxruntime"
        assert _top(client) == before
    on_the_fly = make_settings(tmp_path, weights=weights["ckpt"], runtime="onnxruntime")
    embedder = load_embedder(on_the_fly)
    assert embedder.runtime == "onnxruntime" and list(
        (tmp_path / "data" / "onnx-cache" / "onnx").glob("*.onnx")
    )
    int8_settings = make_settings(tmp_path, weights=weights["int8"])
    with pytest.raises(ReidError, match="different models"), TestClient(create_app(int8_settings)):
        pass


def test_reid_precision_reaches_the_embedder_and_bf16_is_refused_for_an_onnx_file(tmp_path, weights):
    from pydantic import ValidationError

    from service.settings import Settings

    bf16 = load_embedder(make_settings(tmp_path, weights=weights["ckpt"], precision="bf16", device="cpu"))
    fp32 = load_embedder(make_settings(tmp_path, weights=weights["ckpt"], device="cpu"))
    assert (bf16.runtime, bf16.precision, fp32.precision) == ("torch", "bf16", "fp32")
    assert bf16.fingerprint == fp32.fingerprint  # one model for the gallery's guard (docs/onnx.md)
    with pytest.raises(ReidError, match="applies to the torch runtime"):
        load_embedder(make_settings(tmp_path, weights=weights["fp32"], precision="bf16"))
    with pytest.raises(ValidationError, match="precision"):
        Settings(data_dir=tmp_path, precision="fp16")
