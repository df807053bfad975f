"""The Transformer's cached decode step compiled from C (``decode_step.c``), for float32 models on the CPU.

A small model's decode step in torch is about 60 operations whose per-call overhead is most of its time
(0.26 ms for the 0.8M-parameter default); the same equations in one C call take about 0.05 ms. The file
is compiled once per machine with the system's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into
``<seqplay home>/cache/kernels`` and loaded with ctypes. Where there is no compiler, the build fails,
``SEQPLAY_NATIVE=0`` is set, or a tensor is not what the kernel reads (not float32, not contiguous, not
on the CPU, a shape that does not match), ``decode_step(model, cache)`` returns ``None`` and the torch
decode step runs instead: the same tokens, at a fifth of the speed. ``status()`` says which and why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode_step.c")
FLAGS = (["-O3", "-march=native"], ["-O3"])  # tried in order: -march=native is refused by some compilers
_lib: ctypes.CDLL | None = None
_why = ""  # why the library is not loaded ("" until the first attempt)


class _Block(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in
                ("ln1w", "ln1b", "qkvw", "qkvb", "projw", "projb", "ln2w", "ln2b", "upw", "upb", "downw", "downb")]
    _fields_ += [("eps1", ctypes.c_float), ("eps2", ctypes.c_float)]


class _Model(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in
                ("width", "heads", "layers", "hidden", "vocab", "context", "gelu_tanh", "head_rows")]
    _fields_ += [("tok", ctypes.c_void_p), ("pos", ctypes.c_void_p), ("lnfw", ctypes.c_void_p),
                 ("lnfb", ctypes.c_void_p), ("epsf", ctypes.c_float), ("head", ctypes.c_void_p),
                 ("blocks", ctypes.POINTER(_Block))]


def _compiler() -> str | None:
    if os.name != "posix":
        return None
    cc = os.environ.get("CC")
    return shutil.which(cc) if cc else next(filter(None, map(shutil.which, ("cc", "gcc", "clang"))), None)


def _cpu() -> str:
    """What ``-march=native`` compiles for: a library built on one CPU is not loaded on another."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read(1 << 20).splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _build(cc: str, target: Path) -> str:
    """Compile SOURCE into ``target`` (written under a temporary name, then renamed, so two processes
    building at once never load half a file). Returns "" or the reason it failed."""
    err = "no flags tried"
    for flags in FLAGS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            r = subprocess.run([cc, *flags, "-fPIC", "-shared", "-o", tmp, str(SOURCE), "-lm"],
                               capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                os.replace(tmp, target)
                return ""
            err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        except (OSError, subprocess.SubprocessError) as e:
            err = str(e)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return f"{Path(cc).name} failed: {err}"


def cache_folder(create: bool = True) -> Path:
    """Where built kernels are kept: ``<seqplay home>/cache/kernels``."""
    from engine.runs.paths import cache_dir, ensure_dir

    path = cache_dir(create) / "kernels"
    return ensure_dir(path, "the compiled kernels folder") if create else path


def built_file(cc: str, create: bool = True) -> Path:
    """The library built from this source by ``cc`` for this CPU (it may not exist yet; ``create``:
    make its folder)."""
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), cc.encode(), repr(FLAGS).encode(), _cpu().encode()]))
    return cache_folder(create) / f"decode_step-{key.hexdigest()[:20]}.so"


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on first use; ``None`` when it cannot be (``status()`` says why)."""
    global _lib, _why
    if _lib is not None or _why:
        return _lib
    if os.environ.get("SEQPLAY_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _why = "SEQPLAY_NATIVE is off"
        return None
    cc = _compiler()
    if cc is None:
        _why = "no C compiler (set CC)"
        return None
    from engine.errors import SeqplayError

    try:
        target = built_file(cc, create=False)
        if not target.is_file():
            target = built_file(cc)
    except SeqplayError as e:
        _why = str(e)
        return None
    lib = None
    for attempt in range(2):  # a built file that does not load (truncated, say) is built again, once
        if attempt or not target.is_file():
            target.unlink(missing_ok=True)
            _why = _build(cc, target)
            if _why:
                return None
        try:
            lib = ctypes.CDLL(str(target))
            fn = lib.seqplay_decode_step
            break
        except (OSError, AttributeError) as e:
            _why = f"cannot load {target.name}: {e}"
    if lib is None or _why:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(_Model), ctypes.c_int32, ctypes.c_int32] + [ctypes.c_void_p] * 5
    _lib, _why = lib, ""
    return _lib


def status() -> str:
    """One line: whether the compiled decode step is in use, or why not."""
    library()
    return "compiled (decode_step.c)" if _lib is not None else f"torch operations ({_why})"


class DecodeStep:
    """The compiled step bound to one model's tensors; called with a ``KVCache``, it checks the cache's
    tensors once (``KVCache.bound`` keeps their pointers) and runs the step."""

    def __init__(self, fn, model: _Model, blocks, tensors: list, dims: tuple, scratch: int):
        self._fn, self._model, self._blocks, self._tensors = fn, model, blocks, tensors  # keeps them alive
        self._dims, self._scratch = dims, torch.empty(scratch)

    def _bind(self, cache) -> tuple | None:
        """The cache's key and value pointers, or ``None`` when a tensor is not (B, heads, context,
        head_dim) float32 and contiguous on the CPU, for one B."""
        k, v = list(cache.k), list(cache.v)
        if len(k) != len(v) or len(k) != self._dims[0]:
            return None
        B = k[0].size(0) if k[0].dim() == 4 else 0
        if B < 1 or not all(_usable(t, B, *self._dims[1:]) for t in k + v):
            return None
        return (B, (ctypes.c_void_p * len(k))(*[t.data_ptr() for t in k]),
                (ctypes.c_void_p * len(v))(*[t.data_ptr() for t in v]), k + v)

    def __call__(self, idx: torch.Tensor, cache) -> torch.Tensor | None:
        """Logits (B, V) for one new token per sequence at ``cache.pos``, its keys and values written into
        the cache; ``None`` (nothing written) when the cache's tensors are not what the kernel reads."""
        bound = cache.bound
        if bound is None or any(a is not b for a, b in zip(bound[3], (*cache.k, *cache.v))):
            bound = cache.bound = self._bind(cache)  # first call, or a tensor was replaced
            if bound is None:
                return None
        B, k, v, _ = bound
        if idx.dtype != torch.long or not idx.is_contiguous() or idx.device.type != "cpu":
            idx = idx.to("cpu", torch.long).contiguous()
        if idx.numel() != B:
            raise ValueError(f"{idx.numel()} tokens for a cache of {B} sequences")
        out = torch.empty(B, self._model.head_rows)
        rc = self._fn(ctypes.byref(self._model), B, cache.pos, idx.data_ptr(), k, v, out.data_ptr(),
                      self._scratch.data_ptr())
        if rc:
            raise IndexError("a token id is outside the vocabulary" if rc == 1
                             else f"position {cache.pos} is outside the context")
        return out


