"""D4RL's behaviour agent: d3rlpy's online SAC, trained here with a loop that resumes exactly.

D4RL (Fu et al. 2020) made its MuJoCo datasets with online SAC; this module trains d3rlpy's
``SAC`` at its MuJoCo reproduction's settings (two critics, [256, 256] networks, batch 256,
learning rates 3e-4, gamma 0.99, tau 0.005; one update per env step once ``update_start``
steps are taken, the first ``random_steps`` actions uniform) and snapshots the policy with a
deterministic ``eval_episodes``-episode evaluation every ``snapshot_every`` env steps.

d3rlpy's ``fit_online`` cannot stop and resume, so the loop is written here with d3rlpy's
algorithm (its networks, losses and optimisers, ``SAC.update``) and a transition log of
our own, which is also the behaviour data (D4RL's medium-replay). Every snapshot is a
checkpoint: the models and optimisers, the log, the numpy and torch RNG states and the grad
step. The env is rebuilt on resume by replaying the running episode's actions from its
recorded reset seed (MuJoCo is deterministic), so a killed run resumed on the same machine
and thread count takes the same steps as an unbroken one.

Actions are in the agent's [-1, 1] box (``make_env`` rescales); the suite writes them in
the env's units. Runs in the baselines venv (d3rlpy).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm_offline.errors import WriteError
from alm_offline.runtime.envs import make_env
from alm_offline.runtime.files import replaced_on_success
from alm_offline.runtime.rollout import evaluate
from alm_offline.training.baselines import BaselineError, import_d3rlpy

CHECKPOINT = "sac-checkpoint.pt"
SNAPSHOT_DIR = "snapshots"


@dataclass(frozen=True)
class SacSettings:
    """One SAC behaviour run. ``steps`` env steps; the rest as the module docstring says."""

    env_id: str
    steps: int = 150_000
    seed: int = 0
    snapshot_every: int = 10_000
    eval_episodes: int = 10
    random_steps: int = 5_000
    update_start: int = 1_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)


@dataclass
class TransitionLog:
    """Every env step of the run, in order. obs, next_obs: (N, D); action: (N, A) in the
    agent's box; reward, terminated, truncated: (N,); episode_seeds: (E,) reset seeds of the
    episodes begun; ``size`` rows filled."""

    obs: np.ndarray
    next_obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_seeds: list[int]
    size: int = 0

    @classmethod
    def empty(cls, steps: int, obs_dim: int, action_dim: int) -> TransitionLog:
        return cls(
            obs=np.zeros((steps, obs_dim), np.float32),
            next_obs=np.zeros((steps, obs_dim), np.float32),
            action=np.zeros((steps, action_dim), np.float32),
            reward=np.zeros(steps, np.float32),
            terminated=np.zeros(steps, bool),
            truncated=np.zeros(steps, bool),
            episode_seeds=[],
        )

    def append(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        i = self.size
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.truncated[i] = next_obs, terminated, truncated
        self.size += 1

    def episode_start(self) -> int:
        """The row where the running (last) episode began."""
        ends = np.flatnonzero(self.terminated[: self.size] | self.truncated[: self.size])
        return int(ends[-1]) + 1 if len(ends) else 0

    def state(self) -> dict[str, Any]:
        n = self.size
        arrays = ("obs", "next_obs", "action", "reward", "terminated", "truncated")
        return {
            **{k: getattr(self, k)[:n].copy() for k in arrays},
            "episode_seeds": list(self.episode_seeds),
            "size": n,
        }

    def load(self, state: dict[str, Any]) -> None:
        n = state["size"]
        for key in ("obs", "next_obs", "action", "reward", "terminated", "truncated"):
            getattr(self, key)[:n] = state[key]
        self.episode_seeds, self.size = list(state["episode_seeds"]), n


def create_sac(settings: SacSettings, env: Any) -> Any:
    """d3rlpy's SAC at its MuJoCo settings, built for ``env``, its weights from the seed."""
    d3rlpy = import_d3rlpy()
    encoder = d3rlpy.models.encoders.VectorEncoderFactory(list(settings.hidden))
    config = d3rlpy.algos.SACConfig(
        batch_size=settings.batch_size,
        gamma=0.99,
        actor_learning_rate=settings.learning_rate,
        critic_learning_rate=settings.learning_rate,
        temp_learning_rate=settings.learning_rate,
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
        tau=0.005,
        n_critics=2,
    )
    torch.manual_seed(settings.seed)
    sac = config.create(device="cpu:0")
    sac.build_with_env(env)
    return sac


