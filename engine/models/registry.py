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

from engine.errors import ConfigError
from engine.settings import Setting, check_fields, setting, settings_of, strict_from_dict

# A model far beyond what a playground trains is refused before allocation (checkpoints are untrusted).
MAX_PARAMS = 2_000_000_000
MAX_DIM = 65_536
MAX_CONTEXT = 2**20
MAX_VOCAB = 10_000_000


def _dim(default: int, help: str) -> Any:
    return setting(default, lo=1, hi=MAX_DIM, help=help)


def _context(default: int, help: str) -> Any:
    return setting(default, lo=1, hi=MAX_CONTEXT, help=help)


def _dropout(default: float) -> Any:
    return setting(default, lo=0.0, hi=1.0, hi_open=True, help="Dropout probability.")


@dataclass
class ModelConfig:
    """Base of every architecture's hyper-parameters. Field names are shared across architectures
    where they mean the same thing (``width``, ``layers``, ``heads``, ``context``, ``embed``,
    ``dropout``), so one CLI flag sets them everywhere."""

    vocab_size: int = setting(0, lo=0, hi=MAX_VOCAB, help="Set from the tokenizer (plus the task's special ids).",
                              advice="use a tokenizer with a smaller vocabulary")

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
        """Refuse impossible or absurd settings with a one-line ConfigError, before allocation: every
        field against its type and bounds (``engine.settings``); subclasses add cross-field checks."""
        check_fields(self)
        return self


@dataclass
class NGramConfig(ModelConfig):
    order: int = setting(5, lo=1, hi=64, help="n-gram order (a context of order-1 tokens).")
    discount: float = setting(0.75, lo=0.0, hi=1.0, lo_open=True, hi_open=True, help="Kneser-Ney absolute discount d.")

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
    context: int = _context(8, "The fixed window n (it trains on windows of max(64, 4n) tokens).")
    embed: int = _dim(64, "Embedding size per token.")
    width: int = _dim(512, "Hidden units per layer.")
    layers: int = _dim(1, "Hidden layers.")
    dropout: float = _dropout(0.1)

    def num_params(self) -> int:
        n = (self.vocab_size + 1) * self.embed  # + the pad row for window slots before the start
        width_in = self.context * self.embed
        for _ in range(self.layers):
            n += width_in * self.width + self.width
            width_in = self.width
        return n + width_in * self.vocab_size + self.vocab_size


@dataclass
class RecurrentConfig(ModelConfig):
    embed: int = _dim(128, "Embedding size per token.")
    width: int = _dim(256, "Hidden state size per layer.")
    layers: int = _dim(2, "Stacked recurrent layers.")
    dropout: float = _dropout(0.1)
    residual: bool = setting(False, help="Add each layer's input to its output.")
    tie_weights: bool = setting(False, help="Output matrix = embedding (needs embed == width).")
    nonlinearity: str = setting("tanh", choices=("tanh", "relu"), archs=("rnn",),
                                help="f in h_t = f(W_h h_{t-1} + W_x x_t + b).")
    identity_init: bool = setting(False, archs=("rnn",), help="Start with W_h = I (Le et al. 2015).")
    forget_bias: float = setting(0.0, lo=-100.0, hi=100.0, archs=("lstm",),
                                 help="Initial forget-gate bias (1 keeps long-range gradients, learns slower early).")
    context: int = _context(64, "Truncated-BPTT length used by the trainer.")
    cell: str = setting("lstm", choices=("rnn", "ugrnn", "gru", "lstm"), help="Set by the architecture.")
    output: str = setting("softmax", choices=("softmax", "adaptive"),
                          help="Output layer: full softmax, or adaptive softmax (Grave et al. 2017) for large "
                          "frequency-sorted vocabularies.")

    def num_params(self) -> int:
        gates = {"rnn": 1, "ugrnn": 2, "gru": 3, "lstm": 4}[self.cell]
        biases = 1 if self.cell == "ugrnn" else 2  # torch's cells have b_ih and b_hh
        n = self.vocab_size * self.embed
        for i in range(self.layers):
            inp = self.embed if i == 0 else self.width
            n += gates * self.width * (inp + self.width) + biases * gates * self.width
        if self.output == "adaptive":  # head (shortlist + one logit per cluster), then per cluster W_down, W_up
            cuts = adaptive_cutoffs(self.vocab_size)
            n += self.width * (cuts[0] + len(cuts) - 1)
            for i in range(len(cuts) - 1):
                hidden = self.width // (ADAPTIVE_DIV ** (i + 1))
                n += self.width * hidden + hidden * (cuts[i + 1] - cuts[i])
            return n
        n += self.vocab_size + (0 if self.tie_weights else self.width * self.vocab_size)
        return n

    def validate(self) -> RecurrentConfig:
        super().validate()
        if self.tie_weights and self.embed != self.width:
            raise ConfigError(
                f"tie_weights needs embed == width (got {self.embed} and {self.width}); set them equal or untie"
            )
        if self.output not in ("softmax", "adaptive"):
            raise ConfigError(f"output must be 'softmax' or 'adaptive', got {self.output!r}")
        if self.output == "adaptive" and self.tie_weights:
            raise ConfigError("an adaptive softmax has no single output matrix to tie; use --no-tie-weights or --set output=softmax")
        if self.output == "adaptive" and self.vocab_size and self.vocab_size < ADAPTIVE_MIN_VOCAB:
            raise ConfigError(f"an adaptive softmax needs a vocabulary of at least {ADAPTIVE_MIN_VOCAB:,} tokens (got "
                              f"{self.vocab_size:,}); use it with --tokenizer whitespace/word, or --set output=softmax")
        return self


