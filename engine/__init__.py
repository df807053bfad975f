"""seqplay's engine: everything that computes, laid out by the path data takes.

  data/       text -> token ids (textio, tokenizers, sources, pairs)              (no torch)
  models/     the model family behind one interface; registry of architectures (registry: no torch)
  training/   config, the trainer loop, distributed training
  generation/ sampling settings, logit processors, streaming/beam/seq2seq/MLM decoding
  runs/       run folders and checkpoints
  worker/     protocol, client and the worker process the app talks to
  insight/    looking inside models (gradients, attention, gates, surprisal, tables)
  device.py   device, precision and thread choice; errors.py: SeqplayError and friends

Importing ``engine`` is cheap: torch is imported only by the modules that compute. The UI imports only
torch-free modules (``engine.worker.protocol``, ``engine.worker.client``, ``engine.training.config``,
``engine.errors``, ``engine.data.*``, ``engine.models.registry``, ``engine.runs.folders``).
"""
