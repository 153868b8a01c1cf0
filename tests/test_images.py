import pytest
import torch

from robustode.data.images import DataMissing, is_available, load_tensors, subset, tensor_batches, train_val_split

needs_mnist = pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/ (.ci/run copies it)")


@needs_mnist
def test_mnist_loads_whole_in_unit_range_with_the_known_first_labels():
    x, y = load_tensors("MNIST", train=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_a_missing_dataset_names_its_files_and_how_to_get_it(tmp_path):
    with pytest.raises(DataMissing, match="cifar-10-batches-py/test_batch.*download=True"):
        load_tensors("CIFAR10", train=False, root=tmp_path)


def test_an_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="MNIST, FashionMNIST"):
        load_tensors("ImageNet21k", train=True)


def test_validation_split_is_disjoint_seeded_and_complete():
    x = torch.arange(100).float().unsqueeze(1)
    y = torch.arange(100)
    (xt, yt), (xv, yv) = train_val_split(x, y, 20, seed=1)
    assert len(xv) == 20 and len(xt) == 80
    assert set(yt.tolist()).isdisjoint(yv.tolist())
    assert sorted(yt.tolist() + yv.tolist()) == list(range(100))
    assert torch.equal(train_val_split(x, y, 20, seed=1)[1][1], yv)


def test_subset_and_batches_cover_each_example_once_per_epoch():
    x = torch.arange(50).float().unsqueeze(1)
    y = torch.arange(50)
    xs, ys = subset(x, y, 30, seed=0)
    seen = torch.cat([b[1] for b in tensor_batches(xs, ys, 8, seed=0)(0)])
    assert sorted(seen.tolist()) == sorted(ys.tolist())


def test_an_epochs_batches_know_how_many_they_are_and_reshuffle_per_epoch():
    x = torch.arange(50).float().unsqueeze(1)
    y = torch.arange(50)
    batches = tensor_batches(x, y, 8, seed=3)
    first, second = batches(0), batches(1)
    assert len(first) == len(list(first)) == 7  # 50 examples: six full batches of 8 and one of 2
    assert torch.equal(torch.cat([b[1] for b in batches(0)]), torch.cat([b[1] for b in first]))  # seeded per epoch
    assert not torch.equal(torch.cat([b[1] for b in first]), torch.cat([b[1] for b in second]))
    in_order = torch.cat([b[1] for b in tensor_batches(x, y, 8, seed=3, shuffle=False)(0)])
    assert torch.equal(in_order, y)
