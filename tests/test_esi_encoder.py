"""1D ConvNeXt-V2 ECG encoder: shapes at 100 and 500 Hz, parameter counts, block structure."""
import pytest
import torch

from ecgkit.nn.convnext import GRN, VARIANTS, Block, ConvNeXt1D, ecg_encoder, n_parameters


@pytest.mark.parametrize("samples, steps", [(1000, 31), (5000, 156)])
def test_shapes_at_100_and_500_hz(samples, steps):
    torch.manual_seed(0)
    model = ecg_encoder("small").eval()
    x = torch.randn(2, 12, samples)
    seq = model.forward_features(x)
    assert seq.shape == (2, steps, model.dim)  # total stride 4 * 2 * 2 * 2 = 32
    pooled = model(x)
    assert pooled.shape == (2, model.dim)
    assert torch.allclose(pooled, model.pool(seq))
    assert torch.isfinite(pooled).all()


def test_parameter_counts():
    # 1D kernels make these a little smaller than the 2D ConvNeXt-V2 (28.6M / 88.7M);
    # measured: tiny 26,815,680, base 85,560,576, small 526,944.
    with torch.device("meta"):  # count without allocating
        tiny, base, small = ecg_encoder("tiny"), ecg_encoder("base"), ecg_encoder("small")
    assert n_parameters(tiny) == pytest.approx(27e6, rel=0.03)
    assert n_parameters(base) == pytest.approx(86e6, rel=0.03)
    assert n_parameters(small) < 1e6
    assert (tiny.dim, base.dim, small.dim) == (768, 1024, 192)


def test_structure_follows_convnext_v2():
    with torch.device("meta"):
        model = ecg_encoder("tiny")
    stem = model.downsample[0][0]
    assert (stem.kernel_size, stem.stride) == ((4,), (4,))
    for down in model.downsample[1:]:
        assert (down[1].kernel_size, down[1].stride) == ((2,), (2,))
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert len(blocks) == sum(VARIANTS["tiny"][0])
    b = blocks[0]
    assert b.dwconv.groups == b.dwconv.in_channels and b.dwconv.kernel_size == (7,)
    assert b.pwconv1.out_features == 4 * b.pwconv1.in_features
    assert isinstance(b.grn, GRN)


def test_grn_normalises_over_time():
    grn = GRN(4)
    with torch.no_grad():
        grn.gamma.fill_(1.0)
    x = torch.randn(2, 10, 4)
    gx = x.norm(dim=1, keepdim=True)
    expected = x * gx / (gx.mean(-1, keepdim=True) + 1e-6) + x
    assert torch.allclose(grn(x), expected, atol=1e-6)


def test_features_are_local_in_time():
    """Each output time step depends on a limited window: the sequence is not one vector repeated."""
    torch.manual_seed(0)
    model = ecg_encoder("small").eval()
    x = torch.randn(1, 12, 1000)
    y = x.clone()
    y[..., :100] += 1.0  # change the first second only
    a, b = model.forward_features(x), model.forward_features(y)
    changed = (a - b).abs().amax(-1)[0] > 1e-5
    assert changed[0] and not changed[-1]


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = ConvNeXt1D("small", drop_path=0.5)
    x = torch.randn(2, 12, 256)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_bad_input_is_explained():
    model = ecg_encoder("small")
    with pytest.raises(ValueError, match="12"):
        model(torch.randn(2, 8, 1000))
    with pytest.raises(ValueError, match="variant"):
        ConvNeXt1D("huge")
