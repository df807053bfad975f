"""Checkpoints: atomic pairs, hash verification, never unpickling untrusted files."""

from __future__ import annotations

import json
import pickle
import zipfile

import pytest
import torch

from engine.errors import CheckpointError
from engine.runs.checkpoint import atomic_write_bytes, load_model, read_checkpoint, save_checkpoint
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, tiny_config

MARKER = "/tmp/seqplay_pwned_marker"


class _Payload:
    """Unpickling this runs ``open(MARKER, 'w')`` -- the attack a pickle loader would suffer."""

    def __reduce__(self):
        return (open, (MARKER, "w"))


@pytest.fixture
def trained_run(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=4, eval_every=4), Recorder()).run()
    return tmp_path / "runs" / fin.run_dir.rsplit("/", 1)[-1]


def test_load_model_round_trip(trained_run):
    loaded = load_model(trained_run)
    x = torch.randint(0, loaded.model.config.vocab_size, (1, 8))
    again = load_model(trained_run / "checkpoints" / "best.json")
    assert torch.equal(loaded.model(x)[0], again.model(x)[0])
    assert loaded.tokenizer.vocab_size == loaded.model.config.vocab_size


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(fh, data):
        fh.write(data[:1])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.runs.checkpoint._write_file", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new content")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind


def _hijack(json_path, data: bytes):
    """Replace a checkpoint's tensors with ``data`` and make the JSON's hash agree (a careful attacker)."""
    import hashlib

    meta = json.loads(json_path.read_text())
    (json_path.parent / meta["tensors_file"]).write_bytes(data)
    meta["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    meta["tensors_bytes"] = len(data)
    json_path.write_text(json.dumps(meta))


def test_pickle_renamed_safetensors_is_refused_and_never_run(trained_run, tmp_path):
    import os

    if os.path.exists(MARKER):
        os.unlink(MARKER)
    best = trained_run / "checkpoints" / "best.json"
    _hijack(best, pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_model(best)
    assert not os.path.exists(MARKER)


def test_torch_save_zip_is_refused(trained_run, tmp_path):
    blob = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, blob)
    assert zipfile.is_zipfile(blob)
    best = trained_run / "checkpoints" / "best.json"
    _hijack(best, blob.read_bytes())
    with pytest.raises(CheckpointError):
        load_model(best)


def test_altered_tensors_fail_the_hash(trained_run):
    best = trained_run / "checkpoints" / "best.json"
    meta = json.loads(best.read_text())
    tensors = best.parent / meta["tensors_file"]
    data = bytearray(tensors.read_bytes())
    data[-5] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        read_checkpoint(best)


def test_absurd_config_refused_before_allocation(trained_run, monkeypatch):
    best = trained_run / "checkpoints" / "best.json"
    meta = json.loads(best.read_text())
    meta["model_config"]["width"] = 60_000
    meta["model_config"]["layers"] = 60_000
    best.write_text(json.dumps(meta))

    def no_build(*a, **k):
        raise AssertionError("a model class was instantiated")

    monkeypatch.setattr("engine.models.registry.model_class", no_build)
    with pytest.raises(CheckpointError, match="cannot be built"):
        load_model(best)


def test_not_a_checkpoint_json(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a seqplay checkpoint"):
        read_checkpoint(bad)
    bad.write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        read_checkpoint(bad)


def test_tensors_file_cannot_point_outside_the_folder(tmp_path):
    path = save_checkpoint(tmp_path / "c.json", {"a": torch.ones(2)}, {"x": 1})
    meta = json.loads(path.read_text())
    meta["tensors_file"] = "../../etc/passwd"
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no valid tensors file"):
        read_checkpoint(path)
