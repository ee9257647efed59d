"""Training geometric horizon models: ``fixpoint train tdflow --set variant=td2_cfm ...``.

Farebrother et al., "Temporal Difference Flows", ICML 2025 (arXiv 2503.09817), Algorithm 1:
sample a batch of offline (S, A, S′) and a t per item, regress the online field onto the
variant's target (``losses.regression_terms``), take an AdamW step (the paper: lr 1e-4,
β = (0.9, 0.999), eps 1e-4, weight decay 1e-3) and move the EMA target θ̄ ← ζθ̄ + (1−ζ)θ
(the paper: ζ = 0.999). The defaults here are sized for a CPU and the closed-form problems of
``fixpoint_rl.envs.ghm_tasks``; the paper's values are the ``paper`` preset.

Problems (``problem``):
  ``rotation``   linear-Gaussian system, F = 0.95·rotation(0.3), σ = 0.1, any ``dim``;
  ``tabular``    a Garnet MDP embedded in ℝ^S with N(0, σ²I) observation noise;
  ``point_mass`` the point mass on a loop (ground truth by Monte-Carlo rollouts).

Evaluation (every ``eval_every`` steps and at the end, on ``eval_sources`` sources with
``eval_samples`` samples each, from a generator of its own so it never changes training):
``emd`` (exact assignment, ground cost ``ground_cost``) between model and exact samples,
``emd_floor`` (two independent exact sample sets of the same size: the finite-sample floor),
``nll`` (normalised NLL of exact samples under the model), ``true_nll`` (under the exact density,
where known), ``field_rel_mse`` (relative squared error of the model's field against the analytic
fixed-point velocity along the exact path, where known), ``mean_error`` (‖model mean − exact mean‖) and ``value_mse`` (values of the problem's
reward from model samples vs the exact / Monte-Carlo values).

:class:`GHMTrainer` holds the whole state; :func:`train` drives it under the deep runtime (atomic
checkpoints, bitwise resume), :func:`fit` without files (benchmarks, figures, tests) — both run the
same steps, so the numbers agree.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from fixpoint_rl.envs.checks import check_int, check_scalar

from ..config import Config
from ..registry import TrainerSpec
from ..runtime import Run, generator_state, restore_generator
from .losses import ema_update, regression_loss, regression_terms
from .metrics import emd, nll_per_dim, sample_model
from .paths import AffinePath
from .vector_field import VectorField

__all__ = [
    "GHMTrainer", "TDFlowConfig", "TRAINER", "build_problem", "evaluation_set", "fit", "fit_cell",
    "train",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TDFlowConfig(Config):
    """Settings of a TD-Flow run (every field can be set with ``--set name=value``)."""

    problem: Literal["rotation", "tabular", "point_mass"] = "rotation"
    """Closed-form problem (see the module docstring)."""
    dim: int = 2
    """State dimension of the ``rotation`` problem."""
    num_states: int = 5
    """States of the ``tabular`` problem (its sample dimension)."""
    problem_seed: int = 0
    """Seed of the problem instance (tabular MDP) and of the offline dataset."""
    gamma: float = 0.9
    """Discount γ; effective horizon (1−γ)^{-1}."""
    variant: Literal["mc_cfm", "td_cfm", "td_cfm_coupled", "td2_cfm"] = "td2_cfm"
    """Training target (``mc_cfm`` is the on-policy Monte-Carlo oracle)."""
    path: Literal["straight", "curved"] = "straight"
    """Probability path: OT straight line or the paper's sin/cos path."""
    arch: Literal["mlp", "unet"] = "mlp"
    """Vector-field body: FiLM MLP or the paper's U-Net-style MLP."""
    hidden: tuple[int, ...] = (128, 128, 128)
    """Block widths (the paper: 512, 512, 512)."""
    time_dim: int = 32
    """Sinusoidal time-embedding size (the paper: 256)."""
    steps: int = 2000
    """Gradient steps."""
    batch_size: int = 256
    """Batch size B (the paper: 1024)."""
    lr: float = 3e-4
    """AdamW learning rate (the paper: 1e-4)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (the paper: 1e-4)."""
    weight_decay: float = 1e-3
    """AdamW weight decay (the paper: 1e-3)."""
    ema: float = 0.99
    """Polyak factor ζ of the target network (the paper: 0.999 over 3M steps)."""
    ode_steps: int = 10
    """Fixed ODE steps for bootstrapping and sampling (the paper: 10)."""
    ode_method: Literal["euler", "midpoint", "rk4"] = "midpoint"
    """Fixed-step scheme (the paper: midpoint)."""
    dataset_size: int = 50_000
    """Offline transitions."""
    eval_every: int = 500
    """Steps between evaluations (and at the last step)."""
    eval_sources: int = 8
    """Source states of the evaluation (the paper: 64)."""
    eval_samples: int = 256
    """Samples per source for EMD (the paper: 2048)."""
    nll_samples: int = 64
    """Exact samples per source scored for the NLL."""
    ground_cost: Literal["sqeuclidean", "euclidean"] = "sqeuclidean"
    """EMD ground cost (the paper's appendix formula: squared Euclidean)."""
    log_every: int = 50
    """Steps between CSV rows."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter dtype."""

    def validate(self) -> None:
        check_int("dim", self.dim, low=1)
        check_int("num_states", self.num_states, low=2)
        check_int("problem_seed", self.problem_seed, low=0)
        check_scalar("gamma", self.gamma, low=0.0, high=1.0, high_inclusive=False)
        if not self.hidden:
            raise ValueError("hidden must name at least one width, got ()")
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width, low=1)
        check_int("time_dim", self.time_dim, low=2)
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")
        for name in ("steps", "batch_size", "ode_steps", "dataset_size", "eval_every",
                     "eval_sources", "log_every"):
            check_int(name, getattr(self, name), low=1)
        check_int("eval_samples", self.eval_samples, low=2)
        check_int("nll_samples", self.nll_samples, low=0)
        check_scalar("lr", self.lr, low=0.0, low_inclusive=False)
        check_scalar("adam_eps", self.adam_eps, low=0.0, low_inclusive=False)
        check_scalar("weight_decay", self.weight_decay, low=0.0)
        check_scalar("ema", self.ema, low=0.0, high=1.0, high_inclusive=False)
        if self.nll_samples > self.eval_samples:
            raise ValueError(
                f"nll_samples must be ≤ eval_samples={self.eval_samples}, got {self.nll_samples}"
            )


