"""RePr (Prakash et al., CVPR 2019; thesis Algorithm 3) and its ranking metrics (eq. 5.1-5.2, Table 5.1) on tiny
synthetic nets."""
import json
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from semantic_jpeg.training.data import ArrayLoader  # noqa: E402
from semantic_jpeg.training.fit import fit, vanilla_convnet  # noqa: E402
from semantic_jpeg.training.ranking import METRICS, ortho_overlap, rank_filters  # noqa: E402
from semantic_jpeg.training.repr import RePr, conv_layers, orthogonal_filters  # noqa: E402


def bn_net(width=8):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))


def toy_data(n=64, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long() + 2 * (x[:, 2].mean((1, 2)) > 0.5).long()
    return x, y


def train_steps(model, opt, x, y, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_ortho_metric_matches_eq_5_1_5_2_on_hand_made_weights():
    w = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -2.0]])
    # normalised rows; P = |W^ W^T - I|, O_f = sum_row(P) / J with J = 4
    c = 1 / math.sqrt(2)
    expected = torch.tensor([(1 + c) / 4, (1 + c) / 4, (c + c) / 4, 0.0])
    assert torch.allclose(ortho_overlap(w), expected, atol=1e-6)
    conv = nn.Conv2d(3, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w.reshape(4, 3, 1, 1))
    scores = rank_filters(nn.Sequential(conv), [conv], "ortho")[0]
    assert torch.allclose(scores.float(), -expected, atol=1e-6)  # most overlapping = least important


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_drops_exactly_p_percent_the_lowest_ranked(scope):
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    repr_ = RePr(model, opt, s1=1, s2=1, n_rounds=1, prune_ratio=0.25, metric="weight", scope=scope)
    scores = [s.clone() for s in rank_filters(model, repr_.convs, "weight")]
    repr_.step()  # end of S1 -> drop
    assert repr_.pruning
    dropped = repr_.dropped
    if scope == "global":
        assert sum(int(m.sum()) for m in dropped) == round(0.25 * 24)
        flat = torch.cat(scores)
        threshold = torch.sort(flat).values[5]
        assert torch.cat([s[m] for s, m in zip(scores, dropped)]).max() <= threshold
        assert torch.cat([s[~m] for s, m in zip(scores, dropped)]).min() >= threshold
    else:
        for s, m in zip(scores, dropped):
            assert int(m.sum()) == 2
            assert s[m].max() <= s[~m].min()
    for conv, m in zip(repr_.convs, dropped):
        assert torch.all(conv.weight[m] == 0) and torch.all(conv.bias[m] == 0)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_dropped_filters_frozen_during_s2_despite_momentum_and_weight_decay(opt_name):
    model = bn_net()
    x, y = toy_data()
    if opt_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-1)
    repr_ = RePr(model, opt, s1=1, s2=1, n_rounds=1, prune_ratio=0.3, metric="ortho")
    train_steps(model, opt, x, y)  # S1: builds momentum for every filter
    repr_.step()
    convs, bns = repr_.convs, [model[1], model[4], None]
    before = [c.weight.detach().clone() for c in convs]
    train_steps(model, opt, x, y, steps=5)  # S2
    for conv, bn, m, w0 in zip(convs, bns, repr_.dropped, before):
        if m.any():
            assert torch.all(conv.weight[m] == 0) and torch.all(conv.bias[m] == 0)
            if bn is not None:
                assert torch.all(bn.weight[m] == 0) and torch.all(bn.bias[m] == 0)
        assert not torch.equal(conv.weight[~m], w0[~m])  # the kept filters do train
    # the sub-network really lacks those filters: their channels are zero after conv (+BN)
    out = model[:2](x)
    assert torch.all(out[:, repr_.dropped[0]] == 0)


