import torch
from torch import nn

from robustode.core.odeblock import ODEBlock
from robustode.core.training import TrainSpec, train


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x.sum(dim=1) > 0).long()
    return lambda epoch: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_history_has_one_record_per_epoch_and_one_loss_per_iteration():
    hist = train(_model(), _data(), TrainSpec(epochs=3), progress=False)
    assert [e["epoch"] for e in hist.epochs] == [1, 2, 3]
    assert len(hist.iterations["loss"]) == 12
    assert hist.epochs[-1]["loss"] < hist.epochs[0]["loss"]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    straight = _model()
    train(straight, _data(), TrainSpec(epochs=4), progress=False)
    resumed = _model()
    ckpt = tmp_path / "ckpt.pt"
    train(resumed, _data(), TrainSpec(epochs=2), checkpoint=ckpt, progress=False)
    resumed_again = _model()  # a fresh process: only the checkpoint carries state
    hist = train(resumed_again, _data(), TrainSpec(epochs=4), checkpoint=ckpt, progress=False)
    assert len(hist.epochs) == 4
    for a, b in zip(straight.parameters(), resumed_again.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_validation_selection_restores_the_best_epoch():
    model = _model()
    scores = iter([0.1, 0.9, 0.2])
    spec = TrainSpec(epochs=3, evaluate=lambda m: {"acc": next(scores)}, select_on="acc")
    hist = train(model, _data(), spec, progress=False)
    assert hist.best_epoch == 2
    assert [e["val_acc"] for e in hist.epochs] == [0.1, 0.9, 0.2]


class Exploding(nn.Module):
    def forward(self, t, h):
        return 1e3 * h * torch.cos(1e3 * t)


def test_a_failed_solve_is_recorded_not_raised():
    model = nn.Sequential(ODEBlock(Exploding(), method="dopri5", rtol=1e-9, atol=1e-9, max_num_steps=3),
                          nn.Linear(4, 2))
    hist = train(model, _data(), TrainSpec(epochs=2), progress=False)
    assert hist.failure == "max_num_steps"
    assert hist.epochs == []


def test_nfe_is_recorded_per_iteration():
    block = ODEBlock(nn.Linear(4, 4), method="euler", step_size=0.25)
    block.func.field = _TimeFree(block.func.field)
    model = nn.Sequential(block, nn.Linear(4, 2))
    hist = train(model, _data(), TrainSpec(epochs=1), progress=False)
    assert hist.iterations["nfe_forward"] == [4, 4, 4, 4]
    assert hist.iterations["nfe_backward"] == [0, 0, 0, 0]


class _TimeFree(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, t, h):
        return self.lin(h)


def test_a_long_epoch_shows_its_batches_and_a_quiet_run_shows_nothing(capsys):
    # a paper-scale epoch on one CPU core takes most of an hour: the run shows how far into the epoch it is
    from robustode.data.images import tensor_batches

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x.sum(dim=1) > 0).long()
    train(_model(), tensor_batches(x, y, 16, seed=0), TrainSpec(epochs=2), progress=True, desc="toy")
    shown = capsys.readouterr().err
    assert "toy: epoch 1 of 2" in shown and "0/3" in shown  # 40 examples in batches of 16: three batches
    train(_model(), tensor_batches(x, y, 16, seed=0), TrainSpec(epochs=2), progress=False, desc="toy")
    assert capsys.readouterr().err == ""
