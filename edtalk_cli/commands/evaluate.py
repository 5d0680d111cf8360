"""``edtalk eval``: measure a model on held-out synthetic identities (JSON report + contact sheet)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edtalk_cli.defaults import CPU_BATCH_SIZE, GPU_BATCH_SIZE, PRECISION

console = Console(emoji=False)


def evaluate(
    out: Path = typer.Option(
        Path("edtalk-eval"), "--out", "-o", help="Directory for eval.json and contact_sheet.png."
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Weights directory (default: the configured official weights, else the demo model).",
    ),
    model: str = typer.Option("auto", "--model", help="auto, edtalk or lip_pose."),
    system: str = typer.Option(
        "model", "--system", help="model, or ground-truth (the renderer itself: the judges' ceiling)."
    ),
    size: int = typer.Option(
        128, "--size", help="Frame size for --system ground-truth (a model uses its own)."
    ),
    identities: int = typer.Option(4, "--identities", min=1, help="Held-out identities to evaluate."),
    frames: int = typer.Option(50, "--frames", min=8, help="Frames per driving clip (25 fps)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the driving clips."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ... or auto."),
    precision: str = typer.Option(
        PRECISION, "--precision", help="fp32 (TF32 off), tf32, fp64, bf16 or fp16."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Frames rendered per batch (default: {CPU_BATCH_SIZE} on a CPU, {GPU_BATCH_SIZE} on a GPU).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Evaluate on the synthetic world: self- and cross-reenactment, lip sync, leakage, emotion presets.

    Writes OUT/eval.json and OUT/contact_sheet.png (columns: source, mouth driver, pose driver,
    expression driver, ground truth, output) and prints a summary.
    """
    from edtalk_cli.errors import EdtalkError
    from edtalk_cli.evaluation.harness import EvalSettings, write_report
    from edtalk_cli.evaluation.harness import evaluate as run_evaluation
    from edtalk_cli.evaluation.systems import GroundTruthSystem, ModelSystem
    from edtalk_cli.runner.devices import check_precision, default_batch_size, resolve_device

    device = resolve_device(device, option="--device")
    check_precision(precision)
    batch_size = batch_size or default_batch_size([device])
    if system == "model":
        from edtalk_cli.weights.bundle import DEMO_NOTICE, ModelBundle

        bundle = ModelBundle.from_dir(weights, model, device=device)
        if bundle.is_demo:
            console.print(f"[yellow]note:[/] {DEMO_NOTICE}", highlight=False)
        measured = ModelSystem(bundle, device=device, precision=precision, batch_size=batch_size)
    elif system == "ground-truth":
        measured = GroundTruthSystem(size)
    else:
        raise EdtalkError(f"--system must be 'model' or 'ground-truth', got {system!r}")

    settings = EvalSettings(identities=identities, frames=frames, seed=seed)
    columns = (
        TextColumn("eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("identities", total=identities)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=stage)

        report, sheet = run_evaluation(measured, settings, progress)
    json_path, png_path = write_report(report, sheet, out)
    console.print(summary_table(report))
    console.print(f"wrote {json_path} and {png_path}", highlight=False)


def summary_table(report: dict) -> Table:
    """The headline numbers of an evaluation report."""
    table = Table(
        title=f"evaluation of {report['system']} ({report['size']} px, {report['identities']} identities)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("judge floor / baseline", justify="right")
    cross, sync, leak = report["cross_reenactment"], report["lip_sync"], report["leakage"]
    rows = [
        ("self-reenactment PSNR (dB)", report["self_reenactment"]["full"]["psnr"], ""),
        ("self-reenactment SSIM", report["self_reenactment"]["full"]["ssim"], ""),
        ("cross-reenactment PSNR (dB)", cross["full"]["psnr"], f"source copy {cross['psnr_source_copy']}"),
        ("cross-reenactment face detail (output / truth)", cross["face_detail_ratio"], "1.0"),
        (
            "cross mouth / eyes / brows PSNR",
            "{} / {} / {}".format(*(cross[r]["psnr"] for r in ("mouth", "eyes", "brows"))),
            "",
        ),
        ("M-LMD (% of width)", cross["m_lmd_pct_width"], f"{cross['judge_floor_m_lmd_px']} px"),
        ("F-LMD (% of width)", cross["f_lmd_pct_width"], f"{cross['judge_floor_f_lmd_px']} px"),
        (
            "M-LMD / F-LMD against the judged truth (% of width)",
            "{} / {}".format(cross["m_lmd_paired_pct_width"], cross["f_lmd_paired_pct_width"]),
            "0",
        ),
        ("lip sync r (audio-driven)", sync["jaw_r"], sync["judge_floor_jaw_r"]),
    ]
    if "emotion_accuracy" in cross:
        rows.append(
            (
                "emotion accuracy (expression driver)",
                cross["emotion_accuracy"],
                cross["judge_floor_emotion_accuracy"],
            )
        )
    if "expression_transfer" in report:
        transfer = report["expression_transfer"]
        rows.append(
            (
                f"emotion accuracy, all 7 emotions ({transfer['clips']} clips)",
                transfer["emotion_accuracy"],
                f"{transfer['judge_floor_emotion_accuracy']} (chance {transfer['emotion_majority_baseline']})",
            )
        )
    for group in (g for g in ("mouth", "pose", "expression") if g in leak):
        rows.append(
            (
                f"leakage when {group} changes (max other)",
                leak[group]["max_other"],
                leak["judge_floor"][group]["max_other"],
            )
        )
    if "emotion_presets" in report:
        rows.append(("emotion presets recognised", report["emotion_presets"]["accuracy"], ""))
    for name, value, floor in rows:
        table.add_row(name, str(value), str(floor))
    return table
