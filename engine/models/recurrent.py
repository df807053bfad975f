"""Recurrent language models: Elman RNN, UGRNN, GRU and LSTM, stacked, with one shared frame.

    x_t = E[w_t]                                  embedding (dropout)
    h^l_t = Cell(h^l_{t-1}, h^{l-1}_t)            per layer l, h^0_t = x_t (+ h^{l-1}_t if residual)
    P(w_{t+1} | w_{<=t}) = softmax(U h^L_t + c)   U = E when tie_weights (embed == width)
    output="adaptive" (Grave et al. 2017, ``nn.AdaptiveLogSoftmaxWithLoss``): the head scores a
    shortlist of frequent ids plus one logit per tail cluster; P(w) = P(cluster) P(w | cluster), each
    tail through a narrower projection (ids must be frequency-sorted: word/whitespace tokenizers).

Cells, in the notes' notation (sigma = logistic, * = Hadamard product):
    rnn:   h_t = f(W_h h_{t-1} + W_x x_t + b),  f = tanh | relu  (identity_init: W_h = I, b = 0)
    ugrnn: R_t = tanh(W^{h,R} h_{t-1} + W^{x,R} x_t - B^R)
           G_t = sigma(W^{h,G} h_{t-1} + W^{x,G} x_t - B^G)
           h_t = G_t * h_{t-1} + (1 - G_t) * R_t
    gru:   r = sigma(W_r x + U_r h + b_r); z = sigma(W_z x + U_z h + b_z)
           n = tanh(W_n x + b_n + r * (U_n h + b'_n)); h_t = (1 - z) * n + z * h_{t-1}
    lstm:  i, f, o = sigma(W_{i,f,o} x + U_{i,f,o} h + b); g = tanh(W_g x + U_g h + b_g)
           c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)        (b_f: torch's init, + forget_bias = 0)

Two paths compute the same numbers: ``forward`` uses torch's fused kernels (nn.RNN/GRU/LSTM, cuDNN on
GPU; UGRNN: one batched input projection, then a scripted loop), ``forward_steps`` walks cell by cell
and returns every hidden state and gate (``StepTrace``) for introspection.

State: a tuple of (layers, B, H) tensors, ``(h,)`` or ``(h, c)`` for the LSTM.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.models.base import SeqModel, StepTrace, lm_loss
from engine.models.fused_ce import FUSED_HEAD_MIN_VOCAB, linear_cross_entropy


def _ugrnn_scan(pre: Tensor, h: Tensor, w_h: Tensor) -> tuple[Tensor, Tensor]:
    """UGRNN recurrence over precomputed input terms ``pre`` (B, T, 2H) (= W^x x_t - B); -> (hs, h_T).

    ``lerp(R, h, G) = R + G (h - R) = G h + (1 - G) R``: one fused op for the update."""
    hidden = h.size(-1)
    w_t = w_h.t()
    outs = []
    for t in range(pre.size(1)):
        a = torch.addmm(pre[:, t], h, w_t)
        h = torch.lerp(torch.tanh(a[:, :hidden]), h, torch.sigmoid(a[:, hidden:]))
        outs.append(h)
    return torch.stack(outs, 1), h


_SCANS: dict[str, object] = {"eager": _ugrnn_scan}
_scan_mode = "eager"  # default; "compile" measured ~2x faster per step on CPU but compiles per sequence length


def set_ugrnn_scan(mode: str) -> str:
    """Choose how the UGRNN loop runs: ``eager`` | ``script`` (TorchScript) | ``compile`` (torch.compile).

    Falls back to ``eager`` (and returns it) when the requested mode cannot be built here."""
    global _scan_mode
    if mode not in _SCANS:
        try:
            _SCANS[mode] = torch.jit.script(_ugrnn_scan) if mode == "script" else torch.compile(_ugrnn_scan, dynamic=True)
        except Exception:
            mode = "eager"
    _scan_mode = mode if mode in _SCANS else "eager"
    return _scan_mode


class UGRNNLayer(nn.Module):
    """One UGRNN layer; rows [0, H) of the weights give R, rows [H, 2H) give G."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.w_x = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.w_h = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(2 * hidden_size))  # B^R, B^G (subtracted, as in the notes)
        bound = 1.0 / math.sqrt(hidden_size)
        nn.init.uniform_(self.w_x, -bound, bound)
        nn.init.uniform_(self.w_h, -bound, bound)
        with torch.no_grad():
            self.bias[hidden_size:] = -1.0  # G starts near sigma(1): remember by default

    def input_terms(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.w_x, -self.bias)  # W^x x_t - B, one matmul over all steps

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.input_terms(x)  # bf16 under autocast: run the loop in that dtype, keep the state's
        try:
            ys, h = _SCANS[_scan_mode](pre, h0[0].to(pre.dtype), self.w_h)
        except Exception:
            if _scan_mode == "eager":
                raise
            set_ugrnn_scan("eager")  # e.g. torch.compile without a working toolchain: fall back cleanly
            ys, h = _ugrnn_scan(pre, h0[0].to(pre.dtype), self.w_h)
        return ys, h.to(h0.dtype).unsqueeze(0)


