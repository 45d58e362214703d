import pytest
import torch

from training.losses import BatchHardTripletLoss, CrossEntropyLabelSmooth, ReIDLoss, pairwise_euclidean


def smoothed_ce_by_hand(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> float:
    logits = logits.double()
    num_classes = logits.shape[1]
    total = 0.0
    for row, t in zip(logits, targets.tolist(), strict=True):
        log_p = row - torch.logsumexp(row, 0)
        q = torch.full_like(row, eps / num_classes)
        q[t] += 1 - eps
        total += float(-(q * log_p).sum())
    return total / len(targets)


def triplet_by_brute_force(features: torch.Tensor, targets: list[int], margin: float) -> float:
    f = features.double()
    losses = []
    for a in range(len(targets)):
        pos = [
            float((f[a] - f[p]).norm()) for p in range(len(targets)) if p != a and targets[p] == targets[a]
        ]
        neg = [float((f[a] - f[n]).norm()) for n in range(len(targets)) if targets[n] != targets[a]]
        losses.append(max(0.0, max(pos, default=0.0) - min(neg) + margin))
    return sum(losses) / len(losses)


def test_label_smoothed_cross_entropy_matches_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g) * 3
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = CrossEntropyLabelSmooth(0.1)(logits, targets)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(smoothed_ce_by_hand(logits, targets, 0.1), rel=1e-5)
    plain = CrossEntropyLabelSmooth(0.0)(logits, targets)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)), rel=1e-6)
    assert float(loss) != pytest.approx(float(plain), rel=1e-3)


def test_pairwise_euclidean_matches_cdist():
    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(1)) * 5
    d = pairwise_euclidean(x)
    ref = torch.cdist(x.double(), x.double())
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    assert torch.allclose(d.double()[off_diagonal], ref[off_diagonal], rtol=1e-5)
    assert float(d.diagonal().max()) < 1e-2


def test_batch_hard_triplet_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    targets = [0, 0, 0, 1, 1, 1, 2, 2, 3]  # identity 3 has no positive
    features = torch.randn(len(targets), 8, generator=g)
    for margin in (0.3, 5.0):
        loss = BatchHardTripletLoss(margin)(features, torch.tensor(targets))
        assert float(loss) == pytest.approx(triplet_by_brute_force(features, targets, margin), rel=1e-5)


def test_triplet_is_zero_when_identities_are_far_apart():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    features = centres.repeat_interleave(4, dim=0) + 0.01 * torch.randn(12, 2)
    targets = torch.arange(3).repeat_interleave(4)
    assert float(BatchHardTripletLoss(0.3)(features, targets)) == 0.0


def test_triplet_gradient_is_finite_with_duplicate_features():
    # identities with one image are sampled with replacement: identical rows in a batch
    base = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    features = base.repeat_interleave(2, dim=0).requires_grad_(True)
    targets = torch.arange(4).repeat_interleave(2)
    loss = BatchHardTripletLoss(10.0)(features, targets)
    loss.backward()
    assert torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


def test_single_identity_batch_gives_zero_loss_with_graph():
    features = torch.randn(4, 3, requires_grad=True)
    loss = BatchHardTripletLoss(0.3)(features, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert features.grad is not None


def test_reid_loss_combines_parts_and_weights():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 5, generator=g)
    features = torch.randn(8, 16, generator=g)
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = ReIDLoss()(logits, features, targets)
    assert float(out.total) == pytest.approx(float(out.cross_entropy + out.triplet), rel=1e-6)
    assert float(out.cross_entropy) == pytest.approx(smoothed_ce_by_hand(logits, targets, 0.1), rel=1e-5)
    weighted = ReIDLoss(ce_weight=0.5, triplet_weight=2.0)(logits, features, targets)
    assert float(weighted.total) == pytest.approx(
        0.5 * float(out.cross_entropy) + 2.0 * float(out.triplet), rel=1e-6
    )


def test_works_under_bf16_autocast_and_computes_in_float32():
    g = torch.Generator().manual_seed(5)
    features = (torch.randn(16, 64, generator=g) * 4).requires_grad_(True)
    logits = torch.randn(16, 10, generator=g).requires_grad_(True)
    targets = torch.arange(4).repeat_interleave(4)
    reference = ReIDLoss()(logits, features, targets)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = ReIDLoss()(logits.bfloat16(), features.bfloat16(), targets)
        out.total.backward()
    assert out.total.dtype == torch.float32
    # only the bf16 rounding of the inputs remains (a bf16 matmul would be far worse on the distances)
    assert out.triplet.item() == pytest.approx(reference.triplet.item(), rel=2e-2)
    assert out.cross_entropy.item() == pytest.approx(reference.cross_entropy.item(), rel=2e-2)
    assert torch.isfinite(features.grad).all() and torch.isfinite(logits.grad).all()
    d = pairwise_euclidean(features.detach().bfloat16())
    assert d.dtype == torch.float32


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: CrossEntropyLabelSmooth(0.1)(torch.randn(4), torch.zeros(4, dtype=torch.long)), "logits"),
        (
            lambda: CrossEntropyLabelSmooth(0.1)(torch.randn(4, 3), torch.zeros(3, dtype=torch.long)),
            "targets",
        ),
        (
            lambda: BatchHardTripletLoss(0.3)(torch.randn(4, 3, 2), torch.zeros(4, dtype=torch.long)),
            "features",
        ),
        (lambda: BatchHardTripletLoss(-1.0), "margin"),
        (lambda: CrossEntropyLabelSmooth(1.5), "epsilon"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_hand_worked_example():
    # 1-D features 0, 1 (identity 0) and 3, 3.5 (identity 1), margin 3:
    # anchors: (d_ap, d_an) = (1, 3), (1, 2), (0.5, 2), (0.5, 2.5) -> losses 1, 2, 1.5, 1 -> mean 1.375
    f = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    targets = torch.tensor([0, 0, 1, 1])
    assert float(BatchHardTripletLoss(3.0)(f, targets)) == pytest.approx(1.375, rel=1e-5)
    assert triplet_by_brute_force(f, [0, 0, 1, 1], 3.0) == pytest.approx(1.375)
