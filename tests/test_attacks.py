import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustode.core import attacks
from robustode.core.evaluation import attack_indices


class Counting(nn.Module):
    """A tiny linear classifier on 1x4x4 images that counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Counting()
    x = torch.rand(64, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correctly classified
    model.calls = 0
    return model, x, y


def test_margin_loss_is_the_clamped_log_probability_margin():
    logits = torch.randn(50, 10)
    y = torch.randint(0, 10, (50,))
    logp = F.log_softmax(logits, dim=1)
    others = logp.clone()
    others[torch.arange(50), y] = -float("inf")
    expected = (logp[torch.arange(50), y] - others.max(1).values).clamp(min=0)
    assert torch.allclose(attacks.margin_loss(logits, y), expected, atol=1e-5)


def test_margin_loss_is_zero_for_misclassified_images():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    assert attacks.margin_loss(logits, torch.tensor([0])).item() == 0.0


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_attack_iterates_stay_in_the_eps_ball_and_in_the_unit_box(setup, attack, eps):
    model, x, y = setup
    result = getattr(attacks, attack)(model, x, y, eps, keep_iterates=True)
    for x_i in result.iterates + [result.x_adv]:
        assert (x_i - x).abs().max() <= eps + 1e-6
        assert x_i.min() >= 0.0 and x_i.max() <= 1.0


def test_fgsm_takes_exactly_one_sign_step_of_eps_and_checks_two_iterates(setup):
    model, x, y = setup
    x0 = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(attacks.margin_loss(model(x0), y).sum(), x0)[0]
    model.calls = 0
    result = attacks.fgsm(model, x, y, 0.1, keep_iterates=True)
    assert model.calls == 2
    assert len(result.iterates) == 2 and torch.equal(result.iterates[0], x)
    assert torch.allclose(result.x_adv, (x - 0.1 * grad.sign()).clamp(0, 1))


def test_pgd_checks_ten_iterates_with_steps_of_eps_over_five(setup):
    model, x, y = setup
    result = attacks.pgd(model, x, y, 0.5, keep_iterates=True)
    assert len(result.iterates) == 10
    steps = [(b - a).abs().max().item() for a, b in zip(result.iterates, result.iterates[1:], strict=False)]
    assert max(steps) <= 0.1 + 1e-6 and max(steps) > 0.09


def test_an_image_is_broken_if_any_checked_iterate_is_misclassified(setup):
    model, x, y = setup
    result = attacks.pgd(model, x, y, 0.3, keep_iterates=True)
    judged = attacks.robust_under(model, result.iterates, y)
    assert torch.equal(judged, result.robust)


def test_pgd_accuracy_never_rises_with_more_iterations(setup):
    model, x, y = setup
    accs = [attacks.pgd(model, x, y, 0.2, iterations=k).accuracy for k in range(1, 11)]
    assert accs[0] == 1.0
    assert all(b <= a for a, b in zip(accs, accs[1:], strict=False))
    assert accs[-1] < 1.0  # the attack does something on this model


def test_strong_pgd_restarts_only_lower_accuracy_and_eps_one_breaks_everything(setup):
    model, x, y = setup
    out = attacks.pgd_strong(model, x, y, 0.2, steps=10, restarts=3, seed=1)
    accs = [np.mean(r) for r in out["robust_after_restart"]]
    assert all(b <= a for a, b in zip(accs, accs[1:], strict=False))
    everything = attacks.pgd_strong(model, x, y, 1.0, steps=20, restarts=1)
    assert np.mean(everything["robust_after_restart"][0]) == 0.0


def test_projection_clips_to_the_ball_and_the_box():
    x = torch.tensor([0.0, 0.5, 1.0])
    far = torch.tensor([-1.0, 2.0, 0.0])
    assert torch.allclose(attacks.project(far, x, 0.2), torch.tensor([0.0, 0.7, 0.8]))


def test_attack_images_are_yan_et_al_seeded_choice():
    np.random.seed(1216)
    expected = np.random.choice(10000, 1025, replace=False)[25:]
    idx = attack_indices(10000, 1000)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000
    assert np.array_equal(idx, expected)


class Recording(nn.Module):
    """Wraps a model and keeps every input batch it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.model(x)


def test_strong_pgd_in_pieces_starts_each_image_where_the_whole_call_starts_it(setup):
    model, x, y = setup
    whole = Recording(model)
    out = attacks.pgd_strong(whole, x, y, 0.2, steps=1, restarts=2, seed=3)
    pieces, firsts = [], []
    for rows in (slice(0, 20), slice(20, 45), slice(45, 64)):
        rec = Recording(model)
        pieces.append(attacks.pgd_strong(rec, x, y, 0.2, steps=1, restarts=2, seed=3, rows=rows))
        firsts.append(rec.inputs[0])  # restart 0's first gradient call: every image of the piece at its start
    # x + eps * start, projected: elementwise arithmetic, the same bits however the images are batched
    assert torch.equal(torch.cat(firsts), whole.inputs[0])
    # without rows, a piece attacked on its own would start elsewhere: the test can tell the two apart
    alone = Recording(model)
    attacks.pgd_strong(alone, x[20:45], y[20:45], 0.2, steps=1, restarts=2, seed=3)
    assert not torch.equal(alone.inputs[0], whole.inputs[0][20:45])
    # the flags: the model's matrix product may round differently for another batch size, so one image may
    # differ at a decision boundary, no more
    for r in range(2):
        joined = sum((p["robust_after_restart"][r] for p in pieces), [])
        assert sum(a != b for a, b in zip(joined, out["robust_after_restart"][r], strict=True)) <= 1