def test_reinit_orthogonal_to_kept_and_state_reset():
    model = bn_net(width=6)  # layer 2 and 3 have D = 54 >= 6 filters: full orthogonality possible
    x, y = toy_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    repr_ = RePr(model, opt, s1=1, s2=1, n_rounds=1, prune_ratio=0.34, metric="ortho", scope="layer")
    train_steps(model, opt, x, y)
    repr_.step()
    dropped = [m.clone() for m in repr_.dropped]
    train_steps(model, opt, x, y)
    bn = model[4]
    with torch.no_grad():
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(5.0)
    assert repr_.step() == "reinit" and not repr_.pruning
    for conv, m in zip(repr_.convs[1:], dropped[1:]):
        rows = conv.weight.detach().reshape(conv.out_channels, -1).double()
        new, kept = rows[m], rows[~m]
        new_unit = new / new.norm(dim=1, keepdim=True)
        kept_unit = kept / kept.norm(dim=1, keepdim=True)
        assert (new_unit @ kept_unit.T).abs().max() < 1e-5
        gram = new_unit @ new_unit.T
        assert torch.allclose(gram, torch.eye(len(new), dtype=gram.dtype), atol=1e-5)
        assert torch.all(conv.bias[m] == 0)
        for key in ("exp_avg", "exp_avg_sq"):
            state = opt.state[conv.weight][key]
            assert torch.all(state[m] == 0) and state[~m].abs().sum() > 0
    m = dropped[1]
    assert torch.all(bn.weight[m] == 1) and torch.all(bn.bias[m] == 0)
    assert torch.all(bn.running_mean[m] == 0) and torch.all(bn.running_var[m] == 1)
    assert torch.all(bn.running_mean[~m] == 3.0)
    assert torch.all(opt.state[bn.weight]["exp_avg"][m] == 0)
    # after reinit the filters train again
    w = model[3].weight.detach().clone()
    train_steps(model, opt, x, y, steps=1)
    assert not torch.equal(model[3].weight[m], w[m])


def test_orthogonal_filters_when_overcomplete():
    g = torch.Generator().manual_seed(1)
    kept = torch.randn(5, 6, generator=g, dtype=torch.float64)
    new = orthogonal_filters(kept, 3, g)  # 5 + 3 > 6: avoid the 3 strongest kept directions
    assert new.shape == (3, 6)
    assert torch.allclose(new @ new.T, torch.eye(3, dtype=new.dtype), atol=1e-10)
    _, _, vh = torch.linalg.svd(kept)
    assert (new @ vh[:3].T).abs().max() < 1e-10


def test_data_metrics_rank_the_planted_filter_lowest():
    x, y = toy_data(n=32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    with torch.no_grad():
        model[0].bias[2] = -100.0  # filter 2 of layer 1 never fires: zero activation, APoZ 1, no effect
        model[0].weight[4] *= 1e-3  # filter 4 of layer 1 has the smallest norm
    loader = [(x[:16], y[:16]), (x[16:], y[16:])]
    convs = conv_layers(model)
    loss = nn.functional.cross_entropy
    for metric in ("activation", "apoz", "taylor", "oracle"):
        scores = rank_filters(model, convs, metric, data=loader, loss_fn=loss)
        assert [s.shape[0] for s in scores] == [6, 6]
        if metric == "oracle":  # loss change when zeroed: exactly none for the dead filter
            assert scores[0][2] == 0 and (scores[0][[0, 1, 3, 5]] != 0).all()
        else:
            assert scores[0][2] == scores[0].min() and (scores[0][[0, 1, 3, 5]] > scores[0][2]).all(), metric
    assert int(torch.argmin(rank_filters(model, convs, "weight")[0])) == 4
    r1 = rank_filters(model, convs, "random", generator=torch.Generator().manual_seed(0))
    r2 = rank_filters(model, convs, "random", generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(r1, r2))
    assert set(METRICS) == {"ortho", "weight", "random", "activation", "apoz", "taylor", "oracle"}
    from semantic_jpeg.training.cli import METRIC_NAMES
    assert METRIC_NAMES == METRICS  # the torch-free CLI keeps its own copy of the names


def test_bad_input_errors():
    model = bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="Conv2d"):
        RePr(nn.Sequential(nn.Linear(3, 3)), opt, s1=1, s2=1)
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            RePr(model, opt, s1=1, s2=1, prune_ratio=p)
    with pytest.raises(ValueError, match="s1 must be a positive"):
        RePr(model, opt, s1=0, s2=1)
    with pytest.raises(ValueError, match="s2 must be a positive"):
        RePr(model, opt, s1=1, s2=-2)
    with pytest.raises(ValueError, match="exceeds the training budget"):
        RePr(model, opt, s1=20, s2=10, n_rounds=3, total=80)
    with pytest.raises(ValueError, match="unknown ranking metric"):
        RePr(model, opt, s1=1, s2=1, metric="hessian")
    repr_ = RePr(model, opt, s1=1, s2=1, metric="taylor")
    with pytest.raises(ValueError, match="needs data"):
        repr_.step()


class Interrupt(Exception):
    pass


