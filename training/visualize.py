"""A picture of ranked lists: each row is a query, then its top matches with green (same person) or red
borders, each labelled with its rank, distance, camera and right/wrong, under a legend. Gallery entries the
protocol ignores (same person, same camera as the query) are left out, as in the metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.images import load_image
from training.datasets.base import ImageRecord

logger = logging.getLogger(__name__)

THUMB = (64, 128)  # (width, height) of each picture
BORDER = 4
GAP = 6
QUERY_COLOUR = (40, 90, 220)
MATCH_COLOUR = (30, 170, 60)
MISS_COLOUR = (210, 40, 40)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)
LABEL_H = 30  # two lines of text under each picture
LEGEND_H = 26


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:  # older Pillow: the bitmap font
        return ImageFont.load_default()


def pick_queries(num_query: int, count: int) -> list[int]:
    """``count`` query indices spread evenly over the list (deterministic)."""
    if num_query == 0 or count <= 0:
        return []
    count = min(count, num_query)
    return sorted({int(i) for i in np.linspace(0, num_query - 1, count).round()})


def _thumbnail(record: ImageRecord, colour: tuple[int, int, int]) -> Image.Image:
    try:
        image = load_image(record.path).resize(THUMB, Image.BILINEAR)
    except Exception:  # a picture is not worth failing an evaluation for
        image = Image.new("RGB", THUMB, (128, 128, 128))
    framed = Image.new("RGB", (THUMB[0] + 2 * BORDER, THUMB[1] + 2 * BORDER), colour)
    framed.paste(image, (BORDER, BORDER))
    return framed


def ranked_list(
    distances: np.ndarray, query: ImageRecord, gallery: Sequence[ImageRecord], top_k: int
) -> list[int]:
    """Gallery indices of the top ``top_k`` for one query, skipping same-person same-camera entries."""
    order = np.argsort(distances, kind="stable")
    kept = [int(g) for g in order if not (gallery[g].pid == query.pid and gallery[g].camid == query.camid)]
    return kept[:top_k]


def _legend(draw: ImageDraw.ImageDraw, font) -> None:
    """One line at the top: what the frame colours and the labels mean."""
    x = GAP
    for colour, text in (
        (QUERY_COLOUR, "query"),
        (MATCH_COLOUR, "right: same person"),
        (MISS_COLOUR, "wrong: another person"),
    ):
        draw.rectangle([x, 6, x + 14, 20], outline=colour, width=3)
        draw.text((x + 20, 7), text, fill=TEXT_COLOUR, font=font)
        x += 30 + int(draw.textlength(text, font=font))
    draw.text((x + 10, 7), "#rank, d = distance (lower = closer), camera", fill=TEXT_COLOUR, font=font)


def draw_ranked_lists(
    distmat: np.ndarray,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    out_path: str | Path,
    num_queries: int = 6,
    top_k: int = 10,
    query_indices: Sequence[int] | None = None,
) -> Path:
    """Save a PNG: one row per query (blue frame), then its top ``top_k`` (green = same id, red = other)."""
    rows = list(query_indices) if query_indices is not None else pick_queries(len(query), num_queries)
    cell_w, cell_h = THUMB[0] + 2 * BORDER, THUMB[1] + 2 * BORDER
    row_h = cell_h + LABEL_H
    width = GAP + (cell_w + GAP) * (top_k + 1) + GAP
    height = LEGEND_H + GAP + (row_h + GAP) * max(len(rows), 1)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    _legend(draw, font)
    for row, q in enumerate(rows):
        y = LEGEND_H + GAP + row * (row_h + GAP)
        canvas.paste(_thumbnail(query[q], QUERY_COLOUR), (GAP, y))
        draw.text((GAP, y + cell_h + 2), "query", fill=QUERY_COLOUR, font=font)
        draw.text((GAP, y + cell_h + 15), f"cam {query[q].camid + 1}", fill=TEXT_COLOUR, font=font)
        x0 = GAP + cell_w + 2 * GAP
        draw.line([(x0 - GAP, y), (x0 - GAP, y + row_h)], fill=(0, 0, 0), width=1)
        for rank, g in enumerate(ranked_list(distmat[q], query[q], gallery, top_k)):
            right = gallery[g].pid == query[q].pid
            colour = MATCH_COLOUR if right else MISS_COLOUR
            x = x0 + rank * (cell_w + GAP)
            canvas.paste(_thumbnail(gallery[g], colour), (x, y))
            draw.text(
                (x, y + cell_h + 2), f"#{rank + 1} d {float(distmat[q, g]):.3f}", fill=TEXT_COLOUR, font=font
            )
            draw.text(
                (x, y + cell_h + 15),
                f"cam {gallery[g].camid + 1} {'right' if right else 'wrong'}",
                fill=colour,
                font=font,
            )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    logger.info("wrote %s (%d queries, top %d)", out_path, len(rows), top_k)
    return out_path
