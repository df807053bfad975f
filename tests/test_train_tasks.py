"""Training beyond next-token LMs: honest n-gram evaluation, seq2seq and masked-LM training."""

from __future__ import annotations

import numpy as np
import torch

from engine import protocol as P
from engine.config import TrainConfig
from engine.data import prepare
from engine.train import Trainer


def _run(events: list[P.Event] | None = None, **cfg) -> tuple[Trainer, list[P.Event]]:
    events = [] if events is None else events
    base = dict(threads=1, device="cpu", precision="fp32", compile="off", sample_every=0)
    trainer = Trainer(TrainConfig(**{**base, **cfg}), events.append)
    fin = trainer.run()
    assert fin.reason == "done", [e for e in events if isinstance(e, P.ErrorEvent)]
    return trainer, events


def _evals(events: list[P.Event]) -> list[P.EvalMetrics]:
    return [e for e in events if isinstance(e, P.EvalMetrics)]


# ------------------------------------------------------------------------------------------- n-gram
def test_ngram_val_loss_is_the_models_loss_over_the_whole_validation_split():
    source = "grammar:size=30000"
    trainer, events = _run(source=source, arch="ngram", model={"order": 4})
    reported = _evals(events)[-1].val_loss

    from engine.models.registry import build_model, make_config

    data = prepare(source, "char")
    model = build_model("ngram", make_config("ngram", data.tokenizer.vocab_size, order=4))
    model.fit(np.asarray(data.train_ids))
    val = torch.from_numpy(np.asarray(data.val_ids, dtype=np.int64))[None]
    with torch.no_grad():
        _, own, _ = model(val[:, :-1], val[:, 1:])
    assert abs(reported - own.item()) < 1e-4

    _, uni_events = _run(source=source, arch="ngram", model={"order": 1})
    unigram = _evals(uni_events)[-1].val_loss
    assert reported < unigram - 0.5  # context helps a lot on grammatical text
    assert _evals(events)[-1].val_bpc < 2.0  # the bug reported about 3.5 bits/char
