"""The engine must train exactly like the plain loop: same batches, same noise, same updates."""

import pytest
import torch
from torch import nn

from robustode.core.engine import _lr_at, train_fast, use_loop_backend
from robustode.core.odeblock import ODEBlock
from robustode.core.training import TrainSpec, train


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, t, h):
        return torch.tanh(self.lin(h))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), ODEBlock(Field(), method="euler", step_size=0.25), nn.Linear(6, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(70, 4, generator=g)
    return x, (x.sum(dim=1) * 1.5).long().clamp(max=2)


def _noise(x, generator):
    return (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


class L2Field:
    start_epoch = 1

    def __call__(self, model, x, epoch):
        return None if epoch < self.start_epoch else 1e-2 * sum(p.pow(2).sum() for p in model[1].parameters())


def _plain_batches(x, y, batch_size, seed):
    order_gen = torch.Generator().manual_seed(seed + 1)

    def batches(epoch):
        order = torch.randperm(len(x), generator=order_gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    return batches


def test_engine_on_cpu_ends_with_the_plain_loops_parameters():
    x, y = _data()
    spec = TrainSpec(epochs=3, milestones=(2,), gamma=0.2, weight_decay=5e-4, augment=_noise,
                     regulariser=L2Field(), seed=4)
    plain, fast = _model(), _model()
    h_plain = train(plain, _plain_batches(x, y, 16, 4), spec, progress=False)
    h_fast = train_fast(fast, x, y, spec, batch_size=16, device="cpu", progress=False)
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for ea, eb in zip(h_plain.epochs, h_fast.epochs, strict=True):
        assert ea["loss"] == pytest.approx(eb["loss"], rel=1e-4)
        assert ea["accuracy"] == eb["accuracy"]
        assert ea["nfe_forward"] == eb["nfe_forward"] == 4


def test_engine_switches_fixed_step_blocks_to_the_loop_backend_only():
    model = nn.Sequential(ODEBlock(Field(), method="euler", step_size=0.1), ODEBlock(Field(), method="dopri5"))
    assert use_loop_backend(model) == 1
    assert [m.backend for m in model] == ["loop", "torchdiffeq"]


def test_learning_rate_schedule_matches_multisteplr():
    spec = TrainSpec(epochs=100, lr=1e-3, milestones=(30, 60, 90), gamma=0.2)
    assert [round(_lr_at(spec, e), 10) for e in (0, 29, 30, 60, 99)] == [1e-3, 1e-3, 2e-4, 4e-5, 8e-6]


def test_graphs_are_refused_off_cuda():
    x, y = _data()
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        train_fast(_model(), x, y, TrainSpec(epochs=1), batch_size=8, device="cpu", graphs=True)


def test_steady_state_term_is_the_same_on_the_loop_backend():
    from robustode.core.regularisers import steady_state_loss
    from robustode.models.robust import ConvField

    torch.manual_seed(0)
    field = ConvField(8, time_dependent=False)
    z = torch.randn(2, 8, 5, 5)
    plain = steady_state_loss(ODEBlock(field, method="euler", step_size=0.05), z)
    loop = steady_state_loss(ODEBlock(field, method="euler", step_size=0.05, backend="loop"), z)
    torch.testing.assert_close(plain, loop, rtol=1e-4, atol=1e-6)


def test_engine_trains_tisode_like_the_plain_loop():
    from robustode.core.noise import NoiseAugmentation
    from robustode.core.regularisers import SteadyStateRegulariser
    from robustode.models.robust import build

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 10, (24,), generator=g)
    spec = TrainSpec(epochs=2, weight_decay=5e-4, augment=NoiseAugmentation(),
                     regulariser=SteadyStateRegulariser(start_epoch=1), seed=3)
    torch.manual_seed(1)
    plain = build("TisODE", width=8)
    torch.manual_seed(1)
    fast = build("TisODE", width=8)
    train(plain, _plain_batches(x, y, 8, 3), spec, progress=False)
    train_fast(fast, x, y, spec, batch_size=8, device="cpu", progress=False)
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def _evaluate_on(x, y):
    def evaluate(model):
        with torch.no_grad():
            return {"accuracy": float((model(x).argmax(1) == y).float().mean())}

    return evaluate


def test_engine_resumed_from_its_checkpoint_ends_like_an_uninterrupted_run(tmp_path):
    x, y = _data()
    kw = dict(milestones=(2,), weight_decay=5e-4, augment=_noise, regulariser=L2Field(), seed=2,
              evaluate=_evaluate_on(x, y), select_on="accuracy")
    whole = _model()
    h_whole = train_fast(whole, x, y, TrainSpec(epochs=4, **kw), batch_size=16, device="cpu", progress=False)
    ckpt = tmp_path / "engine.pt"
    train_fast(_model(), x, y, TrainSpec(epochs=2, **kw), batch_size=16, device="cpu", progress=False, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed = _model()  # a fresh process: only the checkpoint carries state
    h_resumed = train_fast(resumed, x, y, TrainSpec(epochs=4, **kw), batch_size=16, device="cpu", progress=False,
                           checkpoint=ckpt)
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [e["loss"] for e in h_whole.epochs] == [e["loss"] for e in h_resumed.epochs]
    assert h_whole.best_epoch == h_resumed.best_epoch


def test_engine_and_plain_loop_refuse_each_others_checkpoints(tmp_path):
    x, y = _data()
    engine_ckpt, plain_ckpt = tmp_path / "engine.pt", tmp_path / "plain.pt"
    train_fast(_model(), x, y, TrainSpec(epochs=1), batch_size=16, device="cpu", progress=False, checkpoint=engine_ckpt)
    train(_model(), _plain_batches(x, y, 16, 0), TrainSpec(epochs=1), progress=False, checkpoint=plain_ckpt)
    before = engine_ckpt.read_bytes()
    with pytest.raises(ValueError, match="not by this loop"):
        train(_model(), _plain_batches(x, y, 16, 0), TrainSpec(epochs=2), progress=False, checkpoint=engine_ckpt)
    with pytest.raises(ValueError, match="not an engine checkpoint"):
        train_fast(_model(), x, y, TrainSpec(epochs=2), batch_size=16, device="cpu", progress=False, checkpoint=plain_ckpt)
    assert engine_ckpt.read_bytes() == before  # nothing already written is lost


def test_engine_refuses_mixed_precision_before_any_work():
    x, y = _data()
    model = _model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="float32"):
        train_fast(model, x, y, TrainSpec(epochs=1, autocast_dtype=torch.bfloat16), batch_size=16, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_steps_equal_eager_steps_on_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # same convolution algorithms on both paths
    from robustode.core.regularisers import SteadyStateRegulariser
    from robustode.models.robust import build

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    from robustode.core.noise import NoiseAugmentation

    # With noise: capture's warm-up steps put the generator back, so both paths draw the same noise.
    spec = TrainSpec(epochs=3, weight_decay=5e-4, milestones=(2,), regulariser=SteadyStateRegulariser(start_epoch=1),
                     augment=NoiseAugmentation(), seed=3)
    models = []
    for graphs in (False, True):
        torch.manual_seed(1)
        model = build("TisODE", width=16)
        hist = train_fast(model, x, y, spec, batch_size=16, device="cuda", graphs=graphs, progress=False)
        models.append((model, hist))
    (eager, h_eager), (graphed, h_graphed) = models
    for a, b in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    for ea, eb in zip(h_eager.epochs, h_graphed.epochs, strict=True):
        assert ea["loss"] == pytest.approx(eb["loss"], rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_draws_fresh_noise_at_every_replay():
    from robustode.core.engine import TrainStep
    from robustode.core.noise import NoiseAugmentation

    torch.manual_seed(0)
    model = nn.Linear(4, 2, bias=False).cuda()  # its gradient reveals the augmented batch
    x, y = torch.full((8, 4), 0.5, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda")
    spec = TrainSpec(epochs=1, lr=0.0, augment=NoiseAugmentation(p=1.0, sigmas=(50,)))
    step = TrainStep(model, spec, torch.device("cuda"), torch.Generator(device="cuda").manual_seed(0))
    grads = []
    for _ in range(3):
        step(x, y, epoch=0, graph=True)
        grads.append(model.weight.grad.detach().clone())
    assert len(step.graphs) == 1
    assert not torch.equal(grads[1], grads[2])  # two replays of one graph: two different noise draws


def test_models_trained_together_end_as_if_each_were_trained_alone(tmp_path):
    from robustode.core.engine import train_fast_many

    x, y = _data()
    specs = [TrainSpec(epochs=3, milestones=(2,), augment=_noise, regulariser=L2Field(), seed=s,
                       evaluate=_evaluate_on(x, y), select_on="accuracy") for s in (0, 1, 2)]
    alone = []
    for spec in specs:
        torch.manual_seed(spec.seed)
        model = _model()
        alone.append((model, train_fast(model, x, y, spec, batch_size=16, device="cpu", progress=False)))
    together = []
    for spec in specs:
        torch.manual_seed(spec.seed)
        together.append(_model())
    # the third run starts from a checkpoint two epochs in: it joins the others at epoch 3
    ckpt = tmp_path / "seed2.pt"
    torch.manual_seed(2)
    train_fast(_model(), x, y, TrainSpec(**{**specs[2].__dict__, "epochs": 2}), batch_size=16, device="cpu",
               progress=False, checkpoint=ckpt)
    histories = train_fast_many(together, x, y, specs, batch_size=16, device="cpu", progress=False,
                                checkpoints=[None, None, ckpt])
    for (model, hist), other, other_hist in zip(alone, together, histories, strict=True):
        for a, b in zip(model.parameters(), other.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert [e["loss"] for e in hist.epochs] == [e["loss"] for e in other_hist.epochs]
    assert not torch.equal(together[0][0].weight, together[1][0].weight)  # different seeds, different runs


def test_models_trained_together_need_matching_specs_and_epochs():
    from robustode.core.engine import train_fast_many

    x, y = _data()
    with pytest.raises(ValueError, match="one spec and one checkpoint"):
        train_fast_many([_model(), _model()], x, y, [TrainSpec(epochs=1)], batch_size=16, device="cpu")
    with pytest.raises(ValueError, match="same number of epochs"):
        train_fast_many([_model(), _model()], x, y, [TrainSpec(epochs=1), TrainSpec(epochs=2)], batch_size=16,
                        device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA streams need a GPU")
def test_models_trained_together_on_streams_equal_models_trained_alone_on_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    from robustode.core.engine import train_fast_many
    from robustode.core.regularisers import SteadyStateRegulariser
    from robustode.models.robust import build

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)
    from robustode.core.noise import NoiseAugmentation

    specs = [TrainSpec(epochs=2, weight_decay=5e-4, regulariser=SteadyStateRegulariser(start_epoch=1),
                       augment=NoiseAugmentation(), seed=s) for s in (0, 1, 2)]

    def models():
        out = []
        for spec in specs:
            torch.manual_seed(spec.seed)
            out.append(build("TisODE", width=16))
        return out

    alone = models()
    for model, spec in zip(alone, specs, strict=True):
        train_fast(model, x, y, spec, batch_size=32, device="cuda", progress=False)
    together = models()
    train_fast_many(together, x, y, specs, batch_size=32, device="cuda", progress=False)
    for a_model, b_model in zip(alone, together, strict=True):
        for a, b in zip(a_model.parameters(), b_model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
