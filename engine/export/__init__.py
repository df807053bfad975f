"""Export a trained run to the ecosystem: Hugging Face transformers (``hf``) and ONNX (``onnx``).

  hf    the Transformer as a GPT-2 model folder (GPT2LMHeadModel + a transformers tokenizer)
  onnx  the Transformer and the recurrent LMs as an ONNX graph, checked with onnxruntime

Both need optional extras (``pip install 'seqplay[hf]'`` / ``'seqplay[onnx]'``); without them the
export is refused in one line that says what to install.
"""
