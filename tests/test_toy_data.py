import pytest
import torch

from robustode.data.toy import concentric_spheres, flip_1d, intervals_1d


def test_flip_maps_minus_one_to_one_and_back():
    x, y = flip_1d(10, seed=3)
    assert sorted(x.squeeze().tolist()) == [-1.0] * 5 + [1.0] * 5
    torch.testing.assert_close(y, -x)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_sphere_radii_lie_in_their_ranges_with_matching_labels(dim):
    x, y = concentric_spheres(dim, 300, 500, (0.0, 0.5), (1.0, 1.5), seed=0)
    r = x.norm(dim=1)
    inner, outer = y.squeeze() == -1, y.squeeze() == 1
    assert inner.sum() == 300 and outer.sum() == 500
    assert r[inner].max() <= 0.5 and r[outer].min() >= 1.0 and r[outer].max() <= 1.5


def test_sphere_radius_follows_the_uniform_volume_law():
    # radius = (max - min) * U^(1/d) + min: for d=2 on (0, 1) the median radius is sqrt(1/2).
    x, _ = concentric_spheres(2, 20000, 1, (0.0, 1.0), (2.0, 3.0), seed=0)
    r = x.norm(dim=1)
    r = r[r <= 1.0]
    assert abs(r.median().item() - 0.5**0.5) < 0.01


def test_intervals_are_the_surveys_sets():
    x, y = intervals_1d(200, 400, seed=1)
    inner = x[y == -1]
    outer = x[y == 1].abs()
    assert inner.abs().max() <= 1.0
    assert outer.min() >= 2.0 and outer.max() <= 3.0
    assert (x[y == 1] < 0).any() and (x[y == 1] > 0).any()


def test_toy_data_are_seeded():
    a = concentric_spheres(2, 10, 10, seed=5)
    b = concentric_spheres(2, 10, 10, seed=5)
    c = concentric_spheres(2, 10, 10, seed=6)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[0], c[0])


@pytest.mark.parametrize(
    "kwargs", [{"num_inner": 0}, {"dim": 0}, {"inner_range": (0.0, 1.2)}, {"outer_range": (1.5, 1.0)}]
)
def test_bad_sphere_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        concentric_spheres(**kwargs)
