"""``edtalk train``: run the paper's training stages and build the demo model (thin layer over training/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from edtalk_cli.errors import EdtalkError

if TYPE_CHECKING:
    from torch import nn

app = typer.Typer(
    help="Train EDTalk in the paper's stages (0: E/G, 1: mouth-pose, 2: expression, 3: Audio2Lip).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("stage")
def stage(
    config: Path = typer.Argument(..., help="Training config YAML (see configs/train/)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory (checkpoints, losses.jsonl, samples/)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/latest.pt."),
    init: str | None = typer.Option(
        None, "--init", help="Checkpoint of the previous stage (overrides the config)."
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", help="Total iterations (overrides the config)."
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Stop and save after this wall time."
    ),
    data: str | None = typer.Option(None, "--data", help="'synthetic' or a dataset root (docs/dataset.md)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    data_workers: int | None = typer.Option(
        None,
        "--data-workers",
        help="Processes making batches ahead (default: 1 on a CPU with a spare core, up to 8 on a GPU).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run (or resume) one training stage."""
    from edtalk_cli.training import load_config, train
    from edtalk_cli.training.trainer import describe

    overrides = {
        "init": init,
        "iterations": iterations,
        "max_minutes": max_minutes,
        "data": data,
        "device": device,
        "data_workers": data_workers,
    }
    cfg = load_config(config, overrides)
    console = Console(stderr=True)
    console.print(f"{describe(cfg)} -> {out}")
    result = train(cfg, out, resume=resume, progress=not quiet)
    note = " (stopped at --max-minutes)" if result.stopped_early else ""
    terms = ", ".join(f"{k} {v:.4f}" for k, v in result.last_terms.items())
    Console().print(f"{result.checkpoint}: {result.step} iterations in {result.seconds:.0f} s{note}; {terms}")


@app.command("export")
def export(
    generator: Path = typer.Option(..., "--generator", help="Stage-2 (EDTalk.pt) or stage-1 checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Weights directory to write (safetensors + presets)."),
    audio2lip: Path | None = typer.Option(None, "--audio2lip", help="Stage-3 checkpoint (Audio2Lip.pt)."),
    presets: bool = typer.Option(
        True, "--presets/--no-presets", help="Compute the 8 emotion presets (full model)."
    ),
    identities: int = typer.Option(12, "--identities", help="Identities per emotion for the presets."),
    preset_source: str = typer.Option(
        "auto",
        "--preset-source",
        help="encoder (mean expression coefficients of rendered prototype faces), factors (the "
        "prototypes' exact factors; models trained with weights.anchor), auto (factors when the "
        "checkpoint was trained with the anchor) or fitted (auto's presets, then fitted so that "
        "this model renders the prototype faces of training identities; about 2 s per identity "
        "and preset at 64 px on one CPU thread).",
    ),
    calibrate_expression: bool = typer.Option(
        False,
        "--calibrate-expression/--no-calibrate-expression",
        help="Undo the shrinkage of the expression readout of a model trained with weights.anchor "
        "(variance matching on training identities, folded into exp_fc), so reference clips "
        "drive emotions at full strength.",
    ),
) -> None:
    """Convert trained checkpoints to a weights directory that `edtalk render` loads."""
    from functools import partial

    import torch

    from edtalk_cli.training import load_generator, read_training_checkpoint
    from edtalk_cli.training.evaluate import anchored_presets, emotion_presets
    from edtalk_cli.training.export import export_weights

    if preset_source not in ("auto", "encoder", "factors", "fitted"):
        raise EdtalkError(
            f"--preset-source must be auto, encoder, factors or fitted, got {preset_source!r}",
            hint="auto picks factors for models trained with weights.anchor",
        )
    torch.set_num_threads(1)
    table = None
    transform = None
    source = f"edtalk train export {generator.name}"
    if presets or calibrate_expression:
        gen = load_generator(generator)
        args = read_training_checkpoint(generator).get("args") or {}
        anchored = float((args.get("weights") or {}).get("anchor", 0.0)) > 0
    if calibrate_expression:
        if not (hasattr(gen, "exp_fc") and anchored):
            raise EdtalkError(
                f"--calibrate-expression needs a full model trained with weights.anchor; {generator} is not one",
                hint="drop --calibrate-expression",
            )
        from edtalk_cli.training.calibration import (
            fold_expression_calibration,
            measure_expression_calibration,
        )

        calibration = measure_expression_calibration(gen, gen.config.size)
        transform = partial(fold_expression_calibration, gen=gen, calibration=calibration)
        gen.load_state_dict(transform(gen.state_dict()))  # encoder-read presets see the calibrated model
        source = f"{source}; {calibration.describe()}"
        Console().print(calibration.describe())
    if presets and hasattr(gen, "exp_fc"):
        if preset_source == "factors" and not anchored:
            raise EdtalkError(
                f"{generator} was not trained with weights.anchor, so its expression "
                "coefficients are not the factors",
                hint="use --preset-source encoder",
            )
        if preset_source == "factors" or (preset_source in ("auto", "fitted") and anchored):
            table = anchored_presets(gen)
        else:
            table = emotion_presets(gen, gen.config.size, identities=identities)
        if preset_source == "fitted":
            table = _fit_presets(gen, table, anchored, identities)
    written = export_weights(generator, audio2lip, out, table, source=source, transform=transform)
    for path in written:
        Console().print(str(path))


