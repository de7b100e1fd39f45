"""Small architectures written for the runtime tests: a CNN with BatchNorm and a transformer block."""

import torch
from torch import nn


class RowNorm(nn.Module):
    """Divides each row by its L2 norm written as sqrt(sum(x^2)): the backward is NaN where a row is 0."""

    def forward(self, x):
        return x / (torch.sqrt((x ** 2).sum(dim=1, keepdim=True)) + 1.0)


class SmallCNN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.norm = RowNorm()
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).flatten(1)))


class TransformerClassifier(nn.Module):
    def __init__(self, vocab=20, d=16, classes=3):
        super().__init__()
        self.embed = nn.Linear(vocab, d)
        self.block = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)
        self.temperature = 1.0

    def forward(self, x):
        hidden = self.norm(self.block(self.embed(x)))
        return self.head(hidden.mean(dim=1)) / self.temperature


def cnn_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 8, 8, generator=generator), torch.randint(0, 3, (6,), generator=generator)


def sequence_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 5, 20, generator=generator), torch.randint(0, 3, (4,), generator=generator)


class CausalLM(nn.Module):
    """The shapes of PyTorch's own language-model tutorial: a causal mask, made in forward and
    passed positionally to an encoder (`mask="forward"`) or handed in by the caller
    (`mask="input"`), and a hand-written attention head whose -inf-masked scores enter an
    `nn.Softmax` submodule (`mask_rows`: rows that are masked entirely)."""

    def __init__(self, vocab=12, d=16, mask="forward", mask_rows=()):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.query, self.key = nn.Linear(d, d), nn.Linear(d, d)
        self.softmax = nn.Softmax(dim=-1)
        self.head = nn.Linear(d, vocab)
        self.mask, self.mask_rows = mask, mask_rows

    def forward(self, tokens, mask=None):
        length = tokens.shape[1]
        if self.mask == "forward":
            mask = nn.Transformer.generate_square_subsequent_mask(length)
        hidden = self.encoder(self.embed(tokens), mask, is_causal=True)
        scores = self.query(hidden) @ self.key(hidden).transpose(1, 2)
        blocked = torch.ones(length, length, dtype=torch.bool).triu(1)
        blocked[list(self.mask_rows)] = True
        weights = self.softmax(scores.masked_fill(blocked, float("-inf")))
        return self.head(weights @ hidden)


def lm_batch(seed, vocab=12):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (4, 9), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]
