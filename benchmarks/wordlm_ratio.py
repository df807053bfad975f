"""Interleaved rounds of the word-LM comparison: seqplay's LSTM 2 x 200 word LM (fp32 and the default
precision, through the Trainer's step) against the word_language_model loop re-implementation
(``benchmarks/suite.py: _wlm_reference``) on a split folder, one line per round.

    python benchmarks/wordlm_ratio.py --threads 1 --rounds 3 --steps 6 [--corpus DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import WIKITEXT, _step_rate, _wlm_reference, _wordlm_trainer, resolve_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None, help="split folder (default: $SEQPLAY_SHARED/corpora/wikitext-2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--arch", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--cpu-time", action="store_true", help="time steps in this process' CPU time (a loaded machine)")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    corpus = resolve_corpus(args.corpus, WIKITEXT, "--corpus", folder=True)
    runs = tempfile.mkdtemp(prefix="seqplay-wordlm-")
    fp32 = _wordlm_trainer(corpus, args.arch, "fp32", args.threads, runs)
    auto = _wordlm_trainer(corpus, args.arch, "auto", args.threads, runs)
    for r in range(args.rounds):
        o32 = _step_rate(fp32, args.steps, clock)
        o = _step_rate(auto, args.steps, clock)
        ref = _wlm_reference(args.arch, fp32.model_config.vocab_size, fp32.data.train_ids, args.steps, args.threads, clock)
        print(f"round {r + 1}: seqplay fp32 {o32:.0f} tok/s, seqplay {auto.precision} {o:.0f}, reference {ref:.0f}; "
              f"fp32 ratio {o32 / ref:.2f}x, default-precision ratio {o / ref:.2f}x; "
              f"{'CPU' if args.cpu_time else 'wall'} time; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    from engine.errors import SeqplayError

    try:
        main()
    except SeqplayError as err:
        sys.exit(f"error: {err}")
