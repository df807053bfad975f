"""The architecture registry: one source of truth for ``seqplay archs``, the CLI's ``--arch`` choices,
the TUI's model picker and checkpoint loading (a saved config's ``arch`` rebuilds the right class).

Torch-free: config dataclasses and metadata only. ``build_model`` imports the model's module lazily.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass
from typing import Any

from engine.training.config import strict_from_dict
from engine.errors import ConfigError

# A model far beyond what a playground trains is refused before allocation (checkpoints are untrusted).
MAX_PARAMS = 2_000_000_000
MAX_DIM = 65_536


@dataclass
class ModelConfig:
    """Base of every architecture's hyper-parameters. Field names are shared across architectures
    where they mean the same thing (``width``, ``layers``, ``heads``, ``context``, ``embed``,
    ``dropout``), so one CLI flag sets them everywhere."""

    vocab_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return strict_from_dict(cls, data, f"{cls.__name__} setting")

    def replace(self, **changes: Any) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})

    def num_params(self) -> int:
        """Exact number of trainable parameters (computed without torch)."""
        raise NotImplementedError

    def validate(self) -> ModelConfig:
        """Refuse impossible or absurd settings with a one-line ConfigError, before allocation."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and f.name != "vocab_size":
                if value < 1:
                    raise ConfigError(f"{f.name} must be a positive whole number, got {value}")
                if value > MAX_DIM and f.name != "context":
                    raise ConfigError(f"{f.name}={value} is absurdly large (limit {MAX_DIM}); use a smaller size")
            if f.name == "dropout" and not (0.0 <= float(value) < 1.0):
                raise ConfigError(f"dropout must be in [0, 1), got {value}")
        if self.vocab_size > 10_000_000:
            raise ConfigError(f"vocab_size={self.vocab_size} is absurd; use a tokenizer with a smaller vocabulary")
        return self


@dataclass
class NGramConfig(ModelConfig):
    order: int = 5
    discount: float = 0.75

    def num_params(self) -> int:
        return 0  # counts, not trained parameters

    def validate(self) -> NGramConfig:
        super().validate()
        if not (0.0 < float(self.discount) < 1.0):
            raise ConfigError(f"discount must be in (0, 1), got {self.discount}")
        if self.vocab_size and self.order > ngram_max_order(self.vocab_size):
            raise ConfigError(f"order {self.order} is too high for a vocabulary of {self.vocab_size}; "
                              f"use order <= {ngram_max_order(self.vocab_size)}")
        return self


def ngram_max_order(vocab_size: int) -> int:
    """Highest n-gram order whose codes fit exactly in int64 (codes up to V^n)."""
    return max(1, int(62 / math.log2(max(vocab_size, 2))))


@dataclass
class MLPConfig(ModelConfig):
    context: int = 8  # the fixed window n
    embed: int = 64
    width: int = 512
    layers: int = 1
    dropout: float = 0.1

    def num_params(self) -> int:
        n = (self.vocab_size + 1) * self.embed  # + the pad row for window slots before the start
        width_in = self.context * self.embed
        for _ in range(self.layers):
            n += width_in * self.width + self.width
            width_in = self.width
        return n + width_in * self.vocab_size + self.vocab_size


