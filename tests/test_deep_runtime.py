"""Deep runtime: seeding, checkpoints, run logs, configs, registry, the toy trainer and the CLI.

Oracles: bitwise equality (torch.equal, identical CSV bytes) between an uninterrupted run and a
run that was interrupted (in process, by Ctrl-C, and in a subprocess by SIGKILL, also while a
checkpoint was being written) and resumed; between two fresh processes with the same seed; and
the least-squares solution (numpy.linalg.lstsq) for the toy trainer's linear preset.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fixpoint_rl.benchmarks.__main__ import main as cli_main
from fixpoint_rl.deep import toy
from fixpoint_rl.deep.checkpoint import CHECKPOINT_PAUSE_ENV, Checkpointer, load_checkpoint
from fixpoint_rl.deep.config import (
    Config,
    apply_overrides,
    coerce,
    config_digest,
    config_from_dict,
    config_to_dict,
    field_docs,
)
from fixpoint_rl.deep.registry import TRAINER_MODULES, TrainerSpec, get_trainer
from fixpoint_rl.deep.runlog import RunLog, format_value
from fixpoint_rl.deep.runtime import (
    RunSetupError,
    assert_resume_bitwise,
    capture_rng_state,
    configure_torch,
    generator_state,
    resolve_device,
    restore_generator,
    restore_rng_state,
    run_trainer,
    seed_everything,
)

REPO = Path(__file__).resolve().parents[1]

# A toy run small enough for subprocess tests: 100 steps, a checkpoint every 10.
SMALL = ["steps=100", "eval_every=50", "log_every=5"]


def _small_config(**changes) -> toy.ToyConfig:
    return dataclasses.replace(apply_overrides(toy.default(), SMALL), **changes)


def _final_state(out_dir: Path) -> dict[str, torch.Tensor]:
    checkpointer = Checkpointer(Path(out_dir) / "checkpoints", every_steps=1)
    return load_checkpoint(checkpointer.latest_path())["state"]["model"]


def _assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- seeding and RNG


def test_seed_everything_and_rng_capture_round_trip():
    seed_everything(123)
    first = (random.random(), np.random.random(), torch.rand(3))
    seed_everything(123)
    again = (random.random(), np.random.random(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])

    state = capture_rng_state()
    draws = (random.random(), np.random.random(), torch.rand(3))
    random.random(), np.random.random(), torch.rand(5)  # move every generator on
    restore_rng_state(state)
    replay = (random.random(), np.random.random(), torch.rand(3))
    assert draws[0] == replay[0] and draws[1] == replay[1] and torch.equal(draws[2], replay[2])

    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)
    with pytest.raises(ValueError, match="missing RNG entries"):
        restore_rng_state({"python": random.getstate()})


def test_owned_generators_round_trip():
    torch_gen = torch.Generator().manual_seed(5)
    numpy_gen = np.random.default_rng(5)
    saved = (generator_state(torch_gen), generator_state(numpy_gen))
    expected = (torch.rand(4, generator=torch_gen), numpy_gen.random(4))
    restore_generator(torch_gen, saved[0])
    restore_generator(numpy_gen, saved[1])
    assert torch.equal(torch.rand(4, generator=torch_gen), expected[0])
    assert np.array_equal(numpy_gen.random(4), expected[1])
    with pytest.raises(ValueError, match="generator"):
        generator_state(random.Random(0))


def test_configure_torch_and_devices():
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        configure_torch(threads=1, deterministic=True)
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        with pytest.raises(ValueError, match="threads"):
            configure_torch(threads=0)
    finally:
        configure_torch(threads=before[0], deterministic=before[1])
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# ----------------------------------------------------------------------------- checkpoints


class _Counter:
    def __init__(self):
        self.value = 0

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this on purpose")


def test_checkpointer_round_trip_pruning_and_rng(tmp_path):
    counter = _Counter()
    ckpt = Checkpointer(tmp_path / "ck", every_steps=3, keep=2, identity={"seed": 1},
                        attachments={"counter": counter})
    assert ckpt.latest() is None and not ckpt.exists()
    assert [s for s in range(1, 10) if ckpt.due(s)] == [3, 6, 9]
    torch.manual_seed(0)
    for step in (3, 6, 9):
        counter.value = step * 10
        ckpt.save(step, {"weights": torch.full((2,), float(step)), "cursor": step + 1})
    expected_draw = torch.rand(2)  # the torch RNG right after the last save
    assert [p.name for p in ckpt.paths()] == ["step-0000000006.pt", "step-0000000009.pt"]

    torch.rand(10)
    counter.value = -1
    fresh = Checkpointer(tmp_path / "ck", every_steps=3, identity={"seed": 1},
                         attachments={"counter": counter})
    state = fresh.latest()
    assert state["step"] == 9 and state["cursor"] == 10
    assert torch.equal(state["weights"], torch.full((2,), 9.0))
    assert counter.value == 90  # attachments restored
    assert torch.equal(torch.rand(2), expected_draw)  # global RNG restored

    other = Checkpointer(tmp_path / "ck", every_steps=3, identity={"seed": 2})
    with pytest.raises(ValueError, match="seed: saved 1, now 2"):
        other.check_identity()
    with pytest.raises(ValueError, match="different run"):
        other.latest()
    with pytest.raises(ValueError, match="state"):
        fresh.save(12, [1, 2])
    with pytest.raises(ValueError, match="every_steps"):
        Checkpointer(tmp_path, every_steps=0)


def test_checkpoint_write_failure_leaves_previous_checkpoint_and_no_temp(tmp_path):
    ckpt = Checkpointer(tmp_path, every_steps=1)
    ckpt.save(1, {"x": torch.ones(2)})
    with pytest.raises(RuntimeError, match="on purpose"):
        ckpt.save(2, {"x": _Unpicklable()})
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000000001.pt"]
    assert ckpt.latest()["step"] == 1
    # a temporary file left by a killed process is removed when the folder is opened again
    (tmp_path / ".step-0000000002.pt.abc.tmp").write_bytes(b"partial")
    Checkpointer(tmp_path, every_steps=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000000001.pt"]


# ----------------------------------------------------------------------------- run log


def test_runlog_csv_columns_resume_trim_and_header(tmp_path):
    log = RunLog(tmp_path, "run", toy.quick(), seed=3, total_steps=4, progress=False)
    log.log(1, loss=torch.tensor(0.5), ok=True)
    log.log(2, loss=np.float32(0.25), ok=False)
    saved = log.state_dict()
    log.log(3, loss=0.125, test=np.array(1.0))  # a new column: the file is rewritten
    log.close()
    text = (tmp_path / "run.csv").read_text()
    assert text == "step,loss,ok,test\n1,0.5,True,\n2,0.25,False,\n3,0.125,,1.0\n"

    resumed = RunLog(tmp_path, "run", toy.quick(), seed=3, total_steps=4, progress=False)
    resumed.load_state_dict(saved)  # as restoring the checkpoint of step 2 does
    assert (tmp_path / "run.csv").read_text() == "step,loss,ok\n1,0.5,True\n2,0.25,False\n"
    resumed.log(3, loss=0.125, test=1.0)
    resumed.finish(summary={"final": 1.0})
    assert (tmp_path / "run.csv").read_text() == text
    import json

    header = json.loads((tmp_path / "run.json").read_text())
    assert header["status"] == "finished" and header["seed"] == 3
    assert header["config"]["steps"] == 60 and header["summary"] == {"final": 1.0}
    assert {"versions", "git_sha", "python"} <= set(header) and header["resumed_from_steps"] == [2]

    assert format_value(None) == "" and format_value(np.int64(3)) == "3"
    assert format_value(0.1) == "0.1" and format_value(float("nan")) == "nan"
    with pytest.raises(ValueError, match="one element"):
        format_value(torch.ones(2))
    with pytest.raises(ValueError, match="metric"):
        format_value([1, 2])
    with pytest.raises(ValueError, match="step"):
        RunLog(tmp_path / "b", "run", None, 0, progress=False).log(1, step=2)


def test_runlog_refuses_a_changed_csv(tmp_path):
    log = RunLog(tmp_path, "run", None, seed=0, progress=False)
    log.log(1, x=1.0)
    saved = log.state_dict()
    log.close()
    (tmp_path / "run.csv").write_text("step,x\n1,2.0\n")
    with pytest.raises(ValueError, match="changed or deleted"):
        RunLog(tmp_path, "run", None, seed=0, progress=False).load_state_dict(saved)


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inner(Config):
    layers: int = 2
    """Number of layers."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Example(Config):
    rate: float = 0.5
    """A step size."""
    count: int = 3
    flag: bool = False
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (4, 4)
    limit: int | None = None
    inner: _Inner = dataclasses.field(default_factory=_Inner)

    def validate(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")


def test_config_type_checks_name_the_field():
    assert _Example(rate=1).rate == 1.0 and isinstance(_Example(rate=1).rate, float)
    assert _Example(sizes=[1, 2]).sizes == (1, 2)
    for kwargs, field in [({"count": 1.5}, "count"), ({"count": True}, "count"),
                          ({"flag": 1}, "flag"), ({"mode": "c"}, "mode"),
                          ({"sizes": (1, "2")}, r"sizes\[1\]"), ({"limit": 1.5}, "limit"),
                          ({"name": 3}, "name"), ({"rate": -1.0}, "rate"),
                          ({"rate": "fast"}, "rate"), ({"inner": 3}, "inner")]:
        with pytest.raises(ValueError, match=field):
            _Example(**kwargs)
    with pytest.raises(TypeError):
        _Example(0.5)  # keyword-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Example().rate = 2.0  # type: ignore[misc]


def test_apply_overrides_coerces_every_annotation():
    config = apply_overrides(_Example(), [
        "rate=1e-3", "count=1_000", "flag=yes", "name=hello=world", "mode=b",
        "sizes=8,16,32", "limit=none", "inner.layers=5",
    ])
    assert config == _Example(rate=1e-3, count=1000, flag=True, name="hello=world", mode="b",
                              sizes=(8, 16, 32), limit=None, inner=_Inner(layers=5))
    assert apply_overrides(_Example(), ["sizes=(1, 2)", "limit=7"]).sizes == (1, 2)
    assert apply_overrides(_Example(), ["sizes="]).sizes == ()
    assert apply_overrides(_Example(), ["count=2e3"]).count == 2000
    with pytest.raises(ValueError, match="valid keys: rate, count, flag, name, mode, sizes, "
                                         "limit, inner.layers"):
        apply_overrides(_Example(), ["rte=1"])
    with pytest.raises(ValueError, match="unknown setting 'inner.depth'"):
        apply_overrides(_Example(), ["inner.depth=1"])
    for item, field in [("count=1.5", "count"), ("flag=maybe", "flag"), ("mode=c", "mode"),
                        ("sizes=1,x", r"sizes\[1\]"), ("rate=-2", "rate"), ("inner=3", "inner")]:
        with pytest.raises(ValueError, match=field):
            apply_overrides(_Example(), [item])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(_Example(), ["rate"])
    with pytest.raises(ValueError, match="list"):
        apply_overrides(_Example(), "rate=1")
    assert coerce("x", "3", Literal[1, 3]) == 3


@given(rate=st.floats(min_value=1e-300, max_value=1e300, allow_nan=False),
       count=st.integers(-10**12, 10**12), flag=st.booleans(),
       name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
       mode=st.sampled_from(["a", "b"]), sizes=st.lists(st.integers(0, 10**6), max_size=4),
       limit=st.one_of(st.none(), st.integers(-5, 5)), layers=st.integers(0, 100))
def test_overrides_read_back_what_the_command_line_text_says(
        rate, count, flag, name, mode, sizes, limit, layers):
    # oracle: the value a text was made from (repr of floats is exact; tuples comma-separated)
    texts = [f"rate={rate!r}", f"count={count}", f"flag={str(flag).lower()}", f"name={name}",
             f"mode={mode}", "sizes=" + ",".join(map(str, sizes)), f"limit={limit}",
             f"inner.layers={layers}"]
    expected = _Example(rate=rate, count=count, flag=flag, name=name, mode=mode,
                        sizes=tuple(sizes), limit=limit, inner=_Inner(layers=layers))
    assert apply_overrides(_Example(), texts) == expected
    assert config_from_dict(_Example, config_to_dict(expected)) == expected


@settings(max_examples=10)  # each example writes files with fsync and asks git for provenance
@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False, width=64),
                          st.integers(-2**62, 2**62)), min_size=1, max_size=20))
