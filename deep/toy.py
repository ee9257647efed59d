"""The reference trainer: an MLP regression on a seeded synthetic dataset (``fixpoint train toy``).

Small enough to run in a test in a fraction of a second, and complete as a template: copy this
file to add an algorithm. It shows every part of the trainer protocol of
``fixpoint_rl.deep.runtime.Run``:

- a frozen, validated config with a docstring under each field, and presets as plain functions;
- ``train(config, run) -> dict``: build everything from ``run.seed`` first, then
  ``run.checkpointer.latest()`` to continue a killed run;
- checkpoint state: model, optimiser and scheduler state dicts, a trainer-owned
  ``torch.Generator`` (epoch shuffles) and ``np.random.Generator`` (input noise), the data
  cursor (the epoch permutation and the position in it) and the step; the global RNGs (used by
  dropout) are checkpointed by the runtime;
- logging only seed-determined values every ``log_every`` steps, with evaluation columns that
  appear later (``test_mse``);
- data parallelism: one global batch per step on every rank, ``run.shard`` takes this rank's
  slice, ``run.wrap_model`` adds DDP, and the logged loss is the mean over ranks.

The data: ``n_train + n_test`` inputs x ~ N(0, I_d) and targets
``y = x·w + b + nonlinearity · sin(3 x_0) + noise_std · ε`` with (w, b, ε) drawn from the seed.
With ``hidden=()`` the model is linear and full-batch training converges to the least-squares
solution on the training set (the test checks this against ``numpy.linalg.lstsq``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from fixpoint_rl.envs.checks import check_int, check_scalar

from .config import Config
from .registry import TrainerSpec
from .runtime import Run, generator_state, restore_generator

__all__ = ["ToyConfig", "make_dataset", "build_model", "train", "TRAINER"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyConfig(Config):
    """Settings of the toy MLP regression (every field can be set with ``--set name=value``)."""

    steps: int = 300
    """Optimiser steps (one global batch each)."""
    batch_size: int = 64
    """Global batch size B (split evenly across ``torchrun`` processes)."""
    hidden: tuple[int, ...] = (32, 32)
    """Widths of the hidden layers; ``()`` gives a linear model."""
    dropout: float = 0.1
    """Dropout probability after each hidden layer (draws from the global torch RNG)."""
    input_noise: float = 0.05
    """Std of Gaussian noise added to the inputs of each batch (from a numpy Generator)."""
    lr: float = 1e-2
    """Adam step size at step 0; cosine-annealed to 0 at the last step."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    n_features: int = 4
    """Input dimension d."""
    n_train: int = 512
    """Training examples (one epoch = n_train // B batches; the remainder is dropped)."""
    n_test: int = 256
    """Held-out examples for ``test_mse``."""
    nonlinearity: float = 0.5
    """Amplitude of the sin(3 x_0) term in the target (0: a linear target)."""
    noise_std: float = 0.1
    """Std of the target noise."""
    log_every: int = 10
    """Steps between CSV rows."""
    eval_every: int = 100
    """Steps between evaluations of ``test_mse`` (and at the last step)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter and data dtype."""

    def validate(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width, low=1)
        check_scalar("dropout", self.dropout, low=0.0, high=1.0, high_inclusive=False)
        check_scalar("input_noise", self.input_noise, low=0.0)
        check_scalar("lr", self.lr, low=0.0, low_inclusive=False)
        check_scalar("weight_decay", self.weight_decay, low=0.0)
        check_int("n_features", self.n_features, low=1)
        check_int("n_train", self.n_train, low=1)
        check_int("n_test", self.n_test, low=1)
        check_scalar("nonlinearity", self.nonlinearity)
        check_scalar("noise_std", self.noise_std, low=0.0)
        check_int("log_every", self.log_every, low=1)
        check_int("eval_every", self.eval_every, low=1)
        if self.batch_size > self.n_train:
            raise ValueError(
                f"batch_size must be ≤ n_train={self.n_train}, got {self.batch_size}"
            )


# ----------------------------------------------------------------------------- presets
def default() -> ToyConfig:
    """A 2-hidden-layer MLP, 300 steps (well under a second on one CPU thread)."""
    return ToyConfig()


def quick() -> ToyConfig:
    """60 steps: a smoke test."""
    return ToyConfig(steps=60, eval_every=30)


def linear() -> ToyConfig:
    """A linear model trained full-batch without noise: converges to the least-squares fit."""
    return ToyConfig(steps=800, batch_size=128, n_train=128, hidden=(), dropout=0.0,
                     input_noise=0.0, lr=0.05, dtype="float64", eval_every=200, log_every=50)


def long() -> ToyConfig:
    """A wider network for 20 000 steps (tens of seconds): for trying kill-and-resume by hand."""
    return ToyConfig(steps=20_000, hidden=(128, 128), eval_every=1000, log_every=100)