@dataclass
class RecurrentConfig(ModelConfig):
    embed: int = 128
    width: int = 256
    layers: int = 2
    dropout: float = 0.1
    residual: bool = False
    tie_weights: bool = False
    nonlinearity: str = "tanh"  # rnn only: tanh | relu
    identity_init: bool = False  # rnn only: W_h = I (Le et al. 2015)
    forget_bias: float = 0.0  # lstm only: initial forget-gate bias (1 keeps long-range gradients, learns slower early)
    context: int = 64  # truncated-BPTT length used by the trainer
    cell: str = "lstm"  # rnn | ugrnn | gru | lstm (set by the registry entry)

    def num_params(self) -> int:
        gates = {"rnn": 1, "ugrnn": 2, "gru": 3, "lstm": 4}[self.cell]
        biases = 1 if self.cell == "ugrnn" else 2  # torch's cells have b_ih and b_hh
        n = self.vocab_size * self.embed
        for i in range(self.layers):
            inp = self.embed if i == 0 else self.width
            n += gates * self.width * (inp + self.width) + biases * gates * self.width
        n += self.vocab_size + (0 if self.tie_weights else self.width * self.vocab_size)
        return n

    def validate(self) -> RecurrentConfig:
        super().validate()
        if self.cell not in ("rnn", "ugrnn", "gru", "lstm"):
            raise ConfigError(f"cell must be rnn, ugrnn, gru or lstm, got {self.cell!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.tie_weights and self.embed != self.width:
            raise ConfigError(
                f"tie_weights needs embed == width (got {self.embed} and {self.width}); set them equal or untie"
            )
        return self


@dataclass
class Seq2SeqConfig(ModelConfig):
    cell: str = "lstm"  # lstm | gru
    embed: int = 64
    width: int = 128
    layers: int = 1
    bidirectional: bool = True
    attention: str = "additive"  # none | additive | dot | bilinear
    dropout: float = 0.0
    context: int = 64  # longest source/target sequence in tokens

    def num_params(self) -> int:
        k = {"lstm": 4, "gru": 3}[self.cell]
        dirs = 2 if self.bidirectional else 1
        he, w = self.width // dirs, self.width
        n = self.vocab_size * self.embed  # one embedding shared by source and target
        for i in range(self.layers):  # encoder: per direction k*H(in + H) + 2kH
            n += dirs * (k * he * ((self.embed if i == 0 else w) + he) + 2 * k * he)
        attn = self.attention != "none"
        for i in range(self.layers):  # decoder: input = [embedding; previous context]
            n += k * w * ((self.embed + (w if attn else 0) if i == 0 else w) + w) + 2 * k * w
        n += {"none": 0, "dot": 0, "bilinear": w * w, "additive": 2 * w * w + w}[self.attention]
        return n + ((2 * w if attn else w) + 1) * self.vocab_size

    def validate(self) -> Seq2SeqConfig:
        super().validate()
        if self.cell not in ("lstm", "gru"):
            raise ConfigError(f"seq2seq cell must be 'lstm' or 'gru', got {self.cell!r}")
        if self.attention not in ("none", "additive", "dot", "bilinear"):
            raise ConfigError(f"attention must be none, additive, dot or bilinear, got {self.attention!r}")
        if self.bidirectional and self.width % 2:
            raise ConfigError(f"a bidirectional encoder splits width {self.width} in two; use an even width")
        if self.vocab_size and self.vocab_size < 4:
            raise ConfigError("seq2seq needs the tokenizer's vocabulary plus pad, bos and eos; vocab_size is too small")
        return self


@dataclass
class TransformerConfig(ModelConfig):
    context: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.1
    positions: str = "learned"  # learned | sinusoidal
    tie_weights: bool = True
    bias: bool = True

    def num_params(self) -> int:
        w, b = self.width, int(self.bias)
        block = (w + w * b) * 2  # two LayerNorms
        block += 3 * w * w + 3 * w * b + w * w + w * b  # qkv + output projection
        block += 2 * self.mlp_ratio * w * w + self.mlp_ratio * w * b + w * b  # MLP
        n = self.vocab_size * w + (self.context * w if self.positions == "learned" else 0)
        n += self.layers * block + (w + w * b)  # blocks + final LayerNorm
        return n + (0 if self.tie_weights else w * self.vocab_size)

    def validate(self) -> TransformerConfig:
        super().validate()
        if self.width % self.heads:
            raise ConfigError(
                f"{self.heads} heads do not divide width {self.width}; "
                f"use heads that divide it (e.g. {max(h for h in range(1, self.width + 1) if self.width % h == 0 and h <= self.heads)})"
            )
        if self.positions not in ("learned", "sinusoidal"):
            raise ConfigError(f"positions must be 'learned' or 'sinusoidal', got {self.positions!r}")
        return self


@dataclass
class MLMConfig(ModelConfig):
    encoder: str = "transformer"  # transformer | lstm (bidirectional)
    context: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.1
    mask_prob: float = 0.15

    def num_params(self) -> int:
        w, V = self.width, self.vocab_size
        if self.encoder == "lstm":  # bidirectional LSTM, width units per direction
            n = V * w
            for i in range(self.layers):
                n += 2 * (4 * w * ((w if i == 0 else 2 * w) + w) + 8 * w)
            return n + 2 * w * V + V
        block = 2 * 2 * w + 4 * w * w + 4 * w + 2 * self.mlp_ratio * w * w + self.mlp_ratio * w + w
        n = V * w + self.context * w + self.layers * block + 2 * w  # + final LayerNorm
        return n + w * w + w + 2 * w + V  # head: dense + LayerNorm, decoder tied to the embedding, bias

    def validate(self) -> MLMConfig:
        super().validate()
        if self.encoder not in ("transformer", "lstm"):
            raise ConfigError(f"mlm encoder must be 'transformer' or 'lstm', got {self.encoder!r}")
        if not (0.0 < float(self.mask_prob) < 1.0):
            raise ConfigError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.encoder == "transformer" and self.width % self.heads:
            raise ConfigError(f"{self.heads} heads do not divide width {self.width}; use heads that divide it")
        return self


@dataclass(frozen=True)
class ArchInfo:
    name: str
    family: str  # count | feedforward | recurrent | seq2seq | attention | masked
    task: str  # lm | seq2seq | mlm
    description: str
    equation: str
    config_cls: type[ModelConfig]
    model_path: str  # "module:Class", imported lazily (torch)
    default_lr: float
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-arch config overrides

    def make_config(self, vocab_size: int = 0, **overrides: Any) -> ModelConfig:
        cfg = self.config_cls(vocab_size=vocab_size, **self.defaults)
        return cfg.replace(**overrides)

    @property
    def recurrent(self) -> bool:
        return self.family == "recurrent"


ARCHS: dict[str, ArchInfo] = {}


def register(info: ArchInfo) -> ArchInfo:
    ARCHS[info.name] = info
    return info


register(ArchInfo(
    "ngram", "count", "lm",
    "Count-based n-gram LM with interpolated Kneser-Ney smoothing; trained by counting.",
    "P_KN(w|h) = max(c(h,w) - d, 0)/c(h) + d*N1+(h.)/c(h) * P_KN(w|h')",
    NGramConfig, "engine.models.ngram:NGramLM", 0.0,
))
register(ArchInfo(
    "mlp", "feedforward", "lm",
    "Fixed-window neural LM (Bengio et al. 2003): concatenated embeddings of the last n tokens.",
    "y = softmax(U tanh(H [e(w_{t-n+1}); ...; e(w_{t-1})] + b) + c)",
    MLPConfig, "engine.models.mlp:MLPLM", 2e-3,
))
register(ArchInfo(
    "rnn", "recurrent", "lm",
    "Elman RNN: one hidden state updated by a tanh or ReLU of the previous state and the input.",
    "h_t = f(W_h h_{t-1} + W_x x_t + b)",
    RecurrentConfig, "engine.models.recurrent:RNNLM", 2e-3,
    {"cell": "rnn"},
))
register(ArchInfo(
    "ugrnn", "recurrent", "lm",
    "Update-gate RNN: a single gate G mixes the old state with a tanh candidate R.",
    "R = tanh(W_hR h_{t-1} + W_xR x_t - B_R); G = sigma(W_hG h_{t-1} + W_xG x_t - B_G); h_t = G*h_{t-1} + (1-G)*R",
    RecurrentConfig, "engine.models.recurrent:UGRNNLM", 2e-3,
    {"cell": "ugrnn"},
))
register(ArchInfo(
    "gru", "recurrent", "lm",
    "Gated recurrent unit: reset and update gates around a tanh candidate state.",
    "r = sigma(W_r[x,h]); z = sigma(W_z[x,h]); n = tanh(W_n x + r*(U_n h)); h_t = (1-z)*n + z*h_{t-1}",
    RecurrentConfig, "engine.models.recurrent:GRULM", 2e-3,
    {"cell": "gru"},
))
register(ArchInfo(
    "lstm", "recurrent", "lm",
    "Long short-term memory: input, forget and output gates around an additive cell state.",
    "i,f,o = sigma(W[x,h]); g = tanh(W_g[x,h]); c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t)",
    RecurrentConfig, "engine.models.recurrent:LSTMLM", 2e-3,
    {"cell": "lstm"},
))
register(ArchInfo(
    "seq2seq", "seq2seq", "seq2seq",
    "Encoder-decoder (Sutskever et al. 2014) with optional attention over encoder states.",
    "h_bar = Enc(x); s_t = Dec(y_{t-1}, s_{t-1}, c_t); c_t = sum_i softmax(score(s_{t-1}, h_bar_i)) h_bar_i",
    Seq2SeqConfig, "engine.models.seq2seq:Seq2Seq", 2e-3,
))
register(ArchInfo(
    "transformer", "attention", "lm",
    "Decoder-only GPT: pre-LayerNorm blocks of causal multi-head self-attention and an MLP.",
    "Attn(Q,K,V) = softmax(Q K^T / sqrt(d_k) + causal mask) V; x = x + Attn(LN(x)); x = x + MLP(LN(x))",
    TransformerConfig, "engine.models.transformer:Transformer", 1e-3,
))
register(ArchInfo(
    "mlm", "masked", "mlm",
    "Masked LM (BERT-style): mask 15% of tokens and predict them from both sides.",
    "L = -sum_{t in masked} log P(x_t | x_{\\t})",
    MLMConfig, "engine.models.mlm:MaskedLM", 1e-3,
))


def get_arch(name: str) -> ArchInfo:
    try:
        return ARCHS[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)} (see `seqplay archs`)") from None


def make_config(arch: str, vocab_size: int = 0, **overrides: Any) -> ModelConfig:
    """The architecture's default config with ``overrides`` applied (unknown names are ignored, so
    shared CLI flags can be passed to every architecture)."""
    return get_arch(arch).make_config(vocab_size, **overrides)


def config_from_dict(arch: str, data: dict[str, Any]) -> ModelConfig:
    return get_arch(arch).config_cls.from_dict(data)


def model_class(arch: str) -> type:
    module, _, cls = get_arch(arch).model_path.partition(":")
    return getattr(importlib.import_module(module), cls)


def build_model(arch: str, config: ModelConfig):
    """Validate ``config`` (refusing absurd sizes before allocation) and build the torch module."""
    config.validate()
    n = config.num_params()
    if n > MAX_PARAMS:
        raise ConfigError(f"{arch} with these settings has {n:,} parameters, over the limit of {MAX_PARAMS:,}; use smaller sizes")
    return model_class(arch)(config)
