import pytest
import torch

from robustode.core.dynamics import Augment, MLPDynamics


def test_augment_appends_zero_features_to_vectors():
    x = torch.randn(4, 2)
    out = Augment(3)(x)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out[:, :2], x)
    assert out[:, 2:].abs().sum() == 0


def test_augment_appends_zero_channels_to_images():
    x = torch.randn(2, 1, 28, 28)
    out = Augment(5)(x)
    assert out.shape == (2, 6, 28, 28)
    assert out[:, 1:].abs().sum() == 0


def test_augment_by_zero_is_the_identity():
    x = torch.randn(3, 2)
    assert Augment(0)(x) is x


def test_time_invariant_field_ignores_time():
    f = MLPDynamics(2, 16, time_dependent=False)
    h = torch.randn(5, 2)
    torch.testing.assert_close(f(torch.tensor(0.0), h), f(torch.tensor(7.0), h))


def test_time_dependent_field_uses_time():
    f = MLPDynamics(2, 16, time_dependent=True)
    h = torch.randn(5, 2)
    assert not torch.allclose(f(torch.tensor(0.0), h), f(torch.tensor(3.0), h))


def test_mlp_field_has_dupont_layout():
    f = MLPDynamics(3, 32, time_dependent=True)
    shapes = [tuple(p.shape) for p in f.parameters()]
    assert shapes == [(32, 4), (32,), (32, 32), (32,), (3, 32), (3,)]


def test_negative_augmentation_is_rejected():
    with pytest.raises(ValueError, match="augment_dim"):
        Augment(-1)
