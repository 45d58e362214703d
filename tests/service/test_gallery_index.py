"""service.gallery_index.GalleryIndex: saved only when changed; a change while saving stays dirty."""

from __future__ import annotations

import numpy as np

from service.gallery_index import GalleryIndex
from service.vectorstore import create_store, load_store

DIM = 8


def unit(rng, n):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dirty_follows_changes_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "index" / "gallery.faiss"
    gallery = GalleryIndex(create_store(DIM), path)
    assert not gallery.dirty
    gallery.save()  # no file yet: written even though nothing changed
    assert path.exists() and len(load_store(path)) == 0
    gallery.add(np.array([3, 5]), unit(rng, 2))
    assert gallery.dirty and len(gallery) == 2
    mtime = path.stat().st_mtime_ns
    gallery.save()
    assert not gallery.dirty and path.stat().st_mtime_ns != mtime
    assert load_store(path).fingerprint() == gallery.store.fingerprint()
    saved = path.stat().st_mtime_ns
    gallery.save()  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == saved
    assert gallery.remove([99]) == 0 and not gallery.dirty  # removing nothing changes nothing
    assert gallery.remove([3]) == 1 and gallery.dirty


def test_a_change_during_save_keeps_it_dirty(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    gallery = GalleryIndex(create_store(DIM), tmp_path / "g.faiss")
    gallery.add(np.array([1]), unit(rng, 1))
    real_save = gallery.store.save

    def save_then_change(path):
        real_save(path)
        gallery.store.add(np.array([2]), unit(rng, 1))  # another thread adds right after the write

    monkeypatch.setattr(gallery.store, "save", save_then_change)
    gallery.save()
    assert gallery.dirty  # the add is not in the file: the next save writes it
    monkeypatch.undo()
    gallery.save()
    assert not gallery.dirty and len(load_store(tmp_path / "g.faiss")) == 2
