"""Run folders and checkpoints: what a run leaves on disk, and reading it back safely.

  folders     create / list / open run folders; run.json and metrics.jsonl (listing is torch-free)
  checkpoint  safetensors + JSON checkpoints: atomic writes, hash-checked loads, never unpickled

Contract: a run folder is untrusted input; loading executes no code and stays inside the folder.
"""
