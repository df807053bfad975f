"""seqplay's engine: data and tokenizers, the model family, training, sampling, introspection,
checkpoints and the background worker.

Importing ``engine`` is cheap: torch is imported only by the modules that compute
(``engine.models.*``, ``engine.train``, ``engine.generate``, ...). The UI imports only the torch-free
modules: ``engine.protocol``, ``engine.client``, ``engine.config``, ``engine.errors``, ``engine.data``,
``engine.tokenizers``, ``engine.models.registry`` and ``engine.runs`` (listing).
"""
