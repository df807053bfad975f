"""Stage 4, generation: from a trained model and a prompt to tokens.

  settings    SamplingSettings: the one description of every sampling control, its default and bounds;
              the chain of stages as an ordered list; presets
  processors  the stages (temperature, top-k/p, penalties, DRY, XTC, Mirostat, ...), the history they
              read, and the inverse-CDF draw from one random stream
  streaming   token-by-token generation for language models (exact by default; KV cache / carried state)
  beams       beam search with the chain's history stages, stop strings and end tokens
  decoders    seq2seq (the one greedy decoder, sampling, beams) and masked-LM fill-in
  compare     same-randomness A/B of two settings or two models
  lab         the distribution before and after each stage at one position
  jobs        the worker's side of the generation commands
  generate    one import for all of the above

Contract: every sampler and decoder in seqplay lives here; training samples, the CLI, the worker and
the insight analyses call these functions and never re-implement them. docs/sampling.md documents
each control with its reference and formula.
"""