def test_runlog_csv_reads_back_the_exact_values(tmp_path_factory, rows):
    import pandas as pd

    folder = tmp_path_factory.mktemp("log")
    log = RunLog(folder, "run", None, seed=0, progress=False)
    for step, (value, count) in enumerate(rows):
        log.log(step, value=value, count=count)
    log.finish()
    table = pd.read_csv(folder / "run.csv")  # pandas 3 parses floats exactly by default
    assert table["value"].tolist() == [v for v, _ in rows]
    assert table["count"].tolist() == [c for _, c in rows]
    assert table["step"].tolist() == list(range(len(rows)))


def test_config_dict_round_trip_digest_and_docs():
    config = _Example(sizes=(1, 2), inner=_Inner(layers=4))
    values = config_to_dict(config)
    assert values["sizes"] == [1, 2] and values["inner"] == {"layers": 4}
    assert config_from_dict(_Example, values) == config
    assert config_digest(config) == config_digest(_Example(sizes=(1, 2), inner=_Inner(layers=4)))
    assert config_digest(config) != config_digest(_Example())
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict(_Example, {"nope": 1})
    docs = field_docs(_Example)
    assert docs["rate"] == "A step size." and docs["count"] == ""
    assert all(field_docs(toy.ToyConfig).values()), "every toy field documents itself"


