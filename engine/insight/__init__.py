"""Looking inside models (issue 7): each analysis returns a JSON-ready dict that the CLI prints
(``--json``) or renders with Rich (``engine.insight.render``), and that the TUI renders the same way.

Modules (import them directly; this package imports nothing heavy):
  gradients      ||dL_T/dh_t|| against the distance T - t (vanishing/exploding gradients)   (torch)
  attention      Transformer self-attention maps; seq2seq cross-attention alignment      (torch)
  gates          gate activations and hidden units over a text; unit search by pattern   (torch)
  surprisal      per-token loss over a text; the difference between two runs              (torch)
  table          the perplexity table of the runs on one corpus (+ training a set of archs) (no torch)
  memorization   longest span copied from the training text; n-gram overlap share         (no torch)
  render         Rich renderables for every analysis dict                                 (no torch)
"""
