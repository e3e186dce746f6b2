"""Distillation losses: values against independent loop implementations, zeros, gradient flow, setup, state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from datafree.distill import create_loss, list_losses
from datafree.distill.kr import SparseRecodingPenalty, resize_to
from datafree.nets.features import NetOutput

MINE = ["at", "cosine", "fsp", "hint", "kr", "nst", "pkt", "rkd", "sp", "sparse_recoding"]


def nested(x: torch.Tensor) -> list:
    return x.detach().double().tolist()


def flat(x) -> list[float]:
    return [v for row in x for v in (flat(row) if isinstance(row, list) else [row])]


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def pool2(f: list) -> list:
    """2x2 average pooling of a nested (C, H, W) list."""
    result = []
    for c in f:
        rows = []
        for i in range(len(c) // 2):
            rows.append([(c[2 * i][2 * j] + c[2 * i + 1][2 * j] + c[2 * i][2 * j + 1] + c[2 * i + 1][2 * j + 1]) / 4
                         for j in range(len(c[0]) // 2)])
        result.append(rows)
    return result


def conv1x1(f: list, weight: torch.Tensor, bias: torch.Tensor | None = None) -> list:
    """A 1x1 convolution of a nested (C, H, W) list, by loops."""
    w = nested(weight.reshape(weight.shape[0], weight.shape[1]))
    b = [0.0] * len(w) if bias is None else nested(bias)
    h, wd = len(f[0]), len(f[0][0])
    return [
        [[sum(w[o][i] * f[i][y][x] for i in range(len(f))) + b[o] for x in range(wd)] for y in range(h)]
        for o in range(len(w))
    ]


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def out(logits: torch.Tensor, **features: torch.Tensor) -> NetOutput:
    return NetOutput(logits, features)


# --------------------------------------------------------------------------------------------- registry


def test_unknown_loss_lists_all_registered_names():
    with pytest.raises(ValueError) as err:
        create_loss("nope")
    assert set(MINE) | {"kd"} <= set(list_losses())  # the losses this file tests are registered...
    for name in list_losses():  # ...and the message lists every registered one
        assert name in str(err.value)


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="accepts"):
        create_loss("nst", bogus=1)


# --------------------------------------------------------------------------------------------- KD


def test_kd_t1_equals_hand_kl():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, 0.0]])

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    expected = 0.0
    for rs, rt in zip(s.tolist(), t.tolist()):
        ps, pt = softmax(rs), softmax(rt)
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected /= 2
    assert create_loss("kd", temperature=1.0)(out(s), out(t)).item() == pytest.approx(expected, rel=1e-5)


def test_kd_class_balanced_gives_each_teacher_class_equal_weight():
    from datafree.distill.kd import class_balanced_weights

    labels = torch.tensor([0, 0, 0, 1])  # 3 images of class 0, 1 of class 1: weights 4/(2*3) and 4/(2*1)
    assert class_balanced_weights(labels, 3).tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    s = torch.randn(4, 3)
    t = torch.tensor([[5.0, 0, 0], [4.0, 1, 0], [3.0, 0, 1], [0.0, 6, 0]])
    per_image = [create_loss("kd")(out(s[i:i + 1]), out(t[i:i + 1])).item() for i in range(4)]
    expected = (2 / 3 * sum(per_image[:3]) + 2.0 * per_image[3]) / 4  # class 0 and class 1 each count half
    balanced = create_loss("kd", class_balanced=True)(out(s), out(t)).item()
    assert balanced == pytest.approx(expected, rel=1e-5)
    assert balanced != pytest.approx(sum(per_image) / 4, rel=1e-3)  # plain KD weighs class 0 three times
    even = torch.tensor([[5.0, 0, 0], [0.0, 5, 0], [0.0, 0, 5]])  # one image per class: the plain loss
    s3 = torch.randn(3, 3)
    assert create_loss("kd", class_balanced=True)(out(s3), out(even)).item() == pytest.approx(
        create_loss("kd")(out(s3), out(even)).item(), rel=1e-6)


def test_kd_temperature_squared_scaling():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    kd1 = create_loss("kd", temperature=1.0)
    kd4 = create_loss("kd", temperature=4.0)
    assert kd4(out(s), out(t)).item() == pytest.approx(16 * kd1(out(s / 4), out(t / 4)).item(), rel=1e-5)


# --------------------------------------------------------------------------------------------- AT


def at_reference(fs: torch.Tensor, ft: torch.Tensor, beta: float) -> float:
    def amap(f):
        h, w = len(f[0]), len(f[0][0])
        return unit([sum(f[c][y][x] ** 2 for c in range(len(f))) / len(f) for y in range(h) for x in range(w)])

    total, hw = 0.0, 0
    for a, b in zip(nested(fs), nested(ft)):
        qa, qb = amap(a), amap(b)
        hw = len(qa)
        total += sum((x - y) ** 2 for x, y in zip(qa, qb))
    return beta / 2 * total / (len(fs) * hw)


def test_at_value_and_spatial_pooling():
    torch.manual_seed(0)
    fs, ft = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)
    loss = create_loss("at", student_layers=["s"], teacher_layers=["t"], beta=10.0)
    value = loss(out(torch.zeros(2, 1), s=fs), out(torch.zeros(2, 1), t=ft)).item()
    pooled = torch.tensor([pool2(f) for f in nested(fs)])
    assert value == pytest.approx(at_reference(pooled, ft, 10.0), rel=1e-5)
    assert loss(out(torch.zeros(2, 1), s=ft), out(torch.zeros(2, 1), t=ft)).item() == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------------- NST


def nst_reference(fs: torch.Tensor, ft: torch.Tensor, kernel: str, sigma: float = 1.0) -> float:
    def k(a, b):
        d = dot(a, b)
        if kernel == "linear":
            return d
        if kernel == "poly":
            return d**2
        return math.exp(-sum((x - y) ** 2 for x, y in zip(a, b)) / (2 * sigma**2))

    total = 0.0
    for a, b in zip(nested(fs), nested(ft)):
        S = [unit(flat(c)) for c in a]
        T = [unit(flat(c)) for c in b]
        tt = sum(k(x, y) for x in T for y in T) / len(T) ** 2
        ss = sum(k(x, y) for x in S for y in S) / len(S) ** 2
        ts = sum(k(x, y) for x in T for y in S) / (len(T) * len(S))
        total += tt + ss - 2 * ts
    return total / len(fs)


@pytest.mark.parametrize("kernel", ["linear", "poly", "gaussian"])
def test_nst_value_zero_and_channel_mismatch(kernel):
    torch.manual_seed(1)
    fs, ft = torch.randn(2, 3, 2, 3), torch.randn(2, 4, 2, 3)
    loss = create_loss("nst", student_layers=["s"], teacher_layers=["t"], kernel=kernel, sigma=0.7)
    value = loss(out(torch.zeros(2, 1), s=fs), out(torch.zeros(2, 1), t=ft)).item()
    assert value == pytest.approx(nst_reference(fs, ft, kernel, sigma=0.7), rel=1e-5, abs=1e-7)
    assert value > 0
    assert loss(out(torch.zeros(2, 1), s=ft), out(torch.zeros(2, 1), t=ft)).item() == pytest.approx(0.0, abs=1e-6)


def test_nst_pools_the_larger_map():
    torch.manual_seed(2)
    fs, ft = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 2, 2)
    loss = create_loss("nst", student_layers=["s"], teacher_layers=["t"])
    value = loss(out(torch.zeros(2, 1), s=fs), out(torch.zeros(2, 1), t=ft)).item()
    pooled = torch.tensor([pool2(f) for f in nested(fs)])
    assert value == pytest.approx(nst_reference(pooled, ft, "poly"), rel=1e-5)


# --------------------------------------------------------------------------------------------- SP


def test_sp_value_and_zero():
    torch.manual_seed(3)
    fs, ft = torch.randn(3, 2, 2, 2), torch.randn(3, 5)
    loss = create_loss("sp", student_layers=["s"], teacher_layers=["t"])
    value = loss(out(torch.zeros(3, 1), s=fs), out(torch.zeros(3, 1), t=ft)).item()

    def sim(f):
        rows = [flat(r) for r in nested(f)]
        g = [[dot(a, b) for b in rows] for a in rows]
        return [unit(r) for r in g]

    gs, gt = sim(fs), sim(ft)
    expected = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    assert value == pytest.approx(expected, rel=1e-5)
    assert loss(out(torch.zeros(3, 1), s=fs), out(torch.zeros(3, 1), t=fs)).item() == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------------- FSP


def fsp_reference(maps: list[torch.Tensor]) -> list[list]:
    """Per pair of consecutive maps: per sample the (C1, C2) FSP matrix, pooling the larger map 2x2."""
    result = []
    for f1, f2 in zip(maps[:-1], maps[1:]):
        per_sample = []
        for a, b in zip(nested(f1), nested(f2)):
            if len(a[0]) > len(b[0]):
                a = pool2(a)
            elif len(b[0]) > len(a[0]):
                b = pool2(b)
            hw = len(a[0]) * len(a[0][0])
            per_sample.append([[dot(flat(x), flat(y)) / hw for y in b] for x in a])
        result.append(per_sample)
    return result


def test_fsp_value_zero_and_channel_check():
    torch.manual_seed(4)
    s = [torch.randn(2, 3, 4, 4), torch.randn(2, 2, 2, 2), torch.randn(2, 4, 2, 2)]
    t = [torch.randn(2, 3, 4, 4), torch.randn(2, 2, 2, 2), torch.randn(2, 4, 2, 2)]
    names_s, names_t = ["s0", "s1", "s2"], ["t0", "t1", "t2"]
    loss = create_loss("fsp", student_layers=names_s, teacher_layers=names_t)
    loss.setup({n: tuple(f.shape[1:]) for n, f in zip(names_s, s)}, {n: tuple(f.shape[1:]) for n, f in zip(names_t, t)})
    s_out, t_out = out(torch.zeros(2, 1), **dict(zip(names_s, s))), out(torch.zeros(2, 1), **dict(zip(names_t, t)))
    gs, gt = fsp_reference(s), fsp_reference(t)
    expected = 0.0
    for ps, pt in zip(gs, gt):
        expected += sum(sum((x - y) ** 2 for x, y in zip(flat(a), flat(b))) for a, b in zip(ps, pt)) / 2 / len(gs)
    assert loss(s_out, t_out).item() == pytest.approx(expected, rel=1e-5)
    assert loss(out(torch.zeros(2, 1), **dict(zip(names_s, t))), t_out).item() == pytest.approx(0.0, abs=1e-7)

    bad = create_loss("fsp", student_layers=["a", "b"], teacher_layers=["x", "y"])
    with pytest.raises(ValueError, match="connectors=True"):
        bad.setup({"a": (3, 4, 4), "b": (4, 2, 2)}, {"x": (3, 4, 4), "y": (8, 2, 2)})
    good = create_loss("fsp", student_layers=["a", "b"], teacher_layers=["x", "y"], connectors=True)
    good.setup({"a": (3, 4, 4), "b": (4, 2, 2)}, {"x": (3, 4, 4), "y": (8, 2, 2)})
    assert isinstance(good.connector[0], nn.Identity)
    assert isinstance(good.connector[1], nn.Conv2d) and good.connector[1].weight.shape == (8, 4, 1, 1)
    with pytest.raises(ValueError, match="at least 2"):
        create_loss("fsp", student_layers=["a"], teacher_layers=["x"])


# --------------------------------------------------------------------------------------------- hint


def test_hint_value_identity_zero_and_learning():
    torch.manual_seed(5)
    fs, ft = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 2, 2)
    loss = create_loss("hint", student_layers=["s"], teacher_layers=["t"])
    loss.setup({"s": (3, 4, 4)}, {"t": (2, 2, 2)})
    reg = loss.regressors[0]
    value = loss(out(torch.zeros(2, 1), s=fs), out(torch.zeros(2, 1), t=ft)).item()
    pred = [conv1x1(pool2(f), reg.weight, reg.bias) for f in nested(fs)]
    expected = sum((a - b) ** 2 for a, b in zip(flat(pred), flat(nested(ft)))) / ft.numel()
    assert value == pytest.approx(expected, rel=1e-5)

    same = create_loss("hint", student_layers=["s"], teacher_layers=["t"])
    same.setup({"s": (2, 2, 2)}, {"t": (2, 2, 2)})
    with torch.no_grad():
        nn.init.dirac_(same.regressors[0].weight)
        same.regressors[0].bias.zero_()
    assert same(out(torch.zeros(2, 1), s=ft), out(torch.zeros(2, 1), t=ft)).item() == pytest.approx(0.0, abs=1e-10)

    # a randomly initialized regressor learns to map equal features onto each other
    learn = create_loss("hint", student_layers=["s"], teacher_layers=["t"])
    learn.setup({"s": (2, 2, 2)}, {"t": (2, 2, 2)})
    opt = torch.optim.SGD(learn.parameters(), lr=0.5)
    x = torch.randn(8, 2, 2, 2)
    first = learn(out(torch.zeros(8, 1), s=x), out(torch.zeros(8, 1), t=x)).item()
    for _ in range(100):
        opt.zero_grad()
        v = learn(out(torch.zeros(8, 1), s=x), out(torch.zeros(8, 1), t=x))
        v.backward()
        opt.step()
    assert first > 0.1 and v.item() < 1e-4


def test_hint_pools_a_larger_teacher_map():
    torch.manual_seed(13)
    fs, ft = torch.randn(2, 2, 2, 2), torch.randn(2, 3, 4, 4)
    loss = create_loss("hint", student_layers=["s"], teacher_layers=["t"])
    loss.setup({"s": (2, 2, 2)}, {"t": (3, 4, 4)})
    reg = loss.regressors[0]
    value = loss(out(torch.zeros(2, 1), s=fs), out(torch.zeros(2, 1), t=ft)).item()
    pred = [conv1x1(f, reg.weight, reg.bias) for f in nested(fs)]
    target = [pool2(f) for f in nested(ft)]
    expected = sum((a - b) ** 2 for a, b in zip(flat(pred), flat(target))) / (2 * 3 * 2 * 2)
    assert value == pytest.approx(expected, rel=1e-5)


def test_hint_vectors_use_a_linear_regressor_and_mixed_kinds_fail():
    loss = create_loss("hint", student_layers=["s"], teacher_layers=["t"])
    loss.setup({"s": (6,)}, {"t": (4,)})
    assert isinstance(loss.regressors[0], nn.Linear)
    with pytest.raises(ValueError, match=r"\(6,\).*\(4, 2, 2\)"):
        loss.setup({"s": (6,)}, {"t": (4, 2, 2)})


# --------------------------------------------------------------------------------------------- RKD


def rkd_reference(s: torch.Tensor, t: torch.Tensor, w_dist: float, w_angle: float) -> float:
    S, T = nested(s), nested(t)
    b = len(S)

    def dist(x, y):
        return math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y)))

    def psi_d(X):
        pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
        mu = sum(dist(X[i], X[j]) for i, j in pairs) / len(pairs)
        return {(i, j): dist(X[i], X[j]) / mu for i, j in pairs}

    ds, dt = psi_d(S), psi_d(T)
    l_d = sum(huber(ds[p] - dt[p]) for p in ds) / len(ds)

    def cos(X, i, j, k):
        e1 = unit([p - q for p, q in zip(X[i], X[j])])
        e2 = unit([p - q for p, q in zip(X[k], X[j])])
        return dot(e1, e2)

    triplets = [(i, j, k) for i in range(b) for j in range(b) for k in range(b) if len({i, j, k}) == 3]
    l_a = sum(huber(cos(S, *tr) - cos(T, *tr)) for tr in triplets) / len(triplets)
    return w_dist * l_d + w_angle * l_a


def test_rkd_value_on_logits_and_zero():
    torch.manual_seed(6)
    s, t = torch.randn(4, 3), 3 * torch.randn(4, 5)
    loss = create_loss("rkd")
    assert loss.student_taps == () and loss.teacher_taps == ()
    assert loss(out(s), out(t)).item() == pytest.approx(rkd_reference(s, t, 25.0, 50.0), rel=1e-4)
    # RKD is invariant to scaling: a scaled copy of the teacher has zero loss
    assert loss(out(2 * t), out(t)).item() == pytest.approx(0.0, abs=1e-5)


def test_rkd_on_named_feature_layer():
    torch.manual_seed(7)
    fs, ft = torch.randn(4, 2, 2, 2), torch.randn(4, 6)
    loss = create_loss("rkd", student_layer="s", teacher_layer="t", w_dist=1.0, w_angle=2.0)
    assert loss.student_taps == ("s",) and loss.teacher_taps == ("t",)
    value = loss(out(torch.zeros(4, 1), s=fs), out(torch.zeros(4, 1), t=ft)).item()
    assert value == pytest.approx(rkd_reference(fs.reshape(4, -1), ft, 1.0, 2.0), rel=1e-4)
    with pytest.raises(ValueError, match="both"):
        create_loss("rkd", student_layer="s")


# --------------------------------------------------------------------------------------------- PKT


def test_pkt_value_and_zero():
    torch.manual_seed(8)
    s, t = torch.randn(4, 3), torch.randn(4, 6)
    loss = create_loss("pkt")

    def cond(X):
        X = [unit(r) for r in nested(X)]
        K = [[(dot(a, b) + 1) / 2 for b in X] for a in X]
        n = len(X)
        rows = []
        for i in range(n):
            z = sum(K[i][k] for k in range(n) if k != i)
            rows.append([K[i][j] / z if j != i else 0.0 for j in range(n)])
        return rows

    p, q = cond(t), cond(s)
    eps = 1e-7
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    expected = sum(p[i][j] * math.log((p[i][j] + eps) / (q[i][j] + eps)) for i, j in pairs) / 4
    assert loss(out(s), out(t)).item() == pytest.approx(expected, rel=1e-4)
    assert loss(out(t), out(t)).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------------------------- cosine


@pytest.mark.parametrize("on,temperature", [("softmax", 1.0), ("softmax", 3.0), ("logits", 1.0)])
def test_cosine_value_and_zero(on, temperature):
    torch.manual_seed(9)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    loss = create_loss("cosine", on=on, temperature=temperature)

    def prep(row):
        if on == "logits":
            return row
        e = [math.exp(v / temperature) for v in row]
        return [v / sum(e) for v in e]

    expected = sum(1 - dot(unit(prep(a)), unit(prep(b))) for a, b in zip(s.tolist(), t.tolist())) / 3
    assert loss(out(s), out(t)).item() == pytest.approx(expected, rel=1e-5)
    assert loss(out(t), out(t)).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------------------------- KR


def test_kr_aggregation_value_against_loops():
    torch.manual_seed(10)
    b = 2
    f_s = torch.randn(b, 3, 2, 2)
    f_x, f_y = torch.randn(b, 3, 4, 4), torch.randn(b, 2, 2, 2)
    loss = create_loss(
        "kr", student_layers=["s"], teacher_layers=["x", "y"], k=2, transport_weight=0.3, sparse_weight=0.0
    )
    loss.setup({"s": (3, 2, 2)}, {"x": (3, 4, 4), "y": (2, 2, 2)})
    with torch.no_grad():
        loss.alpha[0].copy_(torch.tensor([0.4, -0.3]))
        loss.connectors[0][0].weight.normal_()
    value = loss(out(torch.zeros(b, 1), s=f_s), out(torch.zeros(b, 1), x=f_x, y=f_y)).item()

    e = [math.exp(0.4), math.exp(-0.3)]
    w = [v / sum(e) for v in e]
    conn = loss.connectors[0]
    match, costs, residual_entries = 0.0, [0.0, 0.0], [[], []]
    for sb, xb, yb in zip(nested(f_s), nested(f_x), nested(f_y)):
        p = [flat(conv1x1(pool2(xb), conn[0].weight)), flat(conv1x1(yb, conn[1].weight))]
        agg = [w[0] * u + w[1] * v for u, v in zip(*p)]
        s_unit = unit(flat(sb))
        match += sum((a - c) ** 2 for a, c in zip(s_unit, unit(agg))) / b
        for j in range(2):
            r = [a - c for a, c in zip(s_unit, unit(p[j]))]
            costs[j] += sum(v * v for v in r) / b
            residual_entries[j] += r

    def pstd(v):
        m = sum(v) / len(v)
        return math.sqrt(sum((a - m) ** 2 for a in v) / len(v))

    sig = [pstd(residual_entries[0]), pstd(residual_entries[1])]
    expected = match + 0.3 * sum(sig[j] / sum(sig) * costs[j] for j in range(2))
    assert value == pytest.approx(expected, rel=1e-5)


def test_kr_resize_pools_down_and_interpolates_up():
    torch.manual_seed(14)
    x = torch.randn(1, 2, 8, 8)
    down = resize_to(x, (2, 2))
    assert flat(nested(down)) == pytest.approx(flat([pool2(pool2(f)) for f in nested(x)]), abs=1e-6)  # 4x4 block means
    y = torch.randn(1, 2, 1, 1)
    assert flat(nested(resize_to(y, (2, 3)))) == pytest.approx(flat(nested(y.expand(1, 2, 2, 3))), abs=1e-6)
    assert resize_to(x, (8, 8)) is x


def test_kr_zero_for_equal_features_and_identity_connectors():
    torch.manual_seed(11)
    f = torch.randn(2, 3, 2, 2)
    loss = create_loss("kr", student_layers=["s"], teacher_layers=["t"], sparse_weight=0.0)
    loss.setup({"s": (3, 2, 2)}, {"t": (3, 2, 2)})  # equal channels: connector starts as the identity
    assert loss(out(torch.zeros(2, 1), s=f), out(torch.zeros(2, 1), t=f)).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(out(torch.zeros(2, 1), s=f), out(torch.zeros(2, 1), t=f.flip(0))).item() > 0.01


def test_kr_sparse_term_adds_weighted_penalty():
    torch.manual_seed(12)
    f_s, f_t = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    dense = create_loss("kr", student_layers=["s"], teacher_layers=["t"], sparse_weight=0.0)
    sparse = create_loss("kr", student_layers=["s"], teacher_layers=["t"], sparse_weight=0.5)
    for loss in (dense, sparse):
        loss.setup({"s": (3, 2, 2)}, {"t": (3, 2, 2)})
    sparse.load_state_dict(dense.state_dict(), strict=False)
    diff = sparse(out(torch.zeros(2, 1), s=f_s), out(torch.zeros(2, 1), t=f_t)) - dense(
        out(torch.zeros(2, 1), s=f_s), out(torch.zeros(2, 1), t=f_t)
    )
    tau = f_s.abs().mean().item()  # threshold initialized at the mean magnitude of the first batch
    assert sparse.sparse[0].threshold.item() == pytest.approx(tau, rel=1e-6)
    x = flat(nested(f_s))
    expected = sum(1 - (1 - min(abs(v) / tau, 1.0)) ** 2 for v in x) / len(x)
    assert diff.item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_kr_setup_errors():
    with pytest.raises(ValueError, match="equal groups"):
        create_loss("kr", student_layers=["a", "b"], teacher_layers=["x", "y", "z"])
    with pytest.raises(ValueError, match="k=3"):
        create_loss("kr", student_layers=["a"], teacher_layers=["x", "y"], k=3)
    with pytest.raises(ValueError, match=r"conv maps"):
        create_loss("kr", student_layers=["a"], teacher_layers=["x"]).setup({"a": (4,)}, {"x": (4, 2, 2)})
    with pytest.raises(ValueError, match="not set"):
        create_loss("kr").setup({}, {})


# --------------------------------------------------------------------------------------------- sparse recoding


def test_sparse_recoding_value_and_gradient_shape():
    pen = SparseRecodingPenalty(threshold=1.0)
    x = torch.tensor([0.0, 0.5, -0.25, 1.0, 3.0, -2.0], requires_grad=True)
    value = pen(x)
    expected = (0 + 0.75 + (1 - 0.75**2) + 1 + 1 + 1) / 6
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    # below the threshold: pull 2 sign(x)(1 - |x|/tau)/(N tau) towards zero; above: no shrinkage at all
    expected_grad = [0.0, 2 * 0.5 / 6, -2 * 0.75 / 6, 0.0, 0.0, 0.0]
    assert x.grad.tolist() == pytest.approx(expected_grad, abs=1e-6)


def test_sparse_recoding_threshold_is_trainable_and_initialized_at_mean_magnitude():
    w = torch.tensor([0.1, -0.2, 0.3, 2.0])
    pen = SparseRecodingPenalty.from_tensor(w)
    assert pen.threshold.item() == pytest.approx(w.abs().mean().item(), rel=1e-6)
    assert any(p is pen.log_threshold for p in pen.parameters()) and pen.log_threshold.requires_grad
    # tau's calibration gradient drives it towards the mean magnitude of what it penalizes
    x = 3 * w
    opt = torch.optim.SGD(pen.parameters(), lr=0.5)
    before = pen.threshold.item()
    for _ in range(200):
        opt.zero_grad()
        pen(x).backward()
        opt.step()
    assert pen.threshold.item() > before * 2
    assert pen.threshold.item() == pytest.approx(x.abs().mean().item(), rel=1e-2)
    # the calibration term contributes gradient only, never value
    u = (x.abs() / pen.threshold).clamp(max=1)
    assert pen(x).item() == pytest.approx((1 - (1 - u) ** 2).mean().item(), rel=1e-6)


def _minimize(w0: torch.Tensor, kind: str, lam: float, steps: int = 1500, lr: float = 0.5):
    w = w0.clone().requires_grad_(True)
    params = [w]
    pen = None
    if kind == "sr":
        pen = SparseRecodingPenalty.from_tensor(w0)
        params += list(pen.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        penalty = {"l1": lambda: w.abs().mean(), "l2": lambda: w.pow(2).mean(), "sr": lambda: pen(w)}[kind]()
        ((w - w0).pow(2).mean() + lam * penalty).backward()
        opt.step()
    return w.detach(), pen


@pytest.mark.slow
def test_sparse_recoding_is_sparser_than_l1_and_l2_without_shrinking_dominant_entries():
    g = torch.Generator().manual_seed(0)
    n_big, n_small = 10, 40
    big = torch.sign(torch.randn(n_big, generator=g)) * (1 + torch.rand(n_big, generator=g))
    w0 = torch.cat([big, 0.15 * torch.randn(n_small, generator=g)])
    results = {kind: _minimize(w0, kind, lam=0.2) for kind in ("l1", "l2", "sr")}
    zeros = {kind: int((w[n_big:].abs() < 1e-2).sum()) for kind, (w, _) in results.items()}
    shrink = {kind: float((w0[:n_big].abs() - w[:n_big].abs()).mean()) for kind, (w, _) in results.items()}
    assert zeros["sr"] > zeros["l1"] > zeros["l2"], zeros
    assert shrink["sr"] < 0.25 * shrink["l1"] and shrink["l1"] < shrink["l2"], shrink
    pen = results["sr"][1]
    assert pen.threshold.item() != pytest.approx(w0.abs().mean().item(), rel=1e-3)  # tau moved during training


def test_sparse_recoding_loss_needs_student_layers_only():
    loss = create_loss("sparse_recoding", student_layers=["s"], teacher_layers=["t"])
    assert loss.student_taps == ("s",) and loss.teacher_taps == ()
    with pytest.raises(ValueError, match="student_layers"):
        create_loss("sparse_recoding").setup({}, {})


# --------------------------------------------------------------------------------------------- generic contract

# name -> (kwargs, per-sample student feature shapes, per-sample teacher feature shapes)
CASES = {
    "kd": ({"temperature": 2.0}, {}, {}),
    "cosine": ({}, {}, {}),
    "rkd": ({}, {}, {}),
    "pkt": ({}, {}, {}),
    "rkd_feature": ({"student_layer": "f", "teacher_layer": "g"}, {"f": (6,)}, {"g": (3, 2, 2)}),
    "pkt_feature": ({"student_layer": "f", "teacher_layer": "g"}, {"f": (6,)}, {"g": (3, 2, 2)}),
    "at": ({}, {"a": (3, 4, 4)}, {"x": (5, 2, 2)}),
    "nst": ({}, {"a": (3, 4, 4)}, {"x": (5, 2, 2)}),
    "sp": ({}, {"a": (3, 4, 4)}, {"x": (5, 2, 2)}),
    "hint": ({"kernel_size": 3}, {"a": (3, 4, 4)}, {"x": (5, 2, 2)}),
    "fsp": ({"connectors": True}, {"a": (3, 4, 4), "b": (4, 2, 2)}, {"x": (3, 4, 4), "y": (6, 2, 2)}),
    "kr": ({"k": 2}, {"a": (3, 4, 4)}, {"x": (5, 8, 8), "y": (3, 4, 4)}),
    "sparse_recoding": ({}, {"a": (3, 4, 4)}, {}),
    "penultimate": ({"student_layers": ["f"], "teacher_layers": ["g", "h"]}, {"f": (6,)}, {"g": (4,), "h": (3,)}),
}
WITH_PARAMS = ["hint", "fsp", "kr", "sparse_recoding", "penultimate"]


def build(case: str):
    kwargs, s_shapes, t_shapes = CASES[case]
    name = case.split("_feature")[0]
    kwargs = dict(kwargs)
    if getattr(create_loss(name), "uses_default_taps", False):
        kwargs.setdefault("student_layers", list(s_shapes))
        kwargs.setdefault("teacher_layers", list(t_shapes))
    loss = create_loss(name, **kwargs)
    loss.setup(s_shapes, t_shapes)
    return loss, s_shapes, t_shapes


def make_batch(s_shapes, t_shapes, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student_params = {"logits": nn.Parameter(torch.randn(batch, 5, generator=g))}
    student_params.update({n: nn.Parameter(torch.randn(batch, *shape, generator=g)) for n, shape in s_shapes.items()})
    teacher_params = {"logits": nn.Parameter(torch.randn(batch, 5, generator=g))}
    teacher_params.update({n: nn.Parameter(torch.randn(batch, *shape, generator=g)) for n, shape in t_shapes.items()})
    def run(params):  # stands in for a network's forward: outputs computed from its parameters
        return NetOutput(params["logits"] * 1.0, {n: p * 1.0 for n, p in params.items() if n != "logits"})

    student = run(student_params)
    with torch.no_grad():
        teacher = run(teacher_params)
    return student, teacher, student_params, teacher_params


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_student_and_owned_params(case):
    """The teacher side is the loop's job: tests/test_trainer.py checks that the step hands losses detached targets."""
    loss, s_shapes, t_shapes = build(case)
    student, teacher, sp, tp = make_batch(s_shapes, t_shapes)
    value = loss(student, teacher)
    assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    used = list(loss.student_taps) or ["logits"]
    for name in used:
        assert sp[name].grad is not None and sp[name].grad.abs().sum() > 0, name
    for name, p in loss.named_parameters():
        assert p.grad is not None, name


