"""The background worker: how the app (and ``seqplay train --worker``) reaches the engine.

  protocol  commands in, events out: small frozen dataclasses (torch-free)
  client    WorkerClient: spawns the worker process, sends commands, reads events (torch-free)
  process   the worker's main loop, inside the child process (imports torch there only)

Contract: the app talks to the engine through this package for everything torch-bound.
"""