def _usable(t: torch.Tensor | None, *shape: int, optional: bool = False) -> bool:
    """``t`` is a contiguous float32 CPU tensor of ``shape`` (or absent, where ``optional``: a bias)."""
    if t is None:
        return optional
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() and tuple(t.shape) == shape


def decode_step(model) -> DecodeStep | None:
    """The compiled step for ``model`` (a ``Transformer``), or ``None`` when the kernel is unavailable or
    a tensor is not what it reads: every tensor's dtype, device, layout and shape is checked against the
    model's own dimensions before a pointer is taken (and each cache's, before its first step)."""
    if library() is None:
        return None
    c = model.config
    tok, head = model.tok.weight, model.head.weight
    pos = model.pos.weight if c.positions == "learned" else model.pos_table
    if tok.dim() != 2 or pos.dim() != 2 or head.dim() != 2:
        return None
    if not len(model.blocks):
        return None
    (V, C), T, H, F = tok.shape, pos.size(0), c.heads, model.blocks[0].mlp[0].weight.size(0)
    if not (C > 0 and H > 0 and C % H == 0 and T > 0):
        return None
    lnf = model.ln_f
    checks = [_usable(tok, V, C), _usable(pos, T, C), _usable(head, head.size(0), C), _usable(lnf.weight, C),
              _usable(lnf.bias, C, optional=True)]
    blocks, tensors = (_Block * len(model.blocks))(), [tok, pos, head, lnf.weight, lnf.bias]
    approx = {model.blocks[0].mlp[1].approximate}
    for i, b in enumerate(model.blocks):
        ln1w, ln1b, eps1, qkvw, qkvb, projw, projb, ln2w, ln2b, eps2, upw, upb, act, downw, downb = b.step_weights()
        bias = dict(optional=True)
        checks += [_usable(ln1w, C), _usable(ln1b, C, **bias), _usable(qkvw, 3 * C, C), _usable(qkvb, 3 * C, **bias),
                   _usable(projw, C, C), _usable(projb, C, **bias), _usable(ln2w, C), _usable(ln2b, C, **bias),
                   _usable(upw, F, C), _usable(upb, F, **bias), _usable(downw, C, F), _usable(downb, C, **bias)]
        approx.add(act)
        ts = (ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, upw, upb, downw, downb)
        tensors += ts
        blocks[i] = _Block(*(None if t is None else t.data_ptr() for t in ts), eps1, eps2)
    if not all(checks) or len(approx) != 1 or not approx <= {"none", "tanh"} or T != c.context:
        return None
    m = _Model(C, H, len(model.blocks), F, V, T, int(approx == {"tanh"}), head.size(0), tok.data_ptr(),
               pos.data_ptr(), lnf.weight.data_ptr(), None if lnf.bias is None else lnf.bias.data_ptr(), lnf.eps,
               head.data_ptr(), blocks)
    return DecodeStep(_lib.seqplay_decode_step, m, blocks, tensors, (len(model.blocks), H, T, C // H), 6 * C + F + T)
