"""training.evaluate and `reid evaluate`: JSON report and ranked-list picture from a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import ModelMeta, save_checkpoint
from model.embedder import Embedder
from model.resnet_rga import RGAReID
from reid.cli import main
from training.datasets import load_dataset
from training.retrieval_metrics import evaluate_rank
from training.visualize import (
    BORDER,
    GAP,
    LABEL_H,
    LEGEND_H,
    MATCH_COLOUR,
    MISS_COLOUR,
    THUMB,
    draw_ranked_lists,
    ranked_list,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = RGAReID("rgasc", 12, (64, 32), (8, 2, 2))
        # a BNNeck with statistics of its own, so that feat and feat_ rank differently
        net.feat_bn.running_mean.uniform_(-0.5, 0.5)
        net.feat_bn.running_var.uniform_(0.3, 3.0)
    meta = ModelMeta(
        variant="rgasc", input_size=(64, 32), ratios=(8, 2, 2), num_classes=12, dataset="synthetic"
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "net.pt", net, meta)


def test_reid_evaluate_writes_json_and_png_that_agree_with_the_embedder(
    checkpoint, small_synthetic, tmp_path, capsys
):
    out = tmp_path / "eval"
    code = main(
        ["evaluate", "--weights", str(checkpoint), "--dataset", "synthetic", "--root", str(small_synthetic),
         "--out", str(out), "--device", "cpu", "--workers", "0", "--ranked-lists", "3"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "eval.json").read_text())
    assert f"mAP {100 * report['mAP']:.2f}%" in printed

    dataset = load_dataset("synthetic", small_synthetic)
    assert (report["num_query"], report["num_gallery"]) == (len(dataset.query), len(dataset.gallery))
    assert report["feature"] == "feat_" and report["flip"] is False and report["rerank"] is False
    # the evaluation's loader path must give what the embedder gives on the files themselves
    embedder = Embedder.from_checkpoint(checkpoint, device="cpu")
    q = embedder.embed([r.path for r in dataset.query])
    g = embedder.embed([r.path for r in dataset.gallery])
    expected = evaluate_rank(
        1.0 - q @ g.T,
        [r.pid for r in dataset.query],
        [r.pid for r in dataset.gallery],
        [r.camid for r in dataset.query],
        [r.camid for r in dataset.gallery],
    )
    assert report["mAP"] == pytest.approx(expected["mAP"], abs=1e-5)
    assert report["rank1"] == pytest.approx(expected["cmc"][0], abs=1e-6)
    assert report["rank10"] == pytest.approx(expected["cmc"][9], abs=1e-6)
    assert report["mINP"] == pytest.approx(expected["mINP"], abs=1e-5)
    # both features are reported, as the official evaluator prints both; feat_ is the top level here
    assert report["by_feature"]["feat_"]["mAP"] == report["mAP"]
    bnneck = Embedder.from_checkpoint(checkpoint, device="cpu", feature="feat")
    q, g = bnneck.embed([r.path for r in dataset.query]), bnneck.embed([r.path for r in dataset.gallery])
    expected_feat = evaluate_rank(
        1.0 - q @ g.T,
        [r.pid for r in dataset.query],
        [r.pid for r in dataset.gallery],
        [r.camid for r in dataset.query],
        [r.camid for r in dataset.gallery],
    )
    assert report["by_feature"]["feat"]["mAP"] == pytest.approx(expected_feat["mAP"], abs=1e-5)
    assert report["by_feature"]["feat"]["rank1"] == pytest.approx(expected_feat["cmc"][0], abs=1e-6)

    picture = Image.open(out / "ranked_lists.png")
    assert picture.format == "PNG"
    cell_w, cell_h = THUMB[0] + 2 * BORDER, THUMB[1] + 2 * BORDER
    assert picture.size == (
        GAP + (cell_w + GAP) * 11 + GAP,
        LEGEND_H + GAP + (cell_h + LABEL_H + GAP) * 3,
    )  # 3 queries, top 10


def test_evaluate_with_flip_and_rerank(checkpoint, small_synthetic, tmp_path):
    out = tmp_path / "eval"
    code = main(
        ["evaluate", "--weights", str(checkpoint), "--dataset", "synthetic", "--root", str(small_synthetic),
         "--out", str(out), "--device", "cpu", "--workers", "0", "--flip", "--rerank", "--feature", "feat",
         "--ranked-lists", "0"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["flip"] is True and report["rerank"] is True and report["feature"] == "feat"
    assert not (out / "ranked_lists.png").exists()


def test_evaluate_missing_weights_is_one_line_exit_2(small_synthetic, tmp_path, capsys):
    code = main(["evaluate", "--weights", str(tmp_path / "nope.pt"), "--dataset", "synthetic",
                 "--root", str(small_synthetic), "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "nope.pt" in capsys.readouterr().err


def test_ranked_list_picture_borders(small_synthetic, tmp_path):
    dataset = load_dataset("synthetic", small_synthetic)
    query, gallery = dataset.query[:1], dataset.gallery
    # rank the gallery so that the query's own identity (other cameras) comes first
    distances = np.array([[0.0 if g.pid == query[0].pid else 1.0 for g in gallery]])
    top = ranked_list(distances[0], query[0], gallery, 10)
    assert all(not (gallery[i].pid == query[0].pid and gallery[i].camid == query[0].camid) for i in top)
    path = draw_ranked_lists(distances, query, gallery, tmp_path / "r.png", top_k=10)
    image = np.asarray(Image.open(path).convert("RGB"))
    # sample the top-left border pixel of each ranked cell
    cell_w = THUMB[0] + 2 * BORDER
    x0 = GAP + cell_w + 2 * GAP
    y0 = LEGEND_H + GAP
    colours = [tuple(image[y0 + 1, x0 + k * (cell_w + GAP) + 1]) for k in range(len(top))]
    for k, g in enumerate(top):
        assert colours[k] == (MATCH_COLOUR if gallery[g].pid == query[0].pid else MISS_COLOUR)
    assert MATCH_COLOUR in colours and MISS_COLOUR in colours
    # labels under every picture: text, and its right/wrong word in the frame's colour
    cell_h = THUMB[1] + 2 * BORDER
    assert image.shape[0] == LEGEND_H + GAP + cell_h + LABEL_H + GAP
    for k in range(len(top)):
        label = image[
            y0 + cell_h : y0 + cell_h + LABEL_H, x0 + k * (cell_w + GAP) : x0 + k * (cell_w + GAP) + cell_w
        ]
        assert (label != 255).any(axis=2).sum() > 20, f"no label under rank {k + 1}"
        assert (label == colours[k]).all(axis=2).any(), f"no right/wrong word under rank {k + 1}"
    # the legend: the three frame colours, and text
    legend = image[:LEGEND_H]
    for colour in (MATCH_COLOUR, MISS_COLOUR):
        assert (legend == colour).all(axis=2).any()
    assert (legend != 255).any(axis=2).sum() > 200
