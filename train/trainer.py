"""The training loop: device selection, mixed precision on CUDA, early stopping, progress bar.

Follows nanoGPT's hot path: autocast only on CUDA, ``.item()`` only when logging (once per
epoch), batches drawn from one tensor that already lives on the device.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from train.errors import TrainingDiverged
from train.scoring import WindowScorer


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass
class TrainingHistory:
    """Per-epoch losses, the best epoch, and timing."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    mixed_precision: bool = False
    closed_form: bool = False  # fitted in one step (PCA): no epochs for early stopping to decide

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return self.__dict__.copy()

    @property
    def stopped_at_cap(self) -> bool:
        """True when the best epoch of an iterative fit was the last one run: training may still have been improving."""
        return bool(self.val_loss) and not self.closed_form and self.best_epoch == len(self.val_loss) - 1


@dataclass
class TrainingOptions:
    """Optimisation settings."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 5
    progress: bool = True


def _loss(scorer: WindowScorer, raw: torch.Tensor, noise_std: float) -> torch.Tensor:
    """Mean reconstruction error of the clean window + score term + training penalty."""
    x = scorer.normalise(raw)
    inputs = x + noise_std * torch.randn_like(x) if noise_std > 0 else x
    recon, score_term, penalty = scorer.reconstruct(inputs, scorer.encode_conditions(raw))
    return (recon.float() - x).pow(2).mean() + score_term.float().mean() + penalty


@torch.no_grad()
def mean_validation_loss(scorer: WindowScorer, windows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean score of the error channels over validation windows (eval mode), as a 0-d tensor."""
    scorer.eval()
    total = windows.new_zeros(())
    for i in range(0, len(windows), batch_size):
        total += scorer.error_score(windows[i : i + batch_size]).float().sum()
    return total / max(len(windows), 1)


def fit_scorer(scorer: WindowScorer, train: torch.Tensor, val: torch.Tensor, options: TrainingOptions, device: torch.device, seed: int) -> TrainingHistory:
    """Train ``scorer.model`` on raw windows; restores the weights of the best validation epoch."""
    history = TrainingHistory(device=str(device), mixed_precision=device.type == "cuda")
    start = time.perf_counter()
    scorer.to(device)
    train, val = train.to(device), val.to(device)
    model = scorer.model
    if getattr(model, "closed_form", False):
        history.closed_form = True
        model.fit(scorer.normalise(train))
        history.train_loss.append(float(mean_validation_loss(scorer, train, options.batch_size)))
        history.val_loss.append(float(mean_validation_loss(scorer, val, options.batch_size)) if len(val) else float("nan"))
        history.seconds = time.perf_counter() - start
        return history
    generator = torch.Generator(device=device).manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    noise_std = float(getattr(model, "noise_std", 0.0))
    best, best_state, stale = float("inf"), copy.deepcopy(scorer.state_dict()), 0
    bar = tqdm(range(options.epochs), desc=f"train {type(model).__name__}", disable=not options.progress, unit="epoch")
    for epoch in bar:
        scorer.train()
        order = torch.randperm(len(train), device=device, generator=generator)
        running = torch.zeros((), device=device)
        for i in range(0, len(train), options.batch_size):
            batch = train[order[i : i + options.batch_size]]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=history.mixed_precision):
                loss = _loss(scorer, batch, noise_std)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += loss.detach() * len(batch)
        train_loss = float(running / len(train))
        val_loss = float(mean_validation_loss(scorer, val, options.batch_size)) if len(val) else train_loss
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDiverged(f"training diverged at epoch {epoch + 1}: loss {train_loss} (validation {val_loss}); lower --lr "
                                   f"(now {options.lr:g}), check the data for extreme values, or try another --model")
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best - 1e-6:
            best, best_state, stale, history.best_epoch = val_loss, copy.deepcopy(scorer.state_dict()), 0, epoch
        else:
            stale += 1
            if stale >= options.patience:
                break
    scorer.load_state_dict(best_state)
    scorer.eval()
    history.seconds = time.perf_counter() - start
    return history
