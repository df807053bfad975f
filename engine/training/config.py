"""Training configuration: one torch-free dataclass shared by the CLI, the TUI and the worker.

``TrainConfig.to_dict()`` is what ``StartTraining`` carries and what a run folder's ``config.json``
holds. Model hyper-parameters live in ``model`` (a dict of overrides of the architecture's config
dataclass, see ``engine.models.registry``); the CLI's ``--layers/--width/--heads/--context/--dropout``
map onto fields of the same name. Every field carries its type, default, bounds and help
(``engine.settings``); ``validate()`` checks them all, so the CLI, the app and a saved or hand-written
config refuse the same values with the same words.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.settings import check_fields, setting, strict_from_dict

__all__ = ["TrainConfig", "strict_from_dict", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "TOKENIZERS"]

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "plateau")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TOKENIZERS = ("char", "byte", "word", "bpe", "whitespace")
COMPILE = ("auto", "on", "off")

# Documented bounds (docs/hardening.md): beyond them a run cannot work or would not finish.
MAX_SEED = 2**32 - 1  # the range numpy's and Hugging Face's set_seed accept; torch takes it too
MAX_THREADS = 1024  # torch crashed creating 1,000,000 threads; choose_threads also caps at the cores
MAX_VOCAB = 1_000_000  # the Rust BPE trainer aborted at 10^9
MAX_GRAD_ACCUM = 1024  # micro-batches per step (10^9 hung in the first step)
MAX_STEPS = 10**9
MAX_SECONDS = 10**7  # ~116 days
MAX_BATCH = 2**20
MAX_CONTEXT = 2**20


@dataclass
class TrainConfig:
    # data
    source: str = setting("grammar", help="A text file or a built-in corpus spec (see `seqplay corpora`).")
    tokenizer: str = setting("char", choices=TOKENIZERS, help="How text becomes ids.")
    vocab_size: int | None = setting(None, lo=2, hi=MAX_VOCAB, none_means="the tokenizer's default",
                                     help="Vocabulary size for the bpe/word tokenizers.")
    val_fraction: float = setting(0.1, lo=0.0, hi=0.9, lo_open=True, hi_open=True,
                                  help="Share of the text (its end) held out for validation.")
    # model
    arch: str = setting("transformer", help="Model architecture (see `seqplay archs`).")
    model: dict[str, Any] = setting(default_factory=dict, help="Overrides of the architecture's settings.")
    # optimisation
    optimizer: str = setting("adamw", choices=OPTIMIZERS, help="PyTorch optimizer.")
    lr: float | None = setting(None, lo=0.0, lo_open=True, none_means="the architecture's default",
                               label="learning rate", help="Learning rate (default: the architecture's).")
    schedule: str = setting("cosine", choices=SCHEDULES, help="cosine = warmup + cosine; plateau = halve on plateau.")
    warmup: int = setting(100, lo=0, hi=MAX_STEPS, help="Warmup steps (cosine/plateau).")
    min_lr_ratio: float = setting(0.1, lo=0.0, hi=1.0, help="Cosine schedule: final lr as a share of the peak.")
    clip: float | None = setting(1.0, lo=0.0, lo_open=True, none_means="no clipping",
                                 help="Clip the global gradient norm to this (0 on the CLI: off).")
    weight_decay: float | None = setting(None, lo=0.0, none_means="0.1 for AdamW",
                                         help="AdamW's decoupled weight decay (default 0.1); refused for the other "
                                         "optimizers (use --l2).")
    l2: float = setting(0.0, lo=0.0, help="L2 penalty added to the gradient (sgd, adam, rmsprop, adagrad; "
                        "refused for adamw, whose decay is --weight-decay).")
    momentum: float = setting(0.9, lo=0.0, hi=1.0, hi_open=True, help="SGD/RMSprop momentum.")
    batch_size: int = setting(32, lo=1, hi=MAX_BATCH, help="Sequences per micro-batch.")
    context: int | None = setting(None, lo=1, hi=MAX_CONTEXT, none_means="the model's default",
                                  help="What the model sees: attention window (transformer, mlm), the MLP's n-token "
                                  "window (it trains on windows of max(64, 4n) tokens), truncated-BPTT length for RNNs, "
                                  "longest sequence for seq2seq (n-gram: use --order).")
    grad_accum: int = setting(1, lo=1, hi=MAX_GRAD_ACCUM, help="Micro-batches per optimisation step.")
    # budget (None: unlimited); training stops at whichever comes first
    steps: int | None = setting(2000, lo=1, hi=MAX_STEPS, none_means="no step limit",
                                help="Step budget (default 2000, or unlimited with --time).")
    time_budget: float | None = setting(None, lo=0.0, lo_open=True, hi=MAX_SECONDS, none_means="no time limit",
                                        flag="--time", label="time budget",
                                        help="Time budget: seconds of wall time of the run (evaluations and checkpoints "
                                        "included); with cosine, the elapsed fraction of it drives the schedule.")
    # evaluation, samples, checkpoints
    eval_every: int = setting(200, lo=1, hi=MAX_STEPS, help="Evaluate every N steps.")
    eval_batches: int | None = setting(None, lo=1, hi=10_000, none_means="the whole validation split",
                                       help="Evaluate on a sample of N validation batches instead of the whole split "
                                       "(the sample size is shown with every figure).")
    sample_every: int = setting(200, lo=0, hi=MAX_STEPS, help="Print a sample every N steps (0: never).")
    sample_tokens: int = setting(200, lo=0, hi=100_000, help="Tokens per in-training sample.")
    checkpoint_every: int | None = setting(None, lo=1, hi=MAX_STEPS, none_means="at every evaluation",
                                           help="Checkpoint every N steps (default: at each evaluation).")
    keep_last: int = setting(3, lo=1, hi=10_000, help="Step checkpoints kept (plus the best).")
    snapshot_base: int = setting(50, lo=0, hi=MAX_STEPS, flag="--snapshot-base",
                                 help="Time machine: model snapshots at steps 0, b, 2b, 4b, ... plus the last and the "
                                 "best (0: no snapshots).")
    # machinery
    device: str = setting("auto", pattern=r"(?i)auto|cpu|mps|cuda(:\d+)?", help="auto, cpu, cuda, cuda:N or mps",
                          advice="e.g. auto")
    precision: str = setting("auto", choices=PRECISIONS, help="Autocast precision.")
    compile: str = setting("auto", choices=COMPILE, help="torch.compile the model.")
    threads: int | None = setting(None, lo=1, hi=MAX_THREADS, none_means="the idle cores",
                                  help="Torch threads (default: the idle cores; never more than the cores).")
    seed: int = setting(1337, lo=0, hi=MAX_SEED, help="Random seed (initialisation, batches, samples).")
    runs_dir: str | None = setting(None, none_means="$SEQPLAY_HOME/runs or the user data dir",
                                   help="Where run folders go (default: $SEQPLAY_HOME/runs or the user data dir).")
    run_name: str | None = setting(None, none_means="a generated name", help="Name of the run folder.")
    tensorboard: bool = setting(False, help="Also write TensorBoard event files (needs tensorboard installed).")
    auto_rollback: bool = setting(False, help="On NaN/inf loss: reload the last good checkpoint, halve the lr, go on.")
    nproc: int = setting(1, lo=1, hi=256, help="Data-parallel processes (DDP: gloo on CPU, NCCL on GPUs).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return strict_from_dict(cls, data, "training setting")

    def validate(self) -> TrainConfig:
        """Refuse settings that cannot work, before anything is allocated: every field against its
        type and bounds (``engine.settings``), then the checks that involve more than one field."""
        check_fields(self)
        from engine.models.registry import get_arch
        from engine.training.optim import decay_settings

        get_arch(self.arch)
        decay_settings(self)  # a regulariser the optimizer does not define is refused (see engine.training.optim)
        return self