# ----------------------------------------------------------------------------- registry


def test_every_registered_trainer_loads_with_valid_presets():
    for name in TRAINER_MODULES:
        spec = get_trainer(name)
        assert spec.name == name and spec.description
        for preset in spec.presets:
            assert isinstance(spec.config(preset), spec.config_cls)
    with pytest.raises(ValueError, match="not registered"):
        get_trainer("no-such-algorithm")
    with pytest.raises(ValueError, match="not a preset"):
        get_trainer("toy").config("nope")
    with pytest.raises(ValueError, match="presets"):
        TrainerSpec(name="x", description="", config_cls=toy.ToyConfig, presets={},
                    train=toy.train)


# ----------------------------------------------------------------------------- the toy trainer


def test_toy_linear_preset_converges_to_least_squares(tmp_path):
    config = toy.linear()
    run_trainer("toy", config, seed=4, out_dir=tmp_path, progress=False)
    weights = _final_state(tmp_path)
    data = toy.make_dataset(config, seed=4)
    design = np.hstack([data["x_train"], np.ones((config.n_train, 1))])
    exact, *_ = np.linalg.lstsq(design, data["y_train"], rcond=None)
    fitted = np.concatenate([weights["0.weight"].numpy().ravel(), weights["0.bias"].numpy()])
    # Full-batch AdamW on a strongly convex quadratic (128 samples, d = 4, float64) with a
    # cosine schedule to 0 over 800 steps: measured 2e-14 from the minimiser. 1e-9 leaves room
    # for other BLAS builds; a wrong gradient, shard or schedule leaves errors > 1e-3.
    np.testing.assert_allclose(fitted, exact, rtol=0, atol=1e-9)