def policy_of(sac: Any, *, deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
    """obs (D,) -> action (A,) in the agent's box: the policy's mean, or a sample from it
    (torch's global RNG)."""
    act = sac.predict if deterministic else sac.sample_action

    def policy(obs: np.ndarray) -> np.ndarray:
        return act(np.asarray(obs, np.float32)[None])[0]

    return policy


def snapshot_path(work_dir: Path, step: int) -> Path:
    return work_dir / SNAPSHOT_DIR / f"sac-{step:07d}.d3"


def load_snapshot(settings: SacSettings, work_dir: Path, step: int) -> Any:
    """The SAC policy snapshotted at ``step``."""
    with closing(make_env(settings.env_id, seed=settings.seed)) as env:
        sac = create_sac(settings, env)
    sac.load_model(str(snapshot_path(work_dir, step)))
    return sac


class SacRun:
    """A SAC behaviour run in ``work_dir``: ``train`` goes on from its last checkpoint."""

    def __init__(self, settings: SacSettings, work_dir: Path, log: Callable[[str], Any] = print):
        self.settings, self.work_dir, self.log = settings, Path(work_dir), log
        self.env = make_env(settings.env_id, seed=settings.seed)
        self.eval_env = make_env(settings.env_id, seed=settings.seed)
        self.sac = create_sac(settings, self.env)
        obs_dim = self.env.observation_space.shape[0]
        self.transitions = TransitionLog.empty(
            settings.steps, obs_dim, self.env.action_space.shape[0]
        )
        self.rng = np.random.default_rng([settings.seed, 7])
        self.evaluations: list[list[float]] = []  # [step, mean return]
        self.obs: np.ndarray | None = None

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()

    # ----------------------------------------------------------------- the loop
    def train(self) -> list[list[float]]:
        """Train to ``settings.steps`` (resuming); the evaluations [[step, mean return]]."""
        s = self.settings
        if self.checkpoint_path.exists():
            self.resume()
        else:
            self._new_episode()
        d3rlpy = import_d3rlpy()
        log = self.transitions
        while log.size < s.steps:
            step = log.size + 1
            if step <= s.random_steps:
                action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape)
                action = action.astype(np.float32)
            else:
                action = policy_of(self.sac, deterministic=False)(self.obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            log.append(self.obs, action, reward, next_obs, terminated, truncated)
            self.obs = next_obs
            if terminated or truncated:
                self._new_episode()
            losses = self.sac.update(self._batch(d3rlpy)) if step > s.update_start else None
            self.after_step(step, losses)
        return self.evaluations

    def after_step(self, step: int, losses: dict[str, float] | None) -> None:
        """What follows env step ``step`` (and its update's ``losses``, None before updates
        start): a snapshot every ``snapshot_every`` steps and at the end."""
        if step % self.settings.snapshot_every == 0 or step == self.settings.steps:
            self._snapshot(step)

    def _batch(self, d3rlpy: Any) -> Any:
        """A uniform batch of logged transitions as d3rlpy's mini-batch (arrays, no loop)."""
        log, size = self.transitions, self.settings.batch_size
        idx = self.rng.integers(0, log.size, size)
        ones = np.ones((size, 1), np.float32)
        return d3rlpy.dataset.TransitionMiniBatch(
            observations=log.obs[idx],
            actions=log.action[idx],
            rewards=log.reward[idx, None],
            next_observations=log.next_obs[idx],
            next_actions=np.zeros_like(log.action[idx]),
            terminals=log.terminated[idx, None].astype(np.float32),
            intervals=ones,
            transitions=[],
        )

    def _new_episode(self) -> None:
        seed = int(self.rng.integers(2**31))
        self.transitions.episode_seeds.append(seed)
        self.obs, _ = self.env.reset(seed=seed)

    # ----------------------------------------------------------------- snapshots
    def _snapshot(self, step: int) -> None:
        """Evaluate, keep the policy, then checkpoint the whole run."""
        returns = evaluate(
            policy_of(self.sac, deterministic=True),
            self.eval_env,
            self.settings.eval_episodes,
            self.settings.seed,
        )
        self.evaluations.append([step, float(returns.mean())])
        path = snapshot_path(self.work_dir, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(path, lambda tmp: self.sac.save_model(str(tmp)))
        self.save_checkpoint(step)
        self.log(
            f"{self.settings.env_id}: SAC {step}/{self.settings.steps} env steps, "
            f"evaluation {returns.mean():.1f}"
        )

    def save_checkpoint(self, step: int, **extra: Any) -> None:
        """Everything an exact resume needs (models, targets and optimisers; the log; the
        RNGs; the grad step; the evaluations; ``extra``) in ``checkpoint_path``."""
        model = io.BytesIO()
        self.sac._impl.save_model(model)  # models, targets and optimisers
        state = {
            "settings": self.settings,
            "step": step,
            "model": model.getvalue(),
            "grad_step": self.sac.grad_step,
            "log": self.transitions.state(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "evaluations": self.evaluations,
            **extra,
        }
        self._write(self.checkpoint_path, lambda tmp: torch.save(state, tmp))

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT

    @staticmethod
    def _write(path: Path, write: Callable[[Path], Any]) -> None:
        try:
            with replaced_on_success(path) as tmp:
                write(tmp)
        except OSError as exc:
            raise WriteError.of(path, exc, "checkpoint") from None

    def resume(self) -> dict[str, Any]:
        """The run put back as its checkpoint left it; the checkpoint's state."""
        state = torch.load(self.checkpoint_path, weights_only=False)
        if state["settings"] != self.settings:
            raise BaselineError(
                f"{self.checkpoint_path} is a run with other settings "
                f"({state['settings']}); use another --work-dir or --overwrite"
            )
        self.sac._impl.load_model(io.BytesIO(state["model"]))
        self.sac.set_grad_step(state["grad_step"])
        self.transitions.load(state["log"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.evaluations = [list(row) for row in state["evaluations"]]
        self.obs = self._replay_running_episode()
        return state

    def _replay_running_episode(self) -> np.ndarray:
        """The env put back where the log stops: the running episode's reset and actions
        replayed; its observation (a new episode's first when the log ends on an end)."""
        log = self.transitions
        start = log.episode_start()
        obs, _ = self.env.reset(seed=log.episode_seeds[-1])
        for row in range(start, log.size):
            obs, *_ = self.env.step(log.action[row])
        if log.size > start and not np.array_equal(obs, log.next_obs[log.size - 1]):
            raise BaselineError(
                f"replaying {self.settings.env_id}'s running episode does not reproduce the "
                "checkpoint's observation (another MuJoCo or machine?)"
            )
        return obs
