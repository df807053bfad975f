"""Stage 1, data: from a path or a corpus spec to token ids (torch-free).

  textio      read_text / iter_text_chunks: decoding, line ends, refusing what is not text
  tokenizers  Tokenizer (char | byte | word | bpe): encode, decode, save, load
  sources     resolve_source (file or built-in corpus), prepare (tokenize + cache + split), batchers
  pairs       source<TAB>target pairs for seq2seq: encoding, splitting, collation

Contract: everything here is plain Python/numpy; ids leave this stage as numpy arrays.
"""
