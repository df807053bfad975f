"""Stage 3, training: from a TrainConfig to a run folder full of checkpoints and metrics.

  config       TrainConfig: every training setting, its bounds and its validation (torch-free)
  trainer      Trainer: the training loop, optimizers, schedules, evaluation, guard rails
  distributed  data-parallel training over N processes (DDP: gloo on CPU, NCCL on GPUs)

Contract: the Trainer reports only through protocol events (``engine.worker.protocol``); user-fixable
problems become an ErrorEvent, never an exception.
"""
