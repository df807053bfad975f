"""``seqplay export RUN --format hf|onnx --out DIR``: hand a trained model to other tools.

``hf`` writes a folder Hugging Face transformers loads as it is (the Transformer as GPT2LMHeadModel,
with its tokenizer), so ``pipeline("text-generation", model=DIR)`` continues text as seqplay does.
``onnx`` writes ``model.onnx`` for the Transformer and the recurrent LMs. Each export is reloaded and
its logits compared with seqplay's before the command reports success (``max_abs_diff``). RUN may be
a run, a checkpoint file or ``RUN@STEP`` (a snapshot). An existing folder is only overwritten when it
holds an earlier seqplay export.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

MARKERS = {"hf": "seqplay_export.json", "onnx": "export.json"}


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run")
@click.option("--format", "fmt", type=click.Choice(["hf", "onnx"]), default="hf", show_default=True,
              help="hf: a transformers GPT-2 folder; onnx: model.onnx checked with onnxruntime.")
@click.option("--out", "out", default=None, help="Folder to write (default: ./<run name>-<format>).")
@click.option("--prompt", "-p", default="the ", show_default=True, help="Text the check compares logits on (hf).")
@click.option("--json", "as_json", is_flag=True, help="Print the export summary as JSON.")
def export(run: str, fmt: str, out: str | None, prompt: str, as_json: bool) -> None:
    """Export RUN (a run, checkpoint or RUN@STEP) to Hugging Face transformers or ONNX."""
    from engine.errors import ExportError

    if out is None:
        base = Path(run.rpartition("@")[0] or run)
        out = f"{(base.stem if base.suffix in ('.json', '.safetensors') else base.name) or 'run'}-{fmt}"
    target = Path(out)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / MARKERS[fmt]).exists())):
        raise ExportError(f"{target} exists and is not an earlier seqplay {fmt} export; choose another --out")

    import torch

    from engine.runs.checkpoint import load_model

    torch.set_num_threads(1)
    loaded = load_model(run)
    if fmt == "hf":
        from engine.export.hf import check_expressible, export_hf

        check_expressible(loaded.meta)  # refuse before anything is written
        summary = export_hf(loaded, target, probe=prompt)
    else:
        from engine.export.onnx import export_onnx

        summary = export_onnx(loaded, target)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"wrote {target} ({fmt}, step {summary.get('step')}): logits match seqplay within "
               f"{summary['max_abs_diff']:.1e}; export took {summary['export_seconds']:.1f} s")
    if fmt == "hf":
        click.echo(f'load it with: transformers.pipeline("text-generation", model="{target}")')