def test_same_seed_same_bits_other_seed_other_numbers(tmp_path):
    config = _small_config()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_trainer("toy", config, seed=seed, out_dir=tmp_path / name, progress=False)
    _assert_same_params(_final_state(tmp_path / "a"), _final_state(tmp_path / "b"))
    csv_a = (tmp_path / "a" / "train-toy.csv").read_bytes()
    assert csv_a == (tmp_path / "b" / "train-toy.csv").read_bytes()
    assert csv_a != (tmp_path / "c" / "train-toy.csv").read_bytes()
    assert csv_a.startswith(b"step,loss,lr,test_mse\n5,")


def test_toy_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        toy.ToyConfig(batch_size=1000)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        toy.ToyConfig(hidden=(3, 0))
    with pytest.raises(ValueError, match="dropout"):
        toy.ToyConfig(dropout=1.0)
    with pytest.raises(ValueError, match="dtype"):
        toy.ToyConfig(dtype="float16")
    with pytest.raises(RunSetupError, match="config must be a ToyConfig"):
        run_trainer("toy", _Example(), seed=0, out_dir="unused")


def test_assert_resume_bitwise_accepts_the_toy_and_catches_a_broken_trainer(tmp_path):
    config = _small_config(steps=60, eval_every=20)
    # interrupted inside the 8th log call (step 40), after the checkpoint of step 30
    assert_resume_bitwise("toy", config, tmp_path / "toy", seed=2, checkpoint_every=10,
                          stop_after_log_calls=7)

    def forgets_the_optimizer(config, run):  # a typical resume bug: Adam's moments restart
        latest = run.checkpointer.latest

        def latest_without_moments():
            state = latest()
            if state is not None:
                state["optimizer"] = {**state["optimizer"], "state": {}}
            return state

        run.checkpointer.latest = latest_without_moments
        return toy.train(config, run)

    broken = dataclasses.replace(get_trainer("toy"), train=forgets_the_optimizer)
    with pytest.raises(AssertionError, match="differs after resuming"):
        assert_resume_bitwise(broken, config, tmp_path / "broken", seed=2, checkpoint_every=10,
                              stop_after_log_calls=7)
    with pytest.raises(AssertionError, match="finished within"):
        assert_resume_bitwise("toy", config, tmp_path / "short", checkpoint_every=10,
                              stop_after_log_calls=1000)
    with pytest.raises(AssertionError, match="no checkpoint"):
        assert_resume_bitwise("toy", config, tmp_path / "early", checkpoint_every=100,
                              stop_after_log_calls=3)


