"""Run folders and checkpoints: what a run leaves on disk, and reading it back safely.

  paths       the home and runs folders, finding a run; the jail every run file is opened through
  checkpoint  safetensors + JSON checkpoints: atomic writes, hash- and size-checked loads, never unpickled
  checks      a checkpoint's tensors and state checked against the live model/optimizer/RNG/batcher
  folders     create / lock / list run folders; run.json and metrics.jsonl (listing is torch-free)

Imports go one way: paths <- checkpoint <- checks, folders (no circle).
Contract: a run folder is untrusted input; loading executes no code, opens only regular files inside
the folder (no links, FIFOs or devices), reads at most what the checkpoint declares, and writes only
inside the folder and the cache.
"""
