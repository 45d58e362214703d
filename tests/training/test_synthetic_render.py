"""render_identity_image and the identity / camera looks behind it."""

from __future__ import annotations

import numpy as np
import pytest

from training.datasets.synthetic import encode_jpeg, identity_look, render_identity_image
from training.datasets.synthetic.appearance import is_twin


def test_shape_dtype_and_determinism():
    image = render_identity_image(3, 1, seed=5, index=2)
    assert image.shape == (128, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, render_identity_image(3, 1, seed=5, index=2))
    assert encode_jpeg(image) == encode_jpeg(render_identity_image(3, 1, seed=5, index=2))
    assert not np.array_equal(image, render_identity_image(3, 1, seed=5, index=3))
    assert render_identity_image(3, 1, height=256, width=128).shape == (256, 128, 3)


def test_views_differ_and_bad_arguments_fail():
    front = render_identity_image(4, 0, index=0, view="front")
    back = render_identity_image(4, 0, index=0, view="back")
    assert not np.array_equal(front, back)
    with pytest.raises(ValueError, match="view must be one of"):
        render_identity_image(4, 0, view="above")
    with pytest.raises(ValueError, match="camid is 0-based"):
        render_identity_image(4, -1)
    with pytest.raises(ValueError, match="pid >= 1"):
        render_identity_image(0, 0)


def _torso(image):
    """Mean colour of the central torso region, (3,) float."""
    return image[40:60, 26:38].reshape(-1, 3).mean(axis=0)


def test_identity_is_recognisable_across_shots_more_than_across_people():
    """Same person, same camera, other shots: torso colours closer than between different people."""
    pids = range(1, 21)
    same, different = [], []
    for camid in (0, 1):
        torsos = {
            pid: [_torso(render_identity_image(pid, camid, index=k, view="front")) for k in range(2)]
            for pid in pids
        }
        same += [np.linalg.norm(a - b) for a, b in torsos.values()]
        different += [np.linalg.norm(torsos[p][0] - torsos[q][0]) for p in pids for q in pids if p < q]
    assert np.median(same) < 0.5 * np.median(different)


def test_cameras_change_the_picture_of_one_person():
    views = [render_identity_image(2, camid, index=0, view="front").astype(float) for camid in range(4)]
    corners = [v[:12, :8].mean(axis=(0, 1)) for v in views]  # background
    assert min(np.linalg.norm(a - b) for i, a in enumerate(corners) for b in corners[i + 1 :]) > 5


def test_near_duplicates_exist_and_are_close():
    seed, fraction = 0, 0.1
    twins = [pid for pid in range(2, 400) if is_twin(seed, pid, fraction)]
    assert 20 <= len(twins) <= 60
    for pid in twins[:10]:
        twin, original = identity_look(seed, pid, fraction), identity_look(seed, pid - 1, fraction)
        assert twin != original
        assert twin.upper_pattern == original.upper_pattern and twin.lower_style == original.lower_style
        assert np.abs(np.subtract(twin.upper, original.upper)).max() <= 22