class RecurrentLM(SeqModel):
    """Shared frame: embedding -> stacked cells (residual, dropout) -> softmax head."""

    recurrent = True
    cell = "rnn"
    gate_names: tuple[str, ...] = ()

    def __init__(self, config):
        if getattr(config, "cell", self.cell) != self.cell:  # the architecture decides the cell
            config = config.replace(cell=self.cell)
        super().__init__(config)
        c = config
        if c.tie_weights and c.embed != c.width:
            raise ConfigError(f"tie_weights needs embed == width (got {c.embed} and {c.width}); set them equal or untie")
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(self._make_layer(c.embed if i == 0 else c.width, c.width) for i in range(c.layers))
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if getattr(c, "output", "softmax") == "adaptive":
            from engine.models.registry import ADAPTIVE_DIV, adaptive_cutoffs

            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(c.width, c.vocab_size, adaptive_cutoffs(c.vocab_size)[:-1],
                                                          div_value=float(ADAPTIVE_DIV))
            self.head = None
        else:
            self.head = nn.Linear(c.width, c.vocab_size)
            if c.tie_weights:
                self.head.weight = self.embed.weight

    # -- per-cell pieces -------------------------------------------------------------------------------
    def _make_layer(self, input_size: int, hidden: int) -> nn.Module:
        raise NotImplementedError

    def _steps(self, layer: nn.Module, x: Tensor, state: tuple[Tensor, ...]):
        """Explicit loop: -> (ys (B,T,H), new layer state, gates dict, cell states or None)."""
        raise NotImplementedError

    @property
    def n_state(self) -> int:
        return 2 if self.cell == "lstm" else 1

    # -- interface -------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
        p = self.embed.weight
        z = torch.zeros(self.config.layers, batch_size, self.config.width, device=device, dtype=p.dtype)
        return tuple(z.clone() for _ in range(self.n_state))

    def _layer_state(self, state: tuple[Tensor, ...], i: int) -> tuple[Tensor, ...]:
        return tuple(s[i : i + 1] for s in state)

    def _run(self, idx: Tensor, state, explicit: bool):
        if state is None:
            state = self.init_state(idx.size(0), idx.device)
        x = self.drop(self.embed(idx))
        new_states, hidden, cells, gates = [], [], [], []
        for i, layer in enumerate(self.layers):
            s = self._layer_state(state, i)
            if explicit:
                y, s, g, cs = self._steps(layer, x, s)
                gates.append(g)
                if cs is not None:
                    cells.append(cs)
                hidden.append(y)
            else:
                y, s = self._fused(layer, x, s)
            if self.config.residual and y.shape == x.shape:
                y = y + x
            x = self.drop(y)
            new_states.append(s)
        dtype = self.embed.weight.dtype  # carried state stays in the weights' dtype (autocast gives bf16)
        new_state = tuple(torch.cat([s[k] for s in new_states], 0).to(dtype) for k in range(self.n_state))
        return x, new_state, hidden, cells, gates

    def _fused(self, layer: nn.Module, x: Tensor, s: tuple[Tensor, ...]):
        y, h = layer(x, s if self.cell == "lstm" else s[0])
        return y, (h if self.cell == "lstm" else (h,))

    def forward(self, idx: Tensor, targets: Tensor | None = None, state=None, use_cache: bool = False):
        """(logits, loss, state). Training on a big vocabulary (>= ``FUSED_HEAD_MIN_VOCAB``, targets
        given, grad enabled) computes the head and the loss together (``linear_cross_entropy``: the
        same loss and gradients, no (B, T, V) logits stored) and returns logits None."""
        x, new_state, *_ = self._run(idx, state, explicit=False)
        if self.adaptive is not None:
            return self._adaptive(x, targets) + (new_state,)
        if targets is not None and self.training and torch.is_grad_enabled() and self.config.vocab_size >= FUSED_HEAD_MIN_VOCAB:
            loss = linear_cross_entropy(x.reshape(-1, x.size(-1)), self.head.weight, self.head.bias, targets.reshape(-1))
            return None, loss, new_state
        logits = self.head(x)
        return logits, lm_loss(logits, targets), new_state

    def _adaptive(self, x: Tensor, targets: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """(log-probabilities as logits, mean NLL over targets != -100). Training skips the (B, T, V)
        log-probabilities: the loss needs only each target's cluster. Runs in float32 (torch's module
        mixes dtypes under autocast)."""
        flat = x.reshape(-1, x.size(-1)).float()
        loss = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            if targets is not None:
                t = targets.reshape(-1)
                keep = t != -100
                loss = self.adaptive(flat[keep], t[keep]).loss
                if self.training and torch.is_grad_enabled():
                    return None, loss
            return self.adaptive.log_prob(flat).view(*x.shape[:-1], -1), loss

    def _logits(self, x: Tensor) -> Tensor:
        return self.head(x) if self.adaptive is None else self._adaptive(x, None)[0]

    def forward_steps(self, idx: Tensor, state=None) -> StepTrace:
        """The explicit cell-by-cell path (same numbers as ``forward``), exposing states and gates."""
        x, new_state, hidden, cells, gates = self._run(idx, state, explicit=True)
        return StepTrace(hidden=hidden, cells=cells, gates=gates, logits=self._logits(x), state=new_state)


def _weights(layer: nn.RNNBase) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0


class RNNLM(RecurrentLM):
    """Elman RNN LM: h_t = f(W_h h_{t-1} + W_x x_t + b), f = tanh | relu."""

    arch = "rnn"
    cell = "rnn"

    def _make_layer(self, input_size: int, hidden: int) -> nn.Module:
        nl = self.config.nonlinearity
        if nl not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {nl!r}")
        layer = nn.RNN(input_size, hidden, nonlinearity=nl, batch_first=True)
        if self.config.identity_init:  # Le, Jaitly & Hinton 2015: start as a perfect memory
            with torch.no_grad():
                layer.weight_hh_l0.copy_(torch.eye(hidden))
                layer.bias_hh_l0.zero_()
                layer.bias_ih_l0.zero_()
        return layer

    def _steps(self, layer, x, s):
        w_ih, w_hh, b_ih, b_hh = _weights(layer)
        f = torch.tanh if self.config.nonlinearity == "tanh" else torch.relu
        pre = torch.matmul(x, w_ih.t()) + b_ih
        h, outs = s[0][0], []
        for t in range(x.size(1)):
            h = f(pre[:, t] + h @ w_hh.t() + b_hh)
            outs.append(h)
        return torch.stack(outs, 1), (h.unsqueeze(0),), {}, None


class UGRNNLM(RecurrentLM):
    """Update-gate RNN LM: h_t = G * h_{t-1} + (1 - G) * R (see the module docstring)."""

    arch = "ugrnn"
    cell = "ugrnn"
    gate_names = ("R", "G")

    def _make_layer(self, input_size: int, hidden: int) -> nn.Module:
        return UGRNNLayer(input_size, hidden)

    def _steps(self, layer, x, s):
        pre, h, H = layer.input_terms(x), s[0][0], layer.hidden_size
        outs, rs, gs = [], [], []
        for t in range(x.size(1)):
            a = pre[:, t] + h @ layer.w_h.t()
            r, g = torch.tanh(a[:, :H]), torch.sigmoid(a[:, H:])
            h = g * h + (1.0 - g) * r
            outs.append(h)
            rs.append(r)
            gs.append(g)
        return torch.stack(outs, 1), (h.unsqueeze(0),), {"R": torch.stack(rs, 1), "G": torch.stack(gs, 1)}, None


class GRULM(RecurrentLM):
    """GRU LM (Cho et al. 2014), torch's gate layout r, z, n."""

    arch = "gru"
    cell = "gru"
    gate_names = ("r", "z", "n")

    def _make_layer(self, input_size: int, hidden: int) -> nn.Module:
        return nn.GRU(input_size, hidden, batch_first=True)

    def _steps(self, layer, x, s):
        w_ih, w_hh, b_ih, b_hh = _weights(layer)
        pre = torch.matmul(x, w_ih.t()) + b_ih
        h, outs, gates = s[0][0], [], {"r": [], "z": [], "n": []}
        for t in range(x.size(1)):
            xr, xz, xn = pre[:, t].chunk(3, -1)
            hr, hz, hn = (h @ w_hh.t() + b_hh).chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1.0 - z) * n + z * h
            outs.append(h)
            for k, v in (("r", r), ("z", z), ("n", n)):
                gates[k].append(v)
        return torch.stack(outs, 1), (h.unsqueeze(0),), {k: torch.stack(v, 1) for k, v in gates.items()}, None


