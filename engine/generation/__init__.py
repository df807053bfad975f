"""Stage 4, generation: from a trained model and a prompt to tokens.

  settings    SamplingSettings: the one description of every sampling control and its default
  processors  logit processors (temperature, top-k/p, penalties, ...) applied in one chain
  generate    streaming generation with the KV cache / carried state, beam search, seq2seq decoding,
              masked-LM fill-in

Contract: every sampler and decoder in seqplay lives here; training samples, the CLI, the worker and
the insight analyses call these functions and never re-implement them.
"""
