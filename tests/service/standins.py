"""TEMPORARY test-only stand-ins for service/index.py and service/footfall.py (owned by wip/index),
written to the interface in notes/service_api.md. conftest installs them only while the real
modules are missing; delete this file once wip/index is merged."""

from __future__ import annotations

import hashlib
import os
import pickle
from datetime import UTC, datetime, timedelta

import numpy as np


class IndexFileError(Exception):
    pass


class VectorIndex:
    def __init__(self, dim, kind="flat", *, nlist=None, hnsw_m=32, use_gpu=None):
        self.dim = dim
        self._ids = np.zeros(0, np.int64)
        self._vecs = np.zeros((0, dim), np.float32)

    def add(self, ids, vectors):
        ids = np.asarray(ids, np.int64)
        if np.isin(ids, self._ids).any():
            raise ValueError("duplicate id")
        self._ids = np.concatenate([self._ids, ids])
        self._vecs = np.concatenate([self._vecs, np.asarray(vectors, np.float32).reshape(-1, self.dim)])

    def remove(self, ids):
        keep = ~np.isin(self._ids, np.asarray(ids, np.int64))
        n = int((~keep).sum())
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return n

    def search(self, queries, k, allowed_ids=None):
        q = np.asarray(queries, np.float32).reshape(-1, self.dim)
        scores = q @ self._vecs.T
        if allowed_ids is not None:
            scores[:, ~np.isin(self._ids, allowed_ids)] = -np.inf
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            order = np.argsort(-scores[r], kind="stable")[:k]
            order = order[np.isfinite(scores[r][order])]
            out_s[r, : len(order)] = scores[r][order]
            out_i[r, : len(order)] = self._ids[order]
        return out_s, out_i

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return np.sort(self._ids)

    def fingerprint(self):
        return f"{len(self)}:{hashlib.sha256(self.ids().tobytes()).hexdigest()}"

    def train_if_needed(self, sample):
        pass

    def save(self, path):
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump((self.dim, self._ids, self._vecs), fh)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as fh:
                dim, ids, vecs = pickle.load(fh)
        except Exception as exc:
            raise IndexFileError(str(exc)) from exc
        index = cls(dim)
        index._ids, index._vecs = ids, vecs
        return index


def parse_bucket(text):
    units = {"m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ValueError(f"bad bucket {text!r}")
    return int(text[:-1]) * units[text[-1]]


def bucket_edges(start, end, bucket_s):
    edges, t = [], start
    while t < end:
        edges.append(t)
        t = t + timedelta(seconds=bucket_s)
    edges.append(end)
    return edges


def assign_visitor(vector, captured_at, cand_vectors, cand_visitors, cand_times, threshold, horizon_s):
    if len(cand_vectors) == 0:
        return None
    ok = np.abs(np.asarray(cand_times) - captured_at) <= horizon_s
    scores = np.where(ok, np.asarray(cand_vectors) @ vector, -np.inf)
    best = int(np.argmax(scores))
    return int(cand_visitors[best]) if scores[best] >= threshold else None


def cluster_visitors(vectors, times, cameras, threshold, horizon_s):
    labels = np.full(len(vectors), -1, np.int64)
    for i in range(len(vectors)):
        v = assign_visitor(vectors[i], times[i], vectors[:i], labels[:i], times[:i], threshold, horizon_s)
        labels[i] = i if v is None else v
    return labels


def footfall_series(times, cameras, visitor_ids, start, end, bucket_s, cameras_filter):
    times, cameras, visitor_ids = np.asarray(times), np.asarray(cameras, object), np.asarray(visitor_ids)
    edges = bucket_edges(start, end, bucket_s)
    cams = sorted(cameras_filter) if cameras_filter else sorted(set(cameras.tolist()))
    series, by_bucket = [], []
    for b0, b1 in zip(edges[:-1], edges[1:], strict=True):
        inb = (times >= b0.timestamp()) & (times < b1.timestamp())
        for cam in cams:
            sel = inb & (cameras == cam)
            series.append(
                {
                    "bucket_start": b0.isoformat(),
                    "bucket_end": b1.isoformat(),
                    "camera_id": cam,
                    "sightings": int(sel.sum()),
                    "unique_visitors": len(set(visitor_ids[sel].tolist())),
                }
            )
        sel = inb & np.isin(cameras, cams)
        by_bucket.append(
            {
                "bucket_start": b0.isoformat(),
                "sightings": int(sel.sum()),
                "unique_visitors": len(set(visitor_ids[sel].tolist())),
            }
        )
    sel = (times >= start.timestamp()) & (times < end.timestamp()) & np.isin(cameras, cams)
    by_camera = {}
    for cam in cams:
        s = sel & (cameras == cam)
        by_camera[cam] = {"sightings": int(s.sum()), "unique_visitors": len(set(visitor_ids[s].tolist()))}
    totals = {
        "sightings": int(sel.sum()),
        "unique_visitors": len(set(visitor_ids[sel].tolist())),
        "by_camera": by_camera,
        "by_bucket": by_bucket,
    }
    return {"series": series, "totals": totals, "cameras": cams}


_ = (UTC, datetime)