# ----------------------------------------------------------------------------- presets
def default() -> TDFlowConfig:
    """TD²-CFM on the 2-D rotation system, γ = 0.9, 2000 steps (about a minute on one core)."""
    return TDFlowConfig()


def quick() -> TDFlowConfig:
    """A smoke test: 60 steps of a small network."""
    return TDFlowConfig(steps=60, hidden=(32, 32), batch_size=64, eval_every=30, log_every=10,
                        eval_sources=2, eval_samples=64, nll_samples=8, dataset_size=2000)


def paper() -> TDFlowConfig:
    """The paper's single-policy optimisation settings (Table 5) on a chosen problem (GPU scale)."""
    return TDFlowConfig(hidden=(512, 512, 512), time_dim=256, arch="unet", batch_size=1024,
                        lr=1e-4, adam_eps=1e-4, weight_decay=1e-3, ema=0.999, steps=3_000_000,
                        gamma=0.99, dataset_size=1_000_000, eval_every=50_000, log_every=1000,
                        eval_sources=64, eval_samples=2048)


PRESETS = {"default": default, "quick": quick, "paper": paper}


# ----------------------------------------------------------------------------- problems
def build_problem(config: TDFlowConfig):
    """The numpy problem of ``config`` (see ``fixpoint_rl.envs.ghm_tasks``)."""
    from fixpoint_rl.envs.ghm_tasks import PointMassLoop, garnet_embedding, rotation_system

    if config.problem == "rotation":
        return rotation_system(config.dim, gamma=config.gamma)
    if config.problem == "tabular":
        return garnet_embedding(config.num_states, 2, gamma=config.gamma, seed=config.problem_seed)
    return PointMassLoop(gamma=config.gamma)