PRESETS = {"default": default, "quick": quick, "linear": linear, "long": long}


# ----------------------------------------------------------------------------- pieces
def make_dataset(config: ToyConfig, seed: int) -> dict[str, np.ndarray]:
    """The train/test arrays (float64) drawn from ``seed``: x [n, d], y [n]."""
    rng = np.random.default_rng([seed, 0x70F])  # a stream of its own, separate from training
    n, d = config.n_train + config.n_test, config.n_features
    x = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    b = rng.standard_normal()
    y = x @ w + b + config.nonlinearity * np.sin(3.0 * x[:, 0]) + config.noise_std * rng.standard_normal(n)
    return {"x_train": x[: config.n_train], "y_train": y[: config.n_train],
            "x_test": x[config.n_train:], "y_test": y[config.n_train:], "w": w, "b": np.float64(b)}


def build_model(config: ToyConfig) -> torch.nn.Sequential:
    """MLP d -> hidden... -> 1 with ReLU and dropout (initialised from the global torch RNG)."""
    layers: list[torch.nn.Module] = []
    width = config.n_features
    for hidden in config.hidden:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        if config.dropout > 0:
            layers.append(torch.nn.Dropout(config.dropout))
        width = hidden
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers).to(getattr(torch, config.dtype))


# ----------------------------------------------------------------------------- training
def train(config: ToyConfig, run: Run) -> dict[str, Any]:
    """Train the MLP for ``config.steps`` steps; returns final train loss and test MSE."""
    dtype = getattr(torch, config.dtype)
    data = make_dataset(config, run.seed)
    x_train = torch.as_tensor(data["x_train"], dtype=dtype, device=run.device)
    y_train = torch.as_tensor(data["y_train"], dtype=dtype, device=run.device)
    x_test = torch.as_tensor(data["x_test"], dtype=dtype, device=run.device)
    y_test = torch.as_tensor(data["y_test"], dtype=dtype, device=run.device)

    # 1. Build everything from the seed (the global torch RNG initialises the weights).
    model = build_model(config).to(run.device)
    net = run.wrap_model(model)  # DDP under torchrun; keep `model` for state_dict()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    shuffle = torch.Generator().manual_seed(run.seed)  # epoch permutations (same on every rank)
    noise_rng = np.random.default_rng([run.seed, 1])  # input noise of the global batch
    permutation = torch.randperm(config.n_train, generator=shuffle)
    cursor = 0
    start = 0
    loss_value = float("nan")  # the last logged loss (mean over ranks)

    # 2. Continue from the last checkpoint if there is one (global RNGs are restored by it).
    state = run.checkpointer.latest()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_generator(shuffle, state["shuffle"])
        restore_generator(noise_rng, state["noise_rng"])
        permutation, cursor, start = state["permutation"], state["cursor"], state["step"]
        loss_value = state["loss"]

    def test_mse() -> float:
        model.eval()
        with torch.no_grad():
            value = torch.mean((model(x_test).squeeze(-1) - y_test) ** 2).item()
        model.train()
        return value

    model.train()
    for step in range(start + 1, config.steps + 1):
        # 3. One global batch (identical on every rank), then this rank's shard.
        if cursor + config.batch_size > config.n_train:
            permutation, cursor = torch.randperm(config.n_train, generator=shuffle), 0
        index = permutation[cursor:cursor + config.batch_size].to(run.device)
        cursor += config.batch_size
        xb, yb = x_train[index], y_train[index]
        if config.input_noise > 0:
            noise = noise_rng.standard_normal(tuple(xb.shape))
            xb = xb + config.input_noise * torch.as_tensor(noise, dtype=dtype, device=run.device)
        xb, yb = run.shard((xb, yb))

        loss = torch.mean((net(xb).squeeze(-1) - yb) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over ranks here
        optimizer.step()
        scheduler.step()

        # 4. Log seed-determined values only; evaluation columns appear at eval steps.
        if step % config.log_every == 0 or step == config.steps:
            loss_value = run.all_reduce_mean(loss.detach()).item()
            metrics: dict[str, Any] = {"loss": loss_value, "lr": scheduler.get_last_lr()[0]}
            if step % config.eval_every == 0 or step == config.steps:
                metrics["test_mse"] = test_mse()
            run.log.log(step, **metrics)

        # 5. Checkpoint everything needed to continue bitwise (always at the last step).
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "shuffle": generator_state(shuffle),
                "noise_rng": generator_state(noise_rng),
                "permutation": permutation,
                "cursor": cursor,
                "loss": loss_value,
            })
    return {"steps": config.steps, "final_loss": loss_value, "test_mse": test_mse()}


TRAINER = TrainerSpec(
    name="toy",
    description="reference trainer: MLP regression on a seeded synthetic dataset",
    config_cls=ToyConfig,
    presets=PRESETS,
    train=train,
    checkpoint_every=50,
)
