"""One import for everything generation offers (the modules that implement it are named beside each).

    streaming  Generation, stream, generate_text, TextStream, lm_window, start_ids   (language models)
    beams      beam_search, Beam
    decoders   greedy_decode, seq2seq_decode, Seq2SeqGeneration, fill_blanks, BlankFilling, split_blanks
    compare    compare, CompareResult                                              (same-randomness A/B)
    lab        stage_view                                                          (the sampler lab's data)
    jobs       GenerationJobs                                                      (the worker's side)
"""

from __future__ import annotations

from engine.generation.beams import Beam, beam_loop, beam_score, beam_search
from engine.generation.decoders import (
    BLANKS,
    BlankFilling,
    FilledBlank,
    Seq2SeqGeneration,
    TaskGeneration,
    fill_blanks,
    greedy_decode,
    seq2seq_decode,
    seq2seq_source,
    split_blanks,
)
from engine.generation.jobs import GenerationJobs
from engine.generation.processors import SamplingSettings, TokenChooser
from engine.generation.streaming import (
    APPROXIMATE_NOTE,
    WINDOWS,
    Generation,
    Stepped,
    TextStream,
    generate_text,
    lm_window,
    model_device,
    start_ids,
    stream,
)

__all__ = [
    "APPROXIMATE_NOTE", "BLANKS", "WINDOWS", "Beam", "BlankFilling", "FilledBlank", "Generation", "GenerationJobs",
    "SamplingSettings", "Seq2SeqGeneration", "Stepped", "TaskGeneration", "TextStream", "TokenChooser", "beam_loop",
    "beam_score", "beam_search", "fill_blanks", "generate_text", "greedy_decode", "lm_window", "model_device",
    "seq2seq_decode", "seq2seq_source", "split_blanks", "start_ids", "stream",
]