ADAPTIVE_DIV = 4  # each tail cluster's projection is 4x narrower than the previous (torch's default)
ADAPTIVE_MIN_VOCAB = 64


def adaptive_cutoffs(vocab_size: int) -> list[int]:
    """Cluster boundaries of the adaptive softmax: a shortlist of the most frequent 6% of the ids,
    then ids up to 30%, then the rest (WikiText-2's 33,278: 1,997 / 9,983 / 33,278)."""
    a = max(1, round(0.06 * vocab_size))
    b = max(a + 1, round(0.30 * vocab_size))
    return [a, b, vocab_size] if b < vocab_size else [a, vocab_size]


@dataclass
class Seq2SeqConfig(ModelConfig):
    cell: str = setting("lstm", choices=("lstm", "gru"), help="Encoder/decoder cell.")
    embed: int = _dim(64, "Embedding size (shared by source and target).")
    width: int = _dim(128, "Decoder state size (the encoder's, both directions together).")
    layers: int = _dim(1, "Layers of the encoder and of the decoder.")
    bidirectional: bool = setting(True, flag="--bidirectional/--unidirectional", help="The encoder reads both ways.")
    attention: str = setting("additive", choices=("none", "additive", "dot", "bilinear"), help="Attention score.")
    dropout: float = _dropout(0.0)
    context: int = _context(64, "Longest source/target sequence in tokens.")

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
        if self.bidirectional and self.width % 2:
            raise ConfigError(f"a bidirectional encoder splits width {self.width} in two; use an even width")
        if self.vocab_size and self.vocab_size < 4:
            raise ConfigError("seq2seq needs the tokenizer's vocabulary plus pad, bos and eos; vocab_size is too small")
        return self


@dataclass
class TransformerConfig(ModelConfig):
    context: int = _context(64, "Attention window (tokens).")
    layers: int = _dim(4, "Transformer blocks.")
    heads: int = _dim(4, "Attention heads (must divide width).")
    width: int = _dim(128, "Model width d.")
    mlp_ratio: int = setting(4, lo=1, hi=64, help="MLP hidden size = mlp_ratio x width.")
    dropout: float = _dropout(0.1)
    positions: str = setting("learned", choices=("learned", "sinusoidal"), help="Position encoding.")
    tie_weights: bool = setting(True, help="Output matrix = token embedding.")
    bias: bool = setting(True, help="Biases in the linear layers and LayerNorms.")

    def num_params(self) -> int:
        w, b = self.width, int(self.bias)
        block = (w + w * b) * 2  # two LayerNorms
        block += 3 * w * w + 3 * w * b + w * w + w * b  # qkv + output projection
        block += 2 * self.mlp_ratio * w * w + self.mlp_ratio * w * b + w * b  # MLP
        n = self.vocab_size * w + (self.context * w if self.positions == "learned" else 0)
        n += self.layers * block + (w + w * b)  # blocks + final LayerNorm
        return n + (0 if self.tie_weights else w * self.vocab_size)

    def train_flops_per_token(self) -> float:
        """Training FLOPs per token as nanoGPT's ``estimate_mfu`` counts them (PaLM, appendix B):
        6 N + 12 L H Q T, with N the parameters less the position table and H Q = width."""
        n = self.num_params() - (self.context * self.width if self.positions == "learned" else 0)
        return 6.0 * n + 12.0 * self.layers * self.width * self.context

    def validate(self) -> TransformerConfig:
        super().validate()
        if self.width % self.heads:
            raise ConfigError(
                f"{self.heads} heads do not divide width {self.width}; "
                f"use heads that divide it (e.g. {max(h for h in range(1, self.width + 1) if self.width % h == 0 and h <= self.heads)})"
            )
        return self


@dataclass
class MLMConfig(ModelConfig):
    encoder: str = setting("transformer", choices=("transformer", "lstm"), help="Encoder type (lstm: bidirectional).")
    context: int = _context(64, "Sequence length (tokens).")
    layers: int = _dim(4, "Encoder layers.")
    heads: int = _dim(4, "Attention heads (transformer encoder; must divide width).")
    width: int = _dim(128, "Model width (lstm: units per direction).")
    mlp_ratio: int = setting(4, lo=1, hi=64, help="MLP hidden size = mlp_ratio x width.")
    dropout: float = _dropout(0.1)
    mask_prob: float = setting(0.15, lo=0.0, hi=1.0, lo_open=True, hi_open=True, help="Share of tokens masked.")

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


def model_settings(arch: str) -> list[Setting]:
    """Exactly the settings a user may set for ``arch``, in field order, with the arch's defaults
    (torch-free; what the TUI's Model pane, ``seqplay archs NAME`` and ``--set`` use). Left out:
    ``vocab_size`` (the tokenizer decides it), the fields the registry fixes for the arch (an LSTM's
    ``cell``) and the fields only other archs of the same config class use (``nonlinearity`` is the
    RNN's). Each ``Setting`` has name, label, type, default, bounds, choices and help (``to_dict()``)."""
    info = get_arch(arch)
    defaults = info.make_config().to_dict()
    return [dataclasses.replace(s, default=defaults[s.name]) for s in settings_of(info.config_cls)
            if s.name != "vocab_size" and s.name not in info.defaults and (s.archs is None or arch in s.archs)]


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