@pytest.mark.parametrize("case", WITH_PARAMS)
def test_setup_builds_params_and_state_dict_round_trip(case):
    loss, s_shapes, t_shapes = build(case)
    assert len(list(loss.parameters())) > 0
    student, teacher, _, _ = make_batch(s_shapes, t_shapes)
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    for _ in range(2):  # move every owned tensor away from its initialization
        opt.zero_grad()
        loss(student, teacher).backward(retain_graph=True)
        opt.step()
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    fresh, _, _ = build(case)
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert fresh(student, teacher).item() == loss(student, teacher).item()


@pytest.mark.parametrize("name", ["at", "nst", "sp", "hint", "fsp", "kr"])
def test_feature_losses_demand_layers_and_reject_bad_shapes(name):
    loss = create_loss(name)
    assert loss.uses_default_taps and loss.student_taps == () and loss.teacher_taps == ()
    with pytest.raises(ValueError, match="not set"):
        loss.setup({}, {})
    with pytest.raises(ValueError):
        create_loss(name, student_layers=["a", "b"], teacher_layers=["x", "y", "z"])
    if name in ("at", "nst", "fsp", "kr"):
        layers = (["a", "b"], ["x", "y"]) if name == "fsp" else (["a"], ["x"])
        bad = create_loss(name, student_layers=layers[0], teacher_layers=layers[1])
        with pytest.raises(ValueError, match=r"\(7,\)"):
            bad.setup({n: (7,) for n in layers[0]}, {n: (3, 2, 2) for n in layers[1]})


def test_integrator_can_fill_default_layers_after_construction():
    loss = create_loss("at")
    loss.student_layers, loss.teacher_layers = ["a"], ["x"]
    assert loss.student_taps == ("a",) and loss.teacher_taps == ("x",)
    loss.setup({"a": (3, 2, 2)}, {"x": (4, 2, 2)})


def test_losses_compute_in_float32_under_bf16_autocast():
    loss, s_shapes, t_shapes = build("nst")
    student, teacher, _, _ = make_batch(s_shapes, t_shapes)
    student = NetOutput(student.logits.bfloat16(), {k: v.bfloat16() for k, v in student.features.items()})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(student, teacher)
    assert value.dtype == torch.float32