class _Env:  # an object without value equality, as environments in checkpoints are
    def __init__(self, seed):
        self.random = np.random.RandomState(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.history = [np.arange(3), {"t": torch.ones(2)}]


def test_state_comparison_looks_inside_objects_and_generators():
    from fixpoint_rl.deep.runtime import _assert_identical

    _assert_identical({"env": _Env(1), "x": float("nan")}, {"env": _Env(1), "x": float("nan")}, "s")
    for change, where in [(lambda e: e.random.rand(), r"s\['env'\].__dict__\['random'\]"),
                          (lambda e: torch.rand(1, generator=e.generator), "generator"),
                          (lambda e: e.history[1]["t"].add_(1e-7), r"\['t'\]")]:
        changed = _Env(1)
        change(changed)
        with pytest.raises(AssertionError, match=where):
            _assert_identical({"env": _Env(1)}, {"env": changed}, "s")


def test_ctrl_c_keeps_the_checkpoint_and_the_rerun_matches(tmp_path, monkeypatch, capsys):
    """Ctrl-C at step 67 -> exit 130; rerunning the command resumes from step 60 and ends
    bitwise equal (parameters and CSV) to an uninterrupted run."""
    args = ["train", "toy", *[a for s in SMALL for a in ("--set", s)], "--seed", "7",
            "--checkpoint-every", "10", "--no-progress"]
    assert cli_main([*args, "--out", str(tmp_path / "ref")]) == 0

    original = RunLog.log

    def interrupt_at_67(self, step, **metrics):
        if step >= 67:
            raise KeyboardInterrupt
        original(self, step, **metrics)

    monkeypatch.setattr(RunLog, "log", interrupt_at_67)
    assert cli_main([*args, "--out", str(tmp_path / "run")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert '"status": "interrupted"' in (tmp_path / "run" / "train-toy.json").read_text()
    monkeypatch.setattr(RunLog, "log", original)
    assert Checkpointer(tmp_path / "run" / "checkpoints", 1).latest()["step"] == 60
    assert cli_main([*args, "--out", str(tmp_path / "run"), "--resume"]) == 0
    _assert_same_params(_final_state(tmp_path / "ref"), _final_state(tmp_path / "run"))
    assert (tmp_path / "ref" / "train-toy.csv").read_bytes() == \
        (tmp_path / "run" / "train-toy.csv").read_bytes()
    # a different config in the same folder is refused before anything is touched
    assert cli_main([*args, "--out", str(tmp_path / "run"), "--set", "lr=0.5"]) == 2
    assert "config.lr: saved 0.01, now 0.5" in capsys.readouterr().err


def test_cli_user_errors_exit_2_with_one_line(capsys, tmp_path):
    cases = [
        (["train"], "name an algorithm"),
        (["train", "nope"], "not registered"),
        (["train", "toy", "--preset", "nope"], "not a preset"),
        (["train", "toy", "--set", "lrr=1"], "valid keys"),
        (["train", "toy", "--set", "lr=-1"], "lr must lie"),
        (["train", "toy", "--seed", "-3"], "--seed"),
        (["train", "toy", "--threads", "0"], "--threads"),
        (["train", "toy", "--device", "tpu"], "device"),
        (["train", "toy", "--resume", "--out", str(tmp_path / "none")], "no checkpoint"),
        (["train", "toy", "--grid", "lr"], "--grid"),
        (["train", "toy", "--seeds", "0", "--grid", "lr=0.1,-1"], "lr must lie"),
    ]
    for argv, message in cases:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    assert cli_main(["train", "--list"]) == 0
    assert "toy" in capsys.readouterr().out
    assert cli_main(["train", "toy", "--show-config", "--set", "lr=0.5"]) == 0
    shown = capsys.readouterr().out
    assert "lr = 0.5" in shown and "Adam step size" in shown


# ----------------------------------------------------------------------------- other processes


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fixpoint_rl.benchmarks", "train", "toy",
            *[a for s in SMALL for a in ("--set", s)], "--seed", "11", "--out", str(out),
            "--checkpoint-every", "10", "--no-progress", *extra]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(CHECKPOINT_PAUSE_ENV, None)
    env.update(extra)
    return env


def _wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"process ended (rc {process.returncode}) before {what}: "
                                 f"{process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_sigkill_at_any_moment_then_rerun_is_bitwise_identical(tmp_path):
    """Kill -9 (1) at a random moment after the first checkpoint and (2), after a rerun, while
    a checkpoint is being written (a test hook sleeps between its temporary file and the
    rename); (3) the same command once more ends with parameters and CSV identical to an
    uninterrupted run. The reference and step (3) run in this process (same code, one thread)."""
    reference = tmp_path / "reference"
    run_trainer("toy", _small_config(), seed=11, out_dir=reference, progress=False,
                checkpoint_every=10)
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"

    # (1) killed at a random moment after checkpoint 10; every checkpoint pauses 0.1 s (a
    # sleep, unaffected by CPU load), so at least 9 * 0.1 s of the run remain when checkpoint
    # 10 appears: the kill (<= 0.5 s later) always lands inside the run.
    delay = float(np.random.default_rng().uniform(0.0, 0.5))
    process = subprocess.Popen(_command(out), env=_env(**{CHECKPOINT_PAUSE_ENV: "0.1"}),
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    _wait_for(lambda: (checkpoints / "step-0000000010.pt").exists(), process, "checkpoint 10")
    time.sleep(delay)
    assert process.poll() is None, f"run finished before the kill (delay {delay:.3f} s)"
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = int(Checkpointer(checkpoints, 1).latest_path().name[5:15])

    # (2) rerun, killed while the checkpoint 20 steps after the last one is being written
    target = last + 20
    assert target < 100, f"the first run got too far before the kill (checkpoint {last})"
    process = subprocess.Popen(_command(out),
                               env=_env(**{CHECKPOINT_PAUSE_ENV: f"60@{target}"}),
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    _wait_for(lambda: any(checkpoints.glob(f".step-{target:010d}.pt.*.tmp")), process,
              f"the temporary file of checkpoint {target}")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert Checkpointer(checkpoints, 1).latest_path().name == f"step-{target - 10:010d}.pt"

    # (3) the same command again (in this process), to the end
    assert cli_main(_command(out)[3:]) == 0
    _assert_same_params(_final_state(reference), _final_state(out))
    assert (reference / "train-toy.csv").read_bytes() == (out / "train-toy.csv").read_bytes(), \
        f"kill delay {delay:.3f} s, last checkpoint {last}"
    assert not list(checkpoints.glob("*.tmp"))


def test_two_fresh_processes_with_one_seed_agree_bitwise(tmp_path):
    processes = [subprocess.Popen(_command(tmp_path / name), env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
                 for name in ("a", "b")]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    _assert_same_params(_final_state(tmp_path / "a"), _final_state(tmp_path / "b"))
    assert (tmp_path / "a" / "train-toy.csv").read_bytes() == \
        (tmp_path / "b" / "train-toy.csv").read_bytes()