def test_fit_resumes_from_checkpoint_to_the_same_result(tmp_path):
    x, y = toy_data(n=96, size=8)

    def run(stop_at=None, resume=False):
        torch.manual_seed(3)
        model = vanilla_convnet(2, 6, num_classes=4, image_size=8)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        repr_ = RePr(model, opt, s1=1, s2=1, n_rounds=2, prune_ratio=0.3, metric="random", seed=5)
        loader = ArrayLoader(x, y, batch_size=32, augment=True, seed=7)

        def crash(record):
            if record["epoch"] == stop_at:
                raise Interrupt

        try:
            hist = fit(model, loader, opt, 5, repr_=repr_, eval_loader=[(x, y)], checkpoint=tmp_path / "ck.pt",
                       resume=resume, log_path=tmp_path / "log.jsonl", progress=False, callbacks=[crash])
        except Interrupt:
            return None, None
        return model, hist

    full_model, full_hist = run()
    assert [r.get("repr") for r in full_hist] == ["drop", "reinit", "drop", "reinit", None]
    assert [r["phase"] for r in full_hist] == ["full", "pruned", "full", "pruned", "full"]
    (tmp_path / "ck.pt").unlink()
    assert run(stop_at=2) == (None, None)  # crash while filters are dropped (inside S2)
    resumed_model, resumed_hist = run(resume=True)
    assert resumed_hist == full_hist
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == full_hist


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_repr_on_cuda():
    model = bn_net().cuda()
    x, y = (t.cuda() for t in toy_data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    repr_ = RePr(model, opt, s1=1, s2=1, n_rounds=1, prune_ratio=0.3)
    train_steps(model, opt, x, y)
    repr_.step()
    train_steps(model, opt, x, y)
    assert all(torch.all(c.weight[m.cuda()] == 0) for c, m in zip(repr_.convs, repr_.dropped))
    repr_.step()
    assert all(torch.isfinite(c.weight).all() for c in repr_.convs)


def test_training_api_refuses_what_would_silently_go_wrong(tmp_path):
    """No data for a data-driven ranking, a one-shot iterator, a frozen conv, bad masks, an empty loader, a CUDA
    device torch cannot use: each a clear error before anything is changed, not all-zero scores, a half-done drop
    or an AssertionError."""
    torch.manual_seed(0)
    model = vanilla_convnet(2, 4, 3, 8)
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    convs = conv_layers(model)
    with pytest.raises(ValueError, match="no batches"):
        rank_filters(model, convs, "activation", data=[], loss_fn=nn.functional.cross_entropy)
    with pytest.raises(ValueError, match="no batches"):
        rank_filters(model, convs, "oracle", data=[(x, y)], loss_fn=nn.functional.cross_entropy, max_batches=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="re-iterable"):
        RePr(model, optimizer, s1=1, s2=1, n_rounds=1, metric="activation", metric_data=((x, y) for _ in range(2)))
    repr_ = RePr(model, optimizer, s1=1, s2=1, n_rounds=1, scope="layer")
    with pytest.raises(ValueError, match="one 1-D mask per convolution"):
        repr_.drop([torch.zeros(4, dtype=torch.bool)])
    with pytest.raises(ValueError, match="every filter"):
        repr_.drop([torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)])
    assert not repr_.pruning
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        RePr(model, optimizer, s1=1, s2=1, n_rounds=1)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], optimizer, 1, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA"):
            fit(model, [(x, y)], optimizer, 1, device="cuda", progress=False)
    from semantic_jpeg.training.msroi_net import MSROINet, aug_msroi_class_maps, export_msroi
    from semantic_jpeg.training.selective_dropout import selective_dropout_finetune

    with pytest.raises(ValueError, match="lr"):
        selective_dropout_finetune(model, model[2], x, x, y, lr=float("nan"))
    net = MSROINet(2, (4,), 1)
    with pytest.raises(ValueError, match="n "):
        aug_msroi_class_maps(net, torch.rand(1, 3, 32, 32), n=0)
    with pytest.raises(ValueError, match="plain file name"):
        export_msroi(net, tmp_path, class_names=["a", "b"], name="../evil")
    with pytest.raises(ValueError, match="integer widths"):
        MSROINet(2, (4.7,), 1)


def test_data_readers_name_bad_rows_and_labels(tmp_path):
    import numpy as np

    from semantic_jpeg.training.data import cifar_split
    from semantic_jpeg.training.gaze_data import read_dataset

    np.savez(tmp_path / "d.npz", images=np.zeros((5, 8, 8, 3), np.uint8), labels=np.array([0.5, 1, 2, -1, 3]))
    with pytest.raises(ValueError, match="integer class index"):
        cifar_split(tmp_path / "d.npz", n_train=3)
    root = tmp_path / "set"
    (root / "stimuli").mkdir(parents=True)
    (root / "images.csv").write_text("image,width,height\na.png,64,48\n")
    (root / "fixations.csv").write_text("image,subject,x,y\na.png,1,nan,3\n")
    with pytest.raises(ValueError, match="line 2"):
        read_dataset(root)
    (root / "fixations.csv").write_text("image,subject,x,y\na.png,1,2,3\n")
    (root / "images.csv").write_text("image,width,height\na.png,0,48\n")
    with pytest.raises(ValueError, match="width and height"):
        read_dataset(root)
