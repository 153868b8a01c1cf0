import pytest
import torch
from torch import nn

from robustode.chapters import topology
from robustode.core.training import TrainSpec, correct_sign, train
from robustode.data.toy import flip_1d
from robustode.models.toy import ODENet, ResNet
from robustode.store import Store


@pytest.mark.parametrize("seed", range(5))
def test_a_1d_ode_flow_never_reverses_the_order_of_two_points(seed):
    torch.manual_seed(seed)
    model = ODENet(1, hidden=16, linear_head=False, method="dopri5", rtol=1e-6, atol=1e-6)
    for p in model.parameters():
        p.data.mul_(5.0)  # a strong, wiggly field
    model.double()
    x = torch.linspace(-3, 3, 50, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        out = model(x).squeeze()
    # The exact flow is strictly increasing in x, but a contracting field can bring two neighbours closer
    # than any float resolves (a float32 run on another CPU tied two of them). So: no pair reversed by more
    # than the solver's error (rtol = atol = 1e-6 over O(10) steps stays well below 1e-4), and the ends apart.
    assert (out[1:] - out[:-1]).min() >= -1e-4
    assert out[-1] > out[0]


def _fit_flip(model, epochs=150):
    x, y = flip_1d(2, seed=0)
    spec = TrainSpec(epochs=epochs, loss_fn=nn.SmoothL1Loss(), correct=correct_sign, lr=1e-2)
    train(model, lambda epoch: [(x, y)], spec, progress=False)
    with torch.no_grad():
        return model(torch.tensor([[-1.0], [1.0]])).squeeze().tolist()


def test_the_resnet_crosses_trajectories_and_fits_the_flip():
    torch.manual_seed(0)
    g_minus, g_plus = _fit_flip(ResNet(1, hidden=32, num_layers=5, linear_head=False))
    assert g_minus > 0.9 and g_plus < -0.9


def test_the_node_cannot_fit_the_flip_but_anode_can():
    torch.manual_seed(0)
    node = _fit_flip(ODENet(1, 32, linear_head=False), epochs=60)
    # The exact flow keeps the order; dopri5 at rtol=atol=1e-3 may blur it by about its tolerance.
    assert node[0] <= node[1] + 1e-2
    assert node[0] < 0.5 and node[1] > -0.5
    torch.manual_seed(0)
    anode = _fit_flip(ODENet(1, 32, augment_dim=1, linear_head=False), epochs=100)
    assert anode[0] > 0.5 and anode[1] < -0.5


def test_unknown_toy_model_name_is_rejected():
    with pytest.raises(ValueError, match="unknown toy model"):
        topology.run.build("VAE", 2, {"hidden": 8, "resnet_layers": 2})


def test_non_positive_sizes_fail_before_any_training():
    profile = {"name": "custom", "topology": {
        "common": {"hidden": 32, "lr": 1e-3, "method": "dopri5", "tol": 1e-3, "max_num_steps": 100,
                   "resnet_layers": 5, "plot_times": 5, "resume": False},
        "flip": {"num_points": 2, "batch_size": 2, "epochs": 0, "repetitions": 1}}}
    with pytest.raises(ValueError, match="epochs=0"):
        topology.run.flip(profile, "cpu")


def test_spheres_writes_one_results_file_per_model_and_repetition(results_tmp):
    profile = {"name": "quick", "topology": {
        "common": {"hidden": 8, "lr": 1e-3, "method": "dopri5", "tol": 1e-3, "max_num_steps": 1000,
                   "resnet_layers": 2, "plot_times": 4, "resume": False},
        "spheres": {"num_inner": 8, "num_outer": 8, "inner_range": [0.0, 0.5], "outer_range": [1.0, 1.5],
                    "batch_size": 8, "epochs": 1, "repetitions": 2, "augment_dims": [0, 1],
                    "plot_points": 4, "field_grid": 3}}}
    out = results_tmp / "results" / "quick"
    topology.run.spheres(profile, "cpu", out, progress=False)
    files = sorted(p.name for p in (out / "topology-spheres").glob("*.json"))
    assert files == [f"{m}-seed{s}.json" for m in ("ANODE-p1", "NODE", "ResNet") for s in (0, 1)]
    rows = {r["model"]: r for r in topology.tables.summary(Store("quick", out), "topology-spheres")}
    assert "(n = 2)" in rows["NODE"]["train loss"] and "failed runs" not in rows["NODE"]
