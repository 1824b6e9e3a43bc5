"""Environment factory: gymnasium ids, the paper's truncated-observation tasks, seeding.

Every environment made here acts in the normalised action box [-1, 1]^A (rescaled to the
task's own bounds by ``RescaleAction``) and returns float32 observations, so the agent,
the replay and every dataset written by this project share one convention.

Truncated-observation tasks of the paper (MBPO benchmark), registered under our own ids:

* ``T-Ant-v5``: ``Ant-v5`` without contact forces in the observation (27 dims).
* ``T-Humanoid-v5``: ``Humanoid-v5`` with only ``qpos[2:]`` and ``qvel`` (45 dims). Its
  reward is Humanoid-v5's (forward weight 1.25 on the torso's centre of mass velocity),
  not MBPO's variant (0.25 weight, mass-centre x); returns are therefore not directly
  comparable with MBPO's T-Humanoid numbers.

MuJoCo's own C warnings would print ``WARNING: ...`` lines and write ``MUJOCO_LOG.TXT``
into the current folder; importing this module routes them to Python as ``MujocoWarning``,
each message once per process. Deprecation notices about a task's model file (gymnasium's
HalfCheetah-v5 XML uses a deprecated compiler attribute) are dropped: nothing a user of the
task can act on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from alm_offline.errors import AlmError, AlmWarning

TRUNCATED_TASKS: dict[str, tuple[str, dict]] = {
    "T-Ant-v5": ("Ant-v5", {"include_cfrc_ext_in_observation": False}),
    "T-Humanoid-v5": (
        "Humanoid-v5",
        {
            "include_cinert_in_observation": False,
            "include_cvel_in_observation": False,
            "include_qfrc_actuator_in_observation": False,
            "include_cfrc_ext_in_observation": False,
        },
    ),
}


class EnvError(AlmError):
    """An environment id or configuration that cannot be made."""


class MujocoWarning(AlmWarning):
    """A warning of MuJoCo's C library (its model compiler or its simulator)."""


_MUJOCO_SAID: set[str] = set()


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: each message once, as a ``MujocoWarning``; the model
    compiler's deprecation notices not at all."""
    if message.startswith("compiler attribute") and "is deprecated" in message:
        return
    if message not in _MUJOCO_SAID:
        _MUJOCO_SAID.add(message)
        warnings.warn(f"MuJoCo: {message}", MujocoWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)


def _register_truncated_tasks() -> None:
    for env_id, (base_id, kwargs) in TRUNCATED_TASKS.items():
        if env_id in gym.registry:
            continue
        base = gym.spec(base_id)
        gym.register(
            id=env_id,
            entry_point=base.entry_point,
            kwargs={**base.kwargs, **kwargs},
            max_episode_steps=base.max_episode_steps,
        )


_register_truncated_tasks()


@dataclass(frozen=True)
class EnvSpec:
    """Shapes of an environment as the agent sees it."""

    env_id: str
    obs_dim: int
    action_dim: int
    max_episode_steps: int | None


def make_env(
    env_id: str,
    seed: int | None = None,
    render_mode: str | None = None,
    *,
    rescale_actions: bool = True,
) -> gym.Env:
    """Make ``env_id`` with a [-1, 1] action box and float32 observations.

    ``seed`` seeds the action space; the first ``reset`` is seeded by the caller.
    ``rescale_actions=False`` keeps the env's own action box (a dataset collector records
    actions in the env's units). Raises ``EnvError`` (one line) for unknown ids or non-Box
    spaces.
    """
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except gym.error.Error as exc:
        raise EnvError(f"unknown or unusable env id '{env_id}': {exc}") from None
    except ImportError as exc:  # e.g. a missing optional dependency of that env
        raise EnvError(f"env '{env_id}' cannot be made: {exc}") from None
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(
        env.observation_space, gym.spaces.Box
    ):
        env.close()
        raise EnvError(f"env '{env_id}' must have Box observation and action spaces")
    if len(env.observation_space.shape) != 1:
        env.close()
        raise EnvError(
            f"env '{env_id}' has image or nested observations; ALM here needs flat vectors"
        )
    low, high = env.action_space.low, env.action_space.high
    if rescale_actions and not (np.all(low == -1.0) and np.all(high == 1.0)):
        unit = np.ones(env.action_space.shape, dtype=env.action_space.dtype)
        env = gym.wrappers.RescaleAction(env, min_action=-unit, max_action=unit)
    if env.observation_space.dtype != np.float32:
        env = gym.wrappers.TransformObservation(
            env,
            lambda obs: np.asarray(obs, dtype=np.float32),
            gym.spaces.Box(
                np.full(env.observation_space.shape, -np.inf, np.float32),
                np.full(env.observation_space.shape, np.inf, np.float32),
            ),
        )
    if seed is not None:
        env.action_space.seed(seed)
    return env


def env_spec(env: gym.Env) -> EnvSpec:
    """The shapes and episode limit of an env made by ``make_env``."""
    spec = env.spec
    return EnvSpec(
        env_id=spec.id if spec is not None else "unknown",
        obs_dim=int(env.observation_space.shape[0]),
        action_dim=int(env.action_space.shape[0]),
        max_episode_steps=spec.max_episode_steps if spec is not None else None,
    )


