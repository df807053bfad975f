"""Gates and units: what a recurrent model's gates and hidden units do along a text.

The explicit path ``forward_steps`` returns every hidden state h_t, every LSTM cell c_t and every gate
(LSTM i, f, g, o; GRU r, z, n; UGRNN R, G), each (B, T, H). Shown per character: the mean of each gate
over the units, and chosen units' activations (Karpathy et al. 2015 found single cells that track
quotes or the position in a line).

Unit search: the user describes a pattern; it becomes a signal s_t per token (1 inside a match of a
regular expression, or a named feature such as the position in the line), and every unit u is ranked
by |corr(a_u, s)|, the Pearson correlation over the text between its activation and the signal.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from engine.errors import ConfigError
from engine.insight.common import encode_text, model_device, token_strings

# Named patterns: a regex (signal = 1 inside a match) or a function of the text (one value per char).
PRESETS: dict[str, str] = {
    "quotes": r'"[^"\n]*"',
    "parens": r"\([^()\n]*\)",
    "brackets": r"\[[^\[\]\n]*\]",
    "words": r"[A-Za-z]+",
    "digits": r"[0-9]+",
    "upper": r"[A-Z]",
    "line-start": r"(?m)^.{0,5}",
}
CONTINUOUS = ("line-position", "bracket-depth")


def char_signal(text: str, pattern: str) -> np.ndarray:
    """One value per character of ``text`` for a pattern: a preset name, a continuous feature
    (``line-position``: characters since the last newline; ``bracket-depth``: nesting of ([{ ) or a
    regular expression (1.0 inside a match, else 0.0)."""
    n = len(text)
    if pattern == "line-position":
        out, col = np.zeros(n), 0
        for i, ch in enumerate(text):
            out[i] = col
            col = 0 if ch == "\n" else col + 1
        return out
    if pattern == "bracket-depth":
        out, depth = np.zeros(n), 0
        for i, ch in enumerate(text):
            depth += ch in "([{"
            out[i] = depth
            depth = max(0, depth - (ch in ")]}"))
        return out
    regex = PRESETS.get(pattern, pattern)
    try:
        compiled = re.compile(regex)
    except re.error as err:
        raise ConfigError(f"pattern {pattern!r} is not a valid regular expression ({err}); "
                          f"use a regex or one of {', '.join([*PRESETS, *CONTINUOUS])}") from None
    out = np.zeros(n)
    for m in compiled.finditer(text):
        out[m.start() : m.end()] = 1.0
    return out


SUGGESTED = ("quotes", "parens", "brackets", "upper", "digits", "line-start", "words")


def suggest_pattern(text: str, least: float = 0.02, most: float = 0.8) -> str:
    """A preset that suits ``text``: the first of ``SUGGESTED`` that covers between ``least`` and
    ``most`` of its characters (quotes fail on a text without any), else ``line-position``."""
    for name in SUGGESTED:
        share = float(char_signal(text, name).mean()) if text else 0.0
        if least <= share <= most:
            return name
    return "line-position"


def token_signal(tokens: list[str], pattern: str) -> np.ndarray:
    """The character signal averaged over the characters of each token."""
    text = "".join(tokens)
    chars = char_signal(text, pattern)
    out, pos = np.zeros(len(tokens)), 0
    for i, tok in enumerate(tokens):
        out[i] = chars[pos : pos + len(tok)].mean() if tok else 0.0
        pos += len(tok)
    return out


def _trace(model: Any, ids: np.ndarray) -> Any:
    if not hasattr(model, "forward_steps"):
        raise ConfigError(f"a {getattr(model, 'arch', 'model')} has no gates or recurrent units; pick an rnn, ugrnn, gru or lstm run")
    model.eval()
    with torch.no_grad():
        return model.forward_steps(torch.as_tensor(ids, device=model_device(model))[None])


def _unit_tables(trace: Any, layer: int) -> dict[str, np.ndarray]:
    """'h' and (LSTM) 'c' activations of one layer, each (T, H)."""
    tables = {"h": trace.hidden[layer][0].double().cpu().numpy()}
    if trace.cells:
        tables["c"] = trace.cells[layer][0].double().cpu().numpy()
    return tables


def correlations(acts: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``acts`` (T, H) with ``signal`` (T,); 0 for constants."""
    a = acts - acts.mean(axis=0)
    s = signal - signal.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (s * s).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * s[:, None]).sum(axis=0) / denom
    return np.nan_to_num(r, nan=0.0)


def gate_report(model: Any, tokenizer: Any, text: str, layer: int = -1, units: list[str] | None = None,
                pattern: str | None = None, top: int = 5) -> dict[str, Any]:
    """Gate means per token, chosen units (``["h12", "c3"]``), and with ``pattern`` the ``top`` units
    most correlated with it (added to the units shown)."""
    ids = encode_text(tokenizer, text)
    trace = _trace(model, ids)
    n_layers = len(trace.hidden)
    if not -n_layers <= layer < n_layers:
        raise ConfigError(f"layer {layer} does not exist; this model has layers 0..{n_layers - 1}")
    layer = layer % n_layers
    tokens = token_strings(tokenizer, ids)
    tables = _unit_tables(trace, layer)
    width = tables["h"].shape[1]
    gates = {name: np.round(g[0].double().cpu().numpy().mean(axis=1), 4).tolist()
             for name, g in (trace.gates[layer] if trace.gates else {}).items()}
    report: dict[str, Any] = {
        "analysis": "gates",
        "arch": getattr(model, "arch", ""),
        "layer": layer,
        "width": width,
        "tokens": tokens,
        "gates": gates,
        "units": {},
        "search": None,
    }
    chosen = list(units or [])
    if pattern:
        # Match the pattern on the user's text where tokens map onto it (unknown characters decode
        # differently), else on the decoded tokens.
        pieces, pos = tokens, 0
        if sum(len(t) for t in tokens) == len(text):
            pieces = []
            for t in tokens:
                pieces.append(text[pos : pos + len(t)])
                pos += len(t)
        signal = token_signal(pieces, pattern)
        if np.ptp(signal) == 0:
            raise ConfigError(f"pattern {pattern!r} is {'everywhere' if signal.max() else 'nowhere'} in the text; "
                              "pass a text where it both occurs and does not")
        ranked = []
        for kind, acts in tables.items():
            r = correlations(acts, signal)
            ranked += [(float(r[u]), kind, u) for u in range(width)]
        ranked.sort(key=lambda x: -abs(x[0]))
        best = [{"unit": f"{kind}{u}", "corr": round(r, 4)} for r, kind, u in ranked[:top]]
        report["search"] = {"pattern": pattern, "signal": np.round(signal, 4).tolist(), "best": best}
        chosen += [b["unit"] for b in best if b["unit"] not in chosen]
    for name in chosen:
        kind, num = name[:1], name[1:]
        if kind not in tables or not num.isdigit() or int(num) >= width:
            raise ConfigError(f"unit {name!r} does not exist; use h0..h{width - 1}" + (f" or c0..c{width - 1}" if "c" in tables else ""))
        report["units"][name] = np.round(tables[kind][:, int(num)], 4).tolist()
    return report