def evaluation_set(problem, sources: int, samples: int, seed: int) -> dict[str, Any]:
    """Exact answers on ``sources`` source pairs (s, π(s)): numpy arrays

    ``cond`` [n, c]; ``samples`` and ``floor_samples`` [n, m, d] (two independent exact sets);
    ``mean`` [n, d] (closed form, or the mean of 20·m Monte-Carlo samples for the point mass);
    ``values`` [n] for ``reward`` (closed form, or Monte Carlo); ``reward`` a callable
    [..., d] → [...]; ``mixture`` a function i ↦ (weights, means, covs) of source i, or None.
    """
    from fixpoint_rl.envs.ghm_tasks import LinearGaussianSystem, TabularEmbedding

    rng = np.random.default_rng([seed, 0xE7A1])
    if isinstance(problem, LinearGaussianSystem):
        states = problem.source_states(sources, rng)
        cond = problem.condition(states)
        repeated = np.repeat(states, samples, axis=0)
        draw = [problem.sample_successor(repeated, seed=rng).reshape(sources, samples, -1)
                for _ in range(2)]
        Q = -np.eye(problem.dim)
        values = problem.quadratic_value(states, Q=Q)
        mean = problem.successor_mean(states)

        def reward(x):
            return -np.sum(np.asarray(x) ** 2, axis=-1)

        def mixture(i):
            w, mu, cov = problem.successor_mixture(states[i : i + 1], tol=1e-8)
            return w, mu[0], cov

    elif isinstance(problem, TabularEmbedding):
        states = np.arange(sources) % problem.num_states
        actions = problem.act(states, rng)
        cond = problem.condition(states, actions)
        draw = [problem.sample_successor(np.repeat(states, samples), np.repeat(actions, samples),
                                         seed=rng).reshape(sources, samples, -1) for _ in range(2)]
        M = problem.successor_measure()[states, actions]            # [n, S]
        mean = M @ problem.embedding
        direction = np.random.default_rng([seed, 7]).standard_normal(problem.dim)
        values = problem.state_values(problem.embedding @ direction)[states, actions]

        def reward(x):
            return np.asarray(x) @ direction

        def mixture(i):
            w, mu, cov = problem.successor_mixture(states[i : i + 1], actions[i : i + 1])
            return w[0], mu, cov

    else:  # point mass: Monte-Carlo ground truth
        states = problem.source_states(sources, rng)
        cond = problem.condition(states)
        repeated = np.repeat(states, samples, axis=0)
        draw = [problem.sample_successor(repeated, seed=rng).reshape(sources, samples, -1)
                for _ in range(2)]
        many = problem.sample_successor(np.repeat(states, 20 * samples, axis=0), seed=rng)
        mean = many.reshape(sources, 20 * samples, -1).mean(axis=1)
        values, _ = problem.discounted_value(states, rollouts=200, seed=rng)
        reward = problem.reward
        mixture = None
    return {"cond": cond, "samples": draw[0], "floor_samples": draw[1], "mean": mean,
            "values": values, "reward": reward, "mixture": mixture}


