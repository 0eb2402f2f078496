"""Training time per epoch for every model kind, CPU against CUDA (bf16 autocast), on the synthetic plant.

Each kind is fitted for a fixed number of epochs (early stopping off, holdout calibration, so one
fit each) on the same windows on each device present; the table gives seconds per epoch, the
speed-up, and the final validation loss on each device so a GPU run that trains worse shows.
Usage::

    python -m benchmarks.gpu_training [--epochs 5] [--results nvidia-h200]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import write_results
from train.data import read_table
from train.detector import AutoencoderDetector
from train.models import MODELS
from train.simulate import simulate_plant, write_table


def fit_seconds_per_epoch(kind: str, device: str, table, epochs: int) -> dict:
    """Seconds per epoch (mean over the fixed epochs, the first included) and the last validation loss."""
    detector = AutoencoderDetector(kind=kind, device=device, epochs=epochs, patience=epochs + 1, calibration="holdout", progress=False, seed=0)
    detector.fit(table)
    history = detector.history_
    return {"epochs": len(history.val_loss), "s_per_epoch": history.seconds / len(history.val_loss), "val_loss": history.val_loss[-1],
            "mixed_precision": history.mixed_precision, "device": history.device}


def main() -> None:
    """Run and write results/[folder/]gpu_training.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--results", default=None, help="results sub-folder, e.g. the GPU's name")
    args = parser.parse_args()
    frame, _ = simulate_plant(machines=6, rows=12000, normal_rows=9000, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        write_table(frame, str(Path(tmp) / "plant.csv"))
        table = read_table(Path(tmp) / "plant.csv", series_column="machine")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results, rows = [], []
    for kind in sorted(MODELS):
        runs = {device: fit_seconds_per_epoch(kind, device, table, args.epochs) for device in devices}
        results.append({"kind": kind, **runs})
        cpu, gpu = runs["cpu"], runs.get("cuda")
        rows.append([kind, f"{cpu['s_per_epoch']:.3f}", f"{gpu['s_per_epoch']:.3f}" if gpu else "-",
                     f"{cpu['s_per_epoch'] / gpu['s_per_epoch']:.1f}x" if gpu else "-", f"{cpu['val_loss']:.4f}", f"{gpu['val_loss']:.4f}" if gpu else "-"])
    write_results("gpu_training", {"epochs": args.epochs, "torch_threads": torch.get_num_threads(),
                                   "gpu": torch.cuda.get_device_name(0) if "cuda" in devices else None, "results": results},
                  ["kind", "CPU s/epoch", "CUDA bf16 s/epoch", "speed-up", "CPU val loss", "CUDA val loss"], rows,
                  "Synthetic plant (6 machines x 9000 normal rows, 50,000 training windows), default model sizes, window/stride defaults of the detector, "
                  f"{args.epochs} epochs "
                  f"each (early stopping off), torch {torch.__version__} with {torch.get_num_threads()} CPU threads. "
                  "Command: `python -m benchmarks.gpu_training" + (f" --results {args.results}`." if args.results else "`."), folder=args.results)


if __name__ == "__main__":
    main()