class LSTMLM(RecurrentLM):
    """LSTM LM (Hochreiter & Schmidhuber 1997), torch's gate layout i, f, g, o."""

    arch = "lstm"
    cell = "lstm"
    gate_names = ("i", "f", "g", "o")

    def _make_layer(self, input_size: int, hidden: int) -> nn.Module:
        layer = nn.LSTM(input_size, hidden, batch_first=True)
        b_f = self.config.forget_bias
        if b_f:  # forget-gate bias b_f (Jozefowicz et al. 2015 use 1): remember by default
            with torch.no_grad():
                layer.bias_ih_l0[hidden : 2 * hidden].fill_(b_f)
                layer.bias_hh_l0[hidden : 2 * hidden].zero_()
        return layer

    def _steps(self, layer, x, s):
        w_ih, w_hh, b_ih, b_hh = _weights(layer)
        pre = torch.matmul(x, w_ih.t()) + b_ih
        h, c = s[0][0], s[1][0]
        outs, cells, gates = [], [], {"i": [], "f": [], "g": [], "o": []}
        for t in range(x.size(1)):
            gi, gf, gg, go = (pre[:, t] + h @ w_hh.t() + b_hh).chunk(4, -1)
            i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
            cells.append(c)
            for k, v in (("i", i), ("f", f), ("g", g), ("o", o)):
                gates[k].append(v)
        state = (h.unsqueeze(0), c.unsqueeze(0))
        return torch.stack(outs, 1), state, {k: torch.stack(v, 1) for k, v in gates.items()}, torch.stack(cells, 1)