def describe_env(env_id: str) -> EnvSpec:
    """Shapes of ``env_id`` without keeping the env around."""
    env = make_env(env_id)
    try:
        return env_spec(env)
    finally:
        env.close()


def rng_state(env: gym.Env) -> dict:
    """The env's reset RNG state (a plain dict)."""
    return env.unwrapped.np_random.bit_generator.state


def set_rng_state(env: gym.Env, state: dict) -> None:
    """Restore what ``rng_state`` returned; the next ``reset()`` then matches the saved run."""
    env.unwrapped.np_random.bit_generator.state = state


class EpisodeTape:
    """How the training env reached its current state: the reset that began the episode
    (its seed, or the env's RNG state before a seedless reset) and the actions taken since.

    A checkpoint stores the tape (``state``) and a resume replays it (``replay``): the
    env is then bit for bit where the saved run left it, mid-episode or not, whatever the
    env (the simulators are deterministic), with no simulator internals stored.
    """

    def __init__(self, reset_seed: int | None, rng: dict | None) -> None:
        self.reset_seed, self.rng = reset_seed, rng
        self.actions: list[np.ndarray] = []

    @classmethod
    def begin(cls, env: gym.Env, seed: int | None = None) -> tuple[np.ndarray, EpisodeTape]:
        """Reset ``env`` (with ``seed``, or from its own RNG) and start recording."""
        tape = cls(seed, None if seed is not None else rng_state(env))
        obs, _ = env.reset(seed=seed)
        return obs, tape

    def record(self, action: np.ndarray) -> None:
        self.actions.append(np.array(action, dtype=np.float32, copy=True))

    def state(self) -> dict:
        """Plain values and a tensor (what ``torch.load(weights_only=True)`` reads)."""
        import torch  # here: making an env needs no torch

        actions = np.stack(self.actions) if self.actions else np.zeros((0, 0), np.float32)
        return {
            "reset_seed": self.reset_seed,
            "rng": self.rng,
            "actions": torch.from_numpy(actions),
        }

    @classmethod
    def replay(cls, env: gym.Env, state: dict) -> tuple[np.ndarray, EpisodeTape]:
        """Bring ``env`` to the state ``state`` recorded; returns its observation and the tape."""
        tape = cls(state["reset_seed"], state["rng"])
        if tape.rng is not None:
            set_rng_state(env, tape.rng)
        obs, _ = env.reset(seed=tape.reset_seed)
        for action in state["actions"].numpy():
            obs, *_ = env.step(action)
            tape.record(action)
        return obs, tape


class SeedEnvs:
    """The online loop's env step, for S seeds: each seed's env stepped with its action, the
    transition stored in its replay buffer and recorded on its episode tape. Online
    training, ``alm bench`` and ``alm bench --seeds`` all step through it, so the benchmark
    times the loop users run. An ended episode restarts only when ``restart`` is called
    (online: after the step's update and evaluation)."""

    def __init__(
        self, envs: list[gym.Env], buffers: list, begun: list[tuple[np.ndarray, EpisodeTape]]
    ) -> None:
        """``begun[s]``: seed s's current observation and tape (``EpisodeTape.begin`` or
        ``.replay``); ``buffers[s]`` its replay (a ``ReplayBuffer``)."""
        self.envs, self.buffers = envs, buffers
        self.obs = [obs for obs, _ in begun]
        self.tapes = [tape for _, tape in begun]

    @classmethod
    def start(cls, envs: list[gym.Env], buffers: list, seeds: list[int | None]) -> SeedEnvs:
        """Every env reset (with its seed) and its first observation stored."""
        begun = [EpisodeTape.begin(env, seed) for env, seed in zip(envs, seeds, strict=True)]
        for buffer, (first, _) in zip(buffers, begun, strict=True):
            buffer.start_episode(first)
        return cls(envs, buffers, begun)

    def observations(self) -> np.ndarray:
        """(S, obs_dim): what each seed acts on next."""
        return np.stack(self.obs)

    def step(self, actions: np.ndarray) -> list[int]:
        """Step seed s's env with ``actions[s]`` (S, A) and store the transition; returns
        the seeds whose episodes ended (terminated or truncated)."""
        ended = []
        for index, (env, buffer, tape) in enumerate(
            zip(self.envs, self.buffers, self.tapes, strict=True)
        ):
            next_obs, reward, terminated, truncated, _ = env.step(actions[index])
            buffer.add(actions[index], float(reward), bool(terminated), next_obs)
            tape.record(actions[index])
            self.obs[index] = next_obs
            if terminated or truncated:
                ended.append(index)
        return ended

    def restart(self, index: int) -> None:
        """Begin seed ``index``'s next episode (a reset from its env's own RNG)."""
        self.obs[index], self.tapes[index] = EpisodeTape.begin(self.envs[index])
        self.buffers[index].start_episode(self.obs[index])

    def tape_states(self) -> list[dict]:
        """Each seed's episode tape, for a checkpoint."""
        return [tape.state() for tape in self.tapes]

    def close(self) -> None:
        for env in self.envs:
            env.close()