def _fit_presets(gen: nn.Module, table: dict, anchored: bool, identities: int) -> dict:
    """``table`` fitted to ``gen``'s rendering (anchored models: only the 7 anchored coefficients move)."""
    from rich.progress import Progress

    from edtalk_cli.training.evaluate import anchored_preset_columns, fitted_presets

    columns = anchored_preset_columns(gen) if anchored else list(range(gen.config.exp_dim))
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("fitting presets", total=len(table))
        return fitted_presets(
            gen, gen.config.size, table, columns, identities=identities, progress=lambda _: bar.advance(task)
        )


@app.command("evaluate")
def evaluate(
    generator: Path = typer.Option(
        ..., "--generator", help="Generator checkpoint (.pt) or weights directory."
    ),
    audio2lip: Path | None = typer.Option(
        None, "--audio2lip", help="Audio2Lip checkpoint or weights directory."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
    identities: int = typer.Option(8, "--identities", help="Held-out identities for self-reenactment."),
    expression_ceiling: bool = typer.Option(
        False,
        "--expression-ceiling",
        help="Also test whether the decoder can render expressions at all (full model; ~1.5 min at 64 px on a CPU).",
    ),
) -> None:
    """Measure a trained model on held-out synthetic identities (PSNR, emotion and lip-sync probes, presets)."""
    import json

    import torch

    from edtalk_cli.training.evaluate import (
        emotion_presets,
        encoder_emotion_probe,
        expression_readout,
        expression_render_ceiling,
        lip_sync_correlation,
        preset_separation,
        reconstruction_psnr,
    )

    torch.set_num_threads(1)
    gen = _load_gen(generator)
    size = gen.config.size
    report: dict[str, object] = {"self_reenactment_neutral": reconstruction_psnr(gen, size, identities)}
    report["self_reenactment_emotional"] = reconstruction_psnr(gen, size, identities, emotions="all")
    full = hasattr(gen, "exp_fc")
    if expression_ceiling and not full:
        raise EdtalkError(
            f"--expression-ceiling needs a full generator with an expression bank; {generator} is lip+pose only",
            hint="pass a stage-2 checkpoint (EDTalk.pt) or drop --expression-ceiling",
        )
    report["encoder_emotion_probe"] = encoder_emotion_probe(gen, size)
    if full:
        report["preset_nearest_accuracy"] = preset_separation(gen, emotion_presets(gen, size), size)
        report["expression_readout_r"] = expression_readout(gen, size)
        if expression_ceiling:
            report["expression_render_ceiling"] = expression_render_ceiling(gen, size)
    if audio2lip is not None:
        report["lip_sync"] = lip_sync_correlation(gen, _load_a2l(audio2lip), size)
    text = json.dumps(report, indent=2)
    Console().print(text)
    if json_out is not None:
        json_out.write_text(text + "\n", encoding="utf-8")


def _load_gen(path: Path):
    from edtalk_cli.training import load_generator
    from edtalk_cli.weights import load_model

    if path.is_dir():
        return load_model(path, "edtalk")[0]
    if path.suffix == ".pt":
        return load_generator(path)
    return load_model(path)[0]


def _load_a2l(path: Path):
    from edtalk_cli.model import Audio2Lip
    from edtalk_cli.training.trainer import checkpoint_model_config, read_training_checkpoint
    from edtalk_cli.weights import load_model

    if path.suffix != ".pt":
        return load_model(path, "audio2lip")[0]
    ckpt = read_training_checkpoint(path)
    model = Audio2Lip(checkpoint_model_config(ckpt, None))
    model.load_state_dict(ckpt["audio2lip"], strict=True)
    return model.eval()
