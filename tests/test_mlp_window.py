"""The MLP's ``context`` is its n-token window; the trainer feeds it longer windows of max(64, 4n) tokens."""

from __future__ import annotations

import numpy as np
import torch

from engine.models.registry import build_model, make_config
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, tiny_config


def mlp_config(tmp_path, n: int, **kw):
    return tiny_config(tmp_path, arch="mlp", model=dict(embed=8, width=32, dropout=0.0), context=n, **kw)


def test_positions_past_n_see_exactly_the_last_n_tokens():
    torch.manual_seed(0)
    n = 5
    model = build_model("mlp", make_config("mlp", 20, context=n, embed=4, width=16, dropout=0.0)).eval()
    x = torch.randint(0, 20, (2, 40))
    logits, _, _ = model(x)
    for t in (n - 1, n + 3, 39):  # a full window from position n-1 on: same as feeding exactly those n tokens
        alone, _, _ = model(x[:, t - n + 1 : t + 1])
        torch.testing.assert_close(logits[:, t], alone[:, -1])
    short, _, _ = model(x[:, :2])  # positions before n-1 see pads, as when the text starts there
    torch.testing.assert_close(logits[:, :2], short)


def test_mlp_trains_on_long_windows_and_evaluates_on_them(tmp_path):
    rec = Recorder()
    trainer = Trainer(mlp_config(tmp_path, n=4, steps=3, eval_every=3), rec)
    assert trainer.run().reason == "done"
    assert trainer.model.config.context == 4 and trainer.context == 64  # n = 4; window max(64, 16)
    x, y = trainer.task.batcher.next()
    assert x.shape == (4, 64) and np.array_equal(x[:, 1:], y[:, :-1])
    val_loss = rec.of("eval")[-1].val_loss
    # The model's own loss on the same validation windows (evenly spaced 64-token windows).
    val, T, B = trainer.data.val_ids, trainer.context, trainer.config.batch_size
    n_windows = max(1, min(trainer.config.eval_batches * B, (len(val) - 1) // T))
    starts = np.linspace(0, len(val) - 1 - T, n_windows).astype(np.int64)
    w = torch.from_numpy(np.asarray(val[starts[:, None] + np.arange(T + 1)], dtype=np.int64))
    trainer.model.eval()
    with torch.no_grad():
        _, loss, _ = trainer.model(w[:, :-1], w[:, 1:])
    assert abs(float(loss) - val_loss) < 1e-5


def test_context_sets_the_mlp_window_n_and_the_training_window_follows(tmp_path):
    trainer = Trainer(mlp_config(tmp_path, n=32, steps=1), Recorder())
    trainer.setup()
    assert trainer.model.config.context == 32 and trainer.context == 128  # 4n > 64
    assert trainer.model.embed.weight.shape[0] == trainer.model.config.vocab_size + 1  # the pad row
