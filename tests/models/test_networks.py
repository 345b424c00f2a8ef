"""The paper's ACGAN networks (appendix C.2): shapes at every stage and exact sizes."""

import pytest
import torch
from torch import nn

from pirtune.models.networks import Discriminator, Generator


def _shapes(module: nn.Sequential, x: torch.Tensor) -> list[tuple[int, ...]]:
    out = []
    leaves = [m for m in module.modules() if not list(m.children())]
    for layer in leaves:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            out.append(tuple(x.shape[1:]))
    return out


def test_paper_generator_stages():
    g = Generator()
    z, c = torch.randn(2, 64), torch.tensor([0, 1])
    x = g.fc(torch.cat([z, nn.functional.one_hot(c, 2).float()], 1)).view(2, 512, 4, 4)
    convs = _shapes(g.blocks, x)
    # Five conv steps: no upsampling on the first, ×2 nearest-neighbour on the others.
    assert convs == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32)]
    assert tuple(g(z, c).shape) == (2, 3, 64, 64)
    assert isinstance(g.to_rgb[-1], nn.Tanh)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    # FC (64 latent + 2 one-hot) -> 4·4·512:   66·8192 + 8192          =   548,864
    # conv 512->512: 512·512·9 + 512 = 2,359,808;  512->256: 1,179,904
    # conv 256->128: 295,040;  128->64: 73,792;  64->3: 64·3·9 + 3 = 1,731
    assert sum(p.numel() for p in g.parameters()) == 4_459_139


def test_paper_discriminator_stages():
    d = Discriminator()
    convs = _shapes(d.features, torch.randn(2, 3, 64, 64))
    # strides 2,1,2,1,2,1 and depths 16…512
    assert convs == [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 16, 16),
                     (256, 8, 8), (512, 8, 8)]
    kinds = [type(m).__name__ for m in d.features]
    # batch norm after every conv; dropout after the 1st, 3rd and 5th layers only
    assert kinds.count("BatchNorm2d") == 6
    dropout_after = [kinds[:i].count("Conv2d") for i, k in enumerate(kinds) if k == "Dropout"]
    assert dropout_after == [1, 3, 5]
    source, logits = d(torch.randn(2, 3, 64, 64))
    assert source.shape == (2,) and logits.shape == (2, 2)
    # convs 3·16·9+16=448, 4,640, 18,496, 73,856, 295,168, 1,180,160 = 1,572,768
    # batch norm 2·(16+32+64+128+256+512)                              =     2,016
    # source head 8·8·512 + 1 = 32,769; class head 2·32,768 + 2        =    98,307
    assert sum(p.numel() for p in d.parameters()) == 1_673_091


@pytest.mark.parametrize("resolution", [16, 32, 128])
def test_resolution_and_width_scale(resolution):
    g = Generator(resolution=resolution, width=0.25, norm="batch")
    d = Discriminator(resolution=resolution, width=0.25)
    images = g(torch.randn(3, 64), torch.tensor([0, 1, 0]))
    assert images.shape == (3, 3, resolution, resolution)
    assert images.abs().max() <= 1
    assert d(images)[1].shape == (3, 2)
    assert any(isinstance(m, nn.BatchNorm2d) for m in g.modules())


def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match="resolution 48"):
        Generator(resolution=48)
    with pytest.raises(ValueError, match="'layer'"):
        Generator(norm="layer")


def test_projection_head_adds_the_class_embedding_dot_features():
    torch.manual_seed(0)
    d = Discriminator(resolution=16, width=0.125, dropout=0.0, head="projection").eval()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 1, 0])
    out = d.heads(images, labels)
    h = d.features(images).flatten(1)
    # Miyato & Koyama (2018): a(x, y) = ψ(h) + ⟨V y, h⟩, with V's rows the class embeddings.
    expected = h @ d.source.weight[0] + d.source.bias[0] + (d.embed.weight[labels] * h).sum(1)
    torch.testing.assert_close(out.source, expected)
    # the class changes the source value, and nothing else
    flipped = d.heads(images, 1 - labels)
    assert not torch.allclose(flipped.source, out.source)
    torch.testing.assert_close(flipped.class_logits, out.class_logits)
    with pytest.raises(ValueError, match="needs the images' classes"):
        d(images)


def test_tac_head_has_a_twin_classifier_and_ac_has_none():
    images = torch.randn(3, 3, 16, 16)
    tac = Discriminator(resolution=16, width=0.125, head="tac")
    assert tac.heads(images).twin_logits.shape == (3, 2)
    ac = Discriminator(resolution=16, width=0.125)
    assert ac.heads(images).twin_logits is None and not ac.needs_labels
    with pytest.raises(ValueError, match="head='twin' is unknown"):
        Discriminator(head="twin")