# ----------------------------------------------------------------------------- trainer
class GHMTrainer:
    """The full state of a TD-Flow run: data, online and target fields, AdamW, generators, step."""

    def __init__(self, config: TDFlowConfig, seed: int, device: torch.device | str = "cpu",
                 problem=None) -> None:
        """``problem`` replaces the config's problem (any object of ``fixpoint_rl.envs.ghm_tasks``
        with ``offline_dataset``/``successor_dataset``), e.g. one policy of a GPI set."""
        self.config = config
        self.seed = check_int("seed", seed, low=0)
        self.device = torch.device(device)
        self.dtype = getattr(torch, config.dtype)
        self.problem = build_problem(config) if problem is None else problem
        self.path = AffinePath(config.path)
        data_rng = np.random.default_rng([config.problem_seed, 0xDA7A])
        as_tensor = self._tensor
        if config.variant == "mc_cfm":
            cond, successor = self.problem.successor_dataset(config.dataset_size, data_rng)
            self.data = {"cond": as_tensor(cond), "successor": as_tensor(successor)}
        else:
            dataset = self.problem.offline_dataset(config.dataset_size, data_rng)
            self.data = {"cond": as_tensor(dataset.cond), "next_state": as_tensor(dataset.next_state),
                         "next_cond": as_tensor(dataset.next_cond)}
        torch.manual_seed(self.seed)  # weight initialisation
        self.model = VectorField(self.problem.dim, self.problem.cond_dim, config.hidden,
                                 config.time_dim, config.arch).to(self.device, self.dtype)
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                           eps=config.adam_eps, weight_decay=config.weight_decay)
        self.batch_rng = np.random.default_rng([self.seed, 0xBA7C])
        self.noise = torch.Generator(device=self.device).manual_seed(self.seed)
        self.step = 0
        self._evaluation: dict[str, Any] | None = None

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(array), dtype=self.dtype, device=self.device)

    # --- one Algorithm-1 step
    def train_step(self) -> float:
        config = self.config
        index = torch.as_tensor(
            self.batch_rng.integers(0, config.dataset_size, config.batch_size), device=self.device
        )
        batch = {key: value[index] for key, value in self.data.items()}
        terms = regression_terms(
            config.variant, cond=batch["cond"], next_state=batch.get("next_state"),
            next_cond=batch.get("next_cond"), successor=batch.get("successor"),
            target_field=self.target, gamma=config.gamma, path=self.path,
            generator=self.noise, ode_steps=config.ode_steps, ode_method=config.ode_method,
        )
        loss = regression_loss(self.model, terms).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        ema_update(self.target, self.model, config.ema)
        self.step += 1
        return float(loss.detach())

    # --- evaluation
    def evaluation(self) -> dict[str, Any]:
        if self._evaluation is None:
            config = self.config
            self._evaluation = evaluation_set(self.problem, config.eval_sources,
                                              config.eval_samples, config.problem_seed)
        return self._evaluation

    def model_samples(self, cond: np.ndarray, count: int, generator: torch.Generator,
                      ode_steps: int | None = None) -> np.ndarray:
        """[n, count, d] samples of the EMA target model (the model that is evaluated)."""
        condition = self._tensor(np.repeat(cond, count, axis=0))
        steps = self.config.ode_steps if ode_steps is None else ode_steps
        x = sample_model(self.target, condition, generator=generator, steps=steps,
                         method=self.config.ode_method)
        return x.double().cpu().numpy().reshape(cond.shape[0], count, -1)

    def evaluate(self, ode_steps: int | None = None) -> dict[str, float]:
        """Metrics of the target (EMA) model against the exact answers (see the module docstring).

        ``ode_steps`` overrides the number of ODE steps used to sample and score the model.
        """
        config = self.config
        steps = config.ode_steps if ode_steps is None else check_int("ode_steps", ode_steps, low=1)
        exact = self.evaluation()
        generator = torch.Generator(device=self.device).manual_seed(
            int(np.random.default_rng([self.seed, self.step, 0xE7]).integers(2**62)))
        samples = self.model_samples(exact["cond"], config.eval_samples, generator, steps)
        n = exact["cond"].shape[0]
        emds = [emd(samples[i], exact["samples"][i], config.ground_cost) for i in range(n)]
        floors = [emd(exact["floor_samples"][i], exact["samples"][i], config.ground_cost)
                  for i in range(n)]
        values = exact["reward"](samples).mean(axis=1) / (1.0 - config.gamma)
        metrics = {
            "emd": float(np.mean(emds)),
            "emd_floor": float(np.mean(floors)),
            "mean_error": float(np.mean(np.linalg.norm(samples.mean(axis=1) - exact["mean"], axis=1))),
            "value_mse": float(np.mean((values - exact["values"]) ** 2)),
        }
        if config.nll_samples > 0:
            m = config.nll_samples
            x = self._tensor(exact["samples"][:, :m].reshape(n * m, -1))
            cond = self._tensor(np.repeat(exact["cond"], m, axis=0))
            nll = nll_per_dim(self.target, x, cond, steps=steps,
                              method=config.ode_method, generator=generator)
            metrics["nll"] = float(nll.mean())
            if exact["mixture"] is not None:
                from fixpoint_rl.tabular.core.successor import gaussian_mixture_log_density

                true = []
                for i in range(n):
                    w, mu, cov = exact["mixture"](i)
                    true.append(gaussian_mixture_log_density(exact["samples"][i, :m], w, mu, cov))
                metrics["true_nll"] = float(-np.mean(true) / x.shape[1])
        if exact["mixture"] is not None:
            metrics["field_rel_mse"] = self._field_error(exact, generator)
        return metrics

    def _field_error(self, exact: dict[str, Any], generator: torch.Generator) -> float:
        """E‖v_θ̄ − u*‖² / E‖u*‖² at x ~ m_t(·|s, a), t ~ U[0, 1), against the analytic velocity of
        the fixed point (Theorem 1 / Corollary 1) — where the problem has a closed form."""
        from .analytic import AnalyticField

        field = AnalyticField(self.problem, self.config.path)
        samples = exact["samples"]
        n, m, d = samples.shape
        x1 = torch.as_tensor(samples.reshape(n * m, d), dtype=torch.float64)
        cond = torch.as_tensor(np.repeat(exact["cond"], m, axis=0), dtype=torch.float64)
        t = torch.rand((n * m,), generator=generator, dtype=torch.float64) * 0.999
        x0 = torch.randn((n * m, d), generator=generator, dtype=torch.float64)
        xt = self.path.interpolate(x0, x1, t)
        truth = field(xt, t, cond)
        with torch.no_grad():
            learned = self.target(self._tensor(xt.numpy()), self._tensor(t.numpy()),
                                  self._tensor(cond.numpy())).double().cpu()
        return float(((learned - truth) ** 2).sum(1).mean() / (truth**2).sum(1).mean())

    # --- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "batch_rng": generator_state(self.batch_rng), "noise": generator_state(self.noise),
                "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_generator(self.batch_rng, state["batch_rng"])
        restore_generator(self.noise, state["noise"])
        self.step = int(state["step"])


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def fit(config: TDFlowConfig, seed: int, *, evaluate: bool = True,
        problem=None) -> tuple[GHMTrainer, list[dict]]:
    """Train in memory (no files): returns the trainer and the evaluation rows (step + metrics)."""
    trainer = GHMTrainer(config, seed, problem=problem)
    rows = []
    for step in range(1, config.steps + 1):
        loss = trainer.train_step()
        if evaluate and _due(step, config.eval_every, config.steps):
            rows.append({"step": step, "loss": loss, **trainer.evaluate()})
    return trainer, rows


