"""``alm eval``: deterministic returns (and a video) of a saved checkpoint, ALM's or a
baseline's (loaded through ``training.methods``), with the run's evaluation protocol
(``runtime.rollout.evaluate``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from alm_offline.errors import AlmError
from alm_offline.runtime.files import probe_can_create, replaced_on_success
from alm_offline.runtime.rollout import Frame, eval_row, evaluate
from alm_offline.scores import reference_scores
from alm_offline.training.rundir import read_summary

if TYPE_CHECKING:
    from alm_offline.training.methods import SavedPolicy


# ----------------------------------------------------------------------------- alm eval
class EvalError(AlmError):
    """Bad input to ``evaluate_checkpoint`` (one-line message)."""


@dataclass
class EvalReport:
    """What ``alm eval`` prints and writes."""

    checkpoint: str
    env: str
    episodes: int
    seed: int
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    returns: list[float]
    normalized_score_mean: float | None = None
    normalized_score_std: float | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    video: str | None = None
    latent: str = "mean"
    video_frames: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line of returns (and normalised score); a second naming the video."""
        line = (
            f"{self.env}: return {self.return_mean:.1f} +- {self.return_std:.1f} "
            f"(min {self.return_min:.1f}, max {self.return_max:.1f}) "
            f"over {self.episodes} episodes"
        )
        if self.normalized_score_mean is not None:
            line += f"; normalised score {self.normalized_score_mean:.1f}"
        if self.video:
            line += f"\nvideo: {self.video} ({self.video_frames} frames)"
        return line


def configure_offscreen_rendering() -> str:
    """Pick MuJoCo's offscreen GL backend before any renderer exists: EGL with a GPU, else
    OSMesa (software). A ``MUJOCO_GL`` already set by the user wins. Returns the backend."""
    import torch

    backend = os.environ.setdefault("MUJOCO_GL", "egl" if torch.cuda.is_available() else "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def check_writable(path: Path) -> None:
    """Fail early (``EvalError``) when ``path`` cannot be written as a file."""
    if path.is_dir():
        raise EvalError(f"output '{path}' is a directory")
    try:
        probe_can_create(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalError(f"cannot write '{path}': {exc.strerror}") from None


class Mp4Writer:
    """Streams frames into the mp4 file ``path``; ``close`` finishes it."""

    def __init__(self, path: Path, fps: float) -> None:
        import imageio.v2 as imageio

        self.frames = 0
        self._writer = imageio.get_writer(
            path, fps=fps, codec="libx264", quality=7, macro_block_size=1
        )

    def __call__(self, frame: Frame) -> None:
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()


def _run_reference_scores(run_dir: Path, cfg: Any) -> tuple[float, float] | None:
    """The run's own references (offline dataset, eval.ref_*), else D4RL's for its env."""
    summary = read_summary(run_dir)
    if summary.get("ref_min_score") is not None and summary.get("ref_max_score") is not None:
        return float(summary["ref_min_score"]), float(summary["ref_max_score"])
    if cfg.eval.ref_min is not None and cfg.eval.ref_max is not None:
        return cfg.eval.ref_min, cfg.eval.ref_max
    return reference_scores(cfg.env)


def evaluate_checkpoint(
    path: str | Path,
    *,
    episodes: int = 10,
    seed: int = 0,
    env_id: str | None = None,
    video: str | Path | None = None,
    device: str = "cpu",
    which: str = "latest",
    latent: str | None = None,
) -> EvalReport:
    """Deterministic returns of a run's latest checkpoint (or a checkpoint file).

    The env is the run's (for offline runs, the dataset's evaluation env) unless ``env_id``
    is given, which a run on a dataset that names no env needs; it must have the
    checkpoint's observation and action sizes. ``video`` writes
    the first episode as an mp4 rendered offscreen. ``latent`` (mean or sample) is the z the
    policy acts on; None takes the run's ``eval.latent``.
    """
    from alm_offline.training.methods import load_policy

    video_path = _check_request(episodes, seed, video)
    saved = load_policy(path, which=which, device=device, latent=latent, seed=seed)
    cfg = saved.cfg
    if not (env_id or cfg.env):
        raise EvalError(
            f"'{path}' was trained on dataset '{cfg.dataset}', which names no env: evaluate it "
            f"with --env ENV_ID (an env of obs/action dims {saved.dims[0]}/{saved.dims[1]})"
        )
    env_id = env_id or cfg.env
    returns, frames = _run_episodes(saved, env_id, episodes, seed, video_path)
    if env_id == cfg.env:
        refs = _run_reference_scores(saved.run_dir, cfg)
    else:
        refs = reference_scores(env_id)
    report = EvalReport(
        checkpoint=str(saved.checkpoint),
        env=env_id,
        episodes=episodes,
        seed=seed,
        **eval_row({}, returns, refs),
        video=str(video_path) if video_path else None,
        video_frames=frames,
        latent=saved.latent,
    )
    if refs is not None:
        report.ref_min_score, report.ref_max_score = refs
    return report


def _check_request(episodes: int, seed: int, video: str | Path | None) -> Path | None:
    """``EvalError`` for a bad count, seed or video path; the video's path (renderer set)."""
    if episodes < 1:
        raise EvalError(f"--episodes must be at least 1, got {episodes}")
    if seed < 0:
        raise EvalError(f"--seed must be >= 0, got {seed}")
    if video is None:
        return None
    video_path = Path(video)
    if video_path.suffix.lower() != ".mp4":
        raise EvalError(f"--video must name an .mp4 file, got '{video_path}'")
    check_writable(video_path)
    configure_offscreen_rendering()
    return video_path


def _run_episodes(
    saved: SavedPolicy, env_id: str, episodes: int, seed: int, video_path: Path | None
) -> tuple[list[float], int | None]:
    """Returns of ``episodes`` episodes of ``saved.act`` in ``env_id`` (the first one filmed
    into ``video_path`` if given) and the frames filmed; the video is written whole or not
    at all."""
    from alm_offline.runtime.envs import env_spec, make_env

    env = make_env(env_id, seed=seed, render_mode="rgb_array" if video_path else None)
    try:
        spec = env_spec(env)
        if (spec.obs_dim, spec.action_dim) != saved.dims:
            obs_dim, action_dim = saved.dims
            raise EvalError(
                f"checkpoint was trained on {saved.cfg.env or saved.cfg.dataset} (obs/action "
                f"dims {obs_dim}/{action_dim}); {env_id} has {spec.obs_dim}/{spec.action_dim}"
            )
        if video_path is None:
            return _episodes(saved, env, env_id, episodes, seed, None), None
        with replaced_on_success(video_path, video_path.suffix) as tmp:
            writer = Mp4Writer(tmp, fps=float(env.metadata.get("render_fps", 30)))
            try:
                returns = _episodes(saved, env, env_id, episodes, seed, writer)
            finally:
                writer.close()
        return returns, writer.frames
    finally:
        env.close()


def _episodes(
    saved: SavedPolicy, env: gym.Env, env_id: str, episodes: int, seed: int, writer: Any
) -> list[float]:
    try:
        return evaluate(saved.act, env, episodes, seed, writer)
    except gym.error.DependencyNotInstalled as exc:  # e.g. pygame for classic control
        missing = f"rendering {env_id} needs a package that is not installed: {exc}"
        raise EvalError(missing) from None