def fit_cell(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """One sweep cell (``fixpoint_rl.deep.sweep.run_sweep``): ``{"config": {field: value},
    "seed": int, "eval_ode_steps": [int, ...] (optional)}`` → the final evaluation row(s), one per
    evaluation ODE step count, tagged with the config fields."""
    import torch as _torch

    _torch.set_num_threads(1)
    config = TDFlowConfig(**cell["config"])
    trainer, _ = fit(config, int(cell["seed"]), evaluate=False)
    rows = []
    for steps in cell.get("eval_ode_steps", [config.ode_steps]):
        rows.append({**cell["config"], "seed": int(cell["seed"]), "eval_ode_steps": int(steps),
                     **trainer.evaluate(ode_steps=int(steps))})
    return rows


def train(config: TDFlowConfig, run: Run) -> dict[str, Any]:
    """``fixpoint train tdflow``: Algorithm 1 with checkpoints; returns the final metrics."""
    if run.world_size > 1:
        raise ValueError("tdflow trains on one process (the models are small); run it without torchrun")
    trainer = GHMTrainer(config, run.seed, run.device)
    state = run.checkpointer.latest()
    last: dict[str, Any] = {}
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        last = state["last"]
    for step in range(trainer.step + 1, config.steps + 1):
        loss = trainer.train_step()
        metrics: dict[str, Any] = {}
        if _due(step, config.log_every, config.steps):
            metrics["loss"] = loss
        if _due(step, config.eval_every, config.steps):
            metrics.update(trainer.evaluate())
        if metrics:
            run.log.log(step, **metrics)
            last.update(metrics)
        if run.checkpointer.due(step) or step == config.steps:
            run.checkpointer.save(step, {"trainer": trainer.state_dict(), "last": dict(last)})
    return {"steps": config.steps, **{k: v for k, v in last.items() if isinstance(v, float)}}


TRAINER = TrainerSpec(
    name="tdflow",
    description="TD-Flow geometric horizon models (TD-CFM, TD-CFM(C), TD²-CFM, MC-CFM) on closed-form problems",
    config_cls=TDFlowConfig,
    presets=PRESETS,
    train=train,
    checkpoint_every=200,
)
