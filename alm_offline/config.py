"""Typed configuration (OmegaConf structured config) with fail-fast validation.

Defaults are the paper's Table 3 on HalfCheetah-v5. ``load_config`` merges, in order:
the dataclass defaults, an optional YAML file (a path or the name of a bundled config:
``online``, ``quick``, ``offline``), then ``KEY=VALUE`` dotlist overrides. Unknown keys and
wrong types are a ``ConfigError`` with one line naming the key.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alm_offline.baseline_table import BASELINES
from alm_offline.errors import AlmError, AlmWarning, first_line

if TYPE_CHECKING:
    import torch


class ConfigError(AlmError):
    """A configuration that cannot be used."""


# Each choice of AgentConfig is a StrEnum: its members are the values a config file or a
# KEY=VALUE gives (OmegaConf stores them as strings, so files, checkpoints and summaries keep
# plain strings), checked once when a config loads (``validate``, through ``CHOICES``); the
# core converts a field to its member (``Termination(cfg.termination)``) and compares members,
# so a misspelt value there is an AttributeError, not a comparison that is never true.
class Encoder(StrEnum):
    MLP = "mlp"
    IDENTITY = "identity"  # z = s, MnM-like (Fig. 13)


class Classifier(StrEnum):
    MLP = "mlp"
    LINEAR = "linear"  # Fig. 16


class Termination(StrEnum):
    NONE = "none"  # the paper's infinite-horizon bound
    LEARNED = "learned"  # a head p(end | z, a) fit to the real flags (docs/termination.md)


class BcTerm(StrEnum):
    LIKELIHOOD = "likelihood"
    BEHAVIOUR_KL = "behaviour-kl"


class BcIndex(StrEnum):
    T = "t"  # a_0..a_{K-1} at z_0..z_{K-1}
    NEXT = "t+1"  # a_1..a_K at z_1..z_K, the bound's indexing


class ActorLoss(StrEnum):
    SVG = "svg"  # K-step imagined lambda-returns
    TD3 = "td3"  # -Q(z, pi(z)) (Fig. 5c)


class EncoderObjective(StrEnum):
    ALM = "alm"
    RECONSTRUCTION = "reconstruction"  # the encoder by maximum likelihood (Fig. 15)


class Precision(StrEnum):
    FP32 = "fp32"
    TF32 = "tf32"  # CUDA matmuls on TF32 cores
    BF16 = "bf16"  # autocast networks


def choice(default: StrEnum) -> Any:
    """A field whose values are the members of ``default``'s StrEnum, stored as strings:
    declared with the field, checked once (``validate``, through ``CHOICES``)."""
    kind = type(default)
    return field(default=default.value, metadata={"choices": tuple(m.value for m in kind)})


PRECISIONS = tuple(m.value for m in Precision)
BC_INDEXES = tuple(
    m.value for m in BcIndex
)  # agent.bc_index: which rollout actions carry App. A.7's BC term


@dataclass
class AgentConfig:
    """The ALM agent (paper Table 3) and its replay; the keys grouped by what they set
    (flat, as TD-MPC2's config groups its keys under comments)."""

    # -- the networks
    hidden_dim: int = 512  # width of encoder, reward, classifier, critic, actor MLPs
    model_hidden_dim: int = 1024  # width of the latent model MLP
    latent_dim: int = 50  # size of z
    encoder: str = choice(Encoder.MLP)  # identity: z = s, MnM-like (Fig. 13)
    classifier: str = choice(Classifier.MLP)  # linear (Fig. 16)
    # -- the bound (Eq. 6-8)
    seq_len: int = 3  # K: length of model rollouts in the bound
    gamma: float = 0.99  # discount
    lambda_: float = 0.95  # lambda of the policy's lambda-returns
    classifier_coef: float = 0.1  # c: weight of the classifier (KL) reward in the policy loss
    kl_coef: float = 1.0  # weight of the KL term in the encoder/model bound (Sec. 5.3: 0 = no KL)
    value_in_encoder_loss: bool = True  # Q(z_K) term in the encoder/model bound (Sec. 5.3)
    # episodes that end (Hopper, Walker2d falls; docs/termination.md): none (the paper's
    # infinite-horizon bound); learned: a head p(end | z, a) fit to the real flags weighs the
    # imagined lambda-returns by survival, and a real sequence ending in a terminal drops Q(z_K)
    termination: str = choice(Termination.NONE)
    # -- optimisation
    batch_size: int = 512  # sequences / transitions per update
    lr: float = 1e-4  # Adam learning rate of every parameter group
    tau: float = 0.005  # Polyak rate of the target encoder and target critic
    max_grad_norm: float = 100.0  # gradient-norm clip of each parameter group
    # -- acting and replay
    warmup_steps: int = 5000  # env steps of uniform random actions before updates start
    buffer_size: int = 100_000  # replay capacity in observations (1e6 for Humanoid)
    expl_std_start: float = 1.0  # exploration std at the first update
    expl_std_end: float = 0.1  # exploration std after expl_std_steps updates
    expl_std_steps: int = 100_000  # updates over which the std decays linearly
    stddev_clip: float = 0.3  # clip of the policy noise inside updates
    # standardise observations (per dim) with the data's mean and std, set at the first update
    # from the warm-up data (online) or the dataset (offline); off in the paper
    obs_norm: bool = False
    # -- offline ALM's behaviour-cloning term (App. A.7), in the bound's own units (1 = the
    # paper's): likelihood: bc_weight * sum_t -log pi(a_t | z_t) of the data's actions along
    # the model latents, pi = N(pi(z), s^2) with the exploration std s (so 1 / (2 s^2) per
    # squared error); behaviour-kl: bc_weight [log pi_b - log pi](a | z) in each imagined
    # step's reward (weighted through the lambda-returns as the reward is),
    # a ~ pi, along the actor's imagined rollouts, pi_b a Gaussian head fit to the data (the
    # paper's form, and the better on halfcheetah-medium-replay: docs/offline-locomotion.md)
    bc_term: str = choice(BcTerm.BEHAVIOUR_KL)
    bc_weight: float = 0.0  # weight of that term; 0: off (online ALM)
    # true: bc_weight is relative to the weight of the KL term it stands beside, as App. A.7's
    # bound weighs them alike (behaviour-kl: times classifier_coef c, the actor's KL estimate;
    # likelihood: times kl_coef), so 1 is the bound's 1:1; false: bc_weight as it is
    bc_relative_to_kl: bool = False
    # which rollout actions carry the behaviour-kl term: t (a_0..a_{K-1} at z_0..z_{K-1}) or
    # t+1 (a_1..a_K at z_1..z_K, the bound's indexing: step t's term is at a_{t+1})
    bc_index: str = choice(BcIndex.T)
    # -- variants of the paper's method (defaults = the main method; docs/agents-and-analyses.md)
    actor_loss: str = choice(ActorLoss.SVG)  # svg: K-step imagined lambda-returns;
    # td3: -Q(z, pi(z)) (Fig. 5c)
    # actor_loss=td3: > 0 maximises alpha Q / mean|Q| as TD3+BC does (its alpha: 2.5), so a
    # behaviour term keeps its weight; 0: plain Q
    td3_alpha: float = 0.0
    entropy_bonus: float = 0.0  # alpha of a SAC entropy bonus; > 0 learns the policy std (Tab. 5)
    action_penalty: float = 0.0  # weight of mean(pi(z)^2) along the rollout in the policy loss
    log_reward_shift: float = 0.0  # a of App. A.8: r -> a (log(r + a) - log a); 0 = off (Fig. 12)
    # alm, or reconstruction: the encoder by maximum likelihood (Fig. 15)
    encoder_objective: str = choice(EncoderObjective.ALM)
    # -- speed (the same update, computed faster)
    # fp32; tf32 (CUDA matmuls on TF32 cores); bf16 (autocast networks)
    precision: str = choice(Precision.FP32)
    cuda_graph: bool = True  # on CUDA, replay sampling + update from one captured CUDA graph
    # the fused update (one compiled graph, fused.py): auto (CPU runs of >= 10k updates x seeds),
    # on, off (true/false are read as on/off, so it is checked apart from CHOICES)
    compile: str = "auto"


@dataclass
class EvalConfig:
    """Deterministic evaluation cadence."""

    # env steps (online) or updates (offline) between evaluations (and one at the end);
    # 0: never evaluate (an offline dataset that names no env trains so)
    every: int = 5000
    episodes: int = 5  # episodes per evaluation
    latent: str = "mean"  # z the policy acts on: the encoder's mean, or a sample (the reference's)
    ref_min: float | None = None  # return of a random policy, for normalised scores
    ref_max: float | None = None  # return of an expert policy, for normalised scores


@dataclass
class LoggerConfig:
    """Logging backends besides the run directory's JSONL files (always written)."""

    tensorboard: bool = False  # TensorBoard event files in <run_dir>/tensorboard
    wandb: bool = False  # Weights & Biases (needs the wandb extra: pip install alm-offline[wandb])
    wandb_project: str = "alm-offline"  # the W&B project runs are logged to


@dataclass
class RunConfig:
    """One training run."""

    env: str = (
        "HalfCheetah-v5"  # gymnasium id, or T-Ant-v5 / T-Humanoid-v5 ("" offline: the dataset's)
    )
    dataset: str | None = None  # offline: .hdf5 file, Minari folder or id (None: the bundled one)
    method: str = "alm"  # alm; offline also d3rlpy's bc, td3+bc, iql, cql; online also sac
    clip_actions: bool = False  # offline: clip dataset actions into their box instead of failing
    # offline: the box the dataset's actions are stored in, one value (every dim) or one per dim
    # (--action-low/--action-high); empty: the box the dataset declares, else its env's
    action_low: list[float] = field(default_factory=list)
    action_high: list[float] = field(default_factory=list)  # its high bounds (see action_low)
    seed: int = 1  # seeds torch, numpy, the envs and the replay sampling
    # several seeds in one process (seeds=1,2,3): one batched computation, a run dir
    # RUN/s<SEED> per seed (docs/seeds.md); empty: seed alone. Given, it overrides seed
    seeds: list[int] = field(default_factory=list)
    device: str = "auto"  # cpu, cuda, cuda:N, or auto (cuda when available)
    steps: int = 200_000  # env steps (online) or gradient updates (offline)
    run_dir: str | None = None  # default: runs/<env>-s<seed>-<timestamp> (s<a>-<b>-... for seeds)
    checkpoint_every: int = 10_000  # env steps (online) or updates (offline) between checkpoints
    log_every: int = 1000  # updates between metrics.jsonl rows
    threads: int = 0  # torch CPU threads; 0: auto, the cores other processes leave free
    agent: AgentConfig = field(default_factory=AgentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


BUNDLED_CONFIGS = (
    "online",
    "online-cpu",
    "quick",
    "offline",
    "behaviour",
    "offline-locomotion",
    "offline-halfcheetah-sac",
    "offline-locomotion-sac",
)
COMPILE_MODES = ("auto", "on", "off")  # agent.compile (the fused update, fused.py)
EVAL_LATENTS = ("mean", "sample")


@dataclass(frozen=True)
class RunMode:
    """What an online or an offline run is made of, named once: the words other modules
    would otherwise spell out with ``mode == "online"``."""

    name: str  # "online" or "offline"
    step_key: str  # the x of its eval.jsonl and metrics.jsonl rows
    cell_key: str  # what a sweep's cells are for it: envs or datasets
    steps_are: str  # what its ``steps`` count, in words
    default_config: str | None  # a sweep's config when none is given (None: one is needed)
    where: str  # where a run trained, a template of its summary's entries

    @property
    def online(self) -> bool:
        """Whether runs of this mode act in an env (and count env steps)."""
        return self is ONLINE

    def where_of(self, summary: dict) -> str:
        """Where the run of ``summary`` trained, in words: on its dataset or its env steps."""
        return self.where.format(**summary)


ONLINE = RunMode(
    "online",
    "env_step",
    "env",
    "env steps",
    None,
    "({env_steps} env steps)",
)
OFFLINE = RunMode(
    "offline",
    "updates",
    "dataset",
    "updates",
    "offline",
    "on {dataset}",
)
MODES = {mode.name: mode for mode in (ONLINE, OFFLINE)}


def run_mode(name: str) -> RunMode:
    """The ``RunMode`` named ``name`` (``ConfigError`` for anything else)."""
    if name not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{name}'")
    return MODES[name]


BASELINE_METHODS = tuple(BASELINES)  # d3rlpy's, with its D4RL settings (baseline_table.py)
ONLINE_BASELINES = ("sac",)  # d3rlpy's online SAC at its MuJoCo settings (alm baseline sac)
METHODS = ("alm", *BASELINE_METHODS, *ONLINE_BASELINES)
# agent key -> its values, from the fields that declare them (``choice``)
CHOICES = {f.name: f.metadata["choices"] for f in fields(AgentConfig) if "choices" in f.metadata}
RENAMED = {  # keys of earlier versions -> the one line saying what replaced them
    "bc_coef": "agent.bc_coef was replaced by agent.bc_weight, in units of -log pi (bc_coef C at "
    "exploration std s is bc_weight 2 s^2 C: 10000 at s = 0.1 is 200), and agent.bc_term",
}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given (the ``device`` key,
    parsed where the config is: ``ConfigError`` for a device torch does not have)."""
    import torch  # here, so that the CLI reads this module's choices without torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device '{name}' is not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but torch sees no CUDA device")
    return device


def bundled_config_path(name: str) -> Path:
    """Path of a config shipped with the package (``online``, ``quick``, ``offline``)."""
    return Path(str(resources.files("alm_offline.configs").joinpath(f"{name}.yaml")))


def _resolve_config_file(config: str) -> Path:
    path = Path(config)
    if path.is_file():
        return path
    if config in BUNDLED_CONFIGS:
        return bundled_config_path(config)
    raise ConfigError(
        f"config file '{config}' not found (give a path or one of {', '.join(BUNDLED_CONFIGS)})"
    )


def _one_line(exc: OmegaConfBaseException) -> str:
    message = first_line(exc)
    key = getattr(exc, "full_key", None)
    return f"{message} (key '{key}')" if key and key not in message else message


def load_config(
    config: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Defaults <- YAML file <- ``KEY=VALUE`` overrides, then ``validate``."""
    merged: DictConfig = OmegaConf.structured(RunConfig)
    try:
        if config is not None:
            path = _resolve_config_file(config)
            try:
                loaded = OmegaConf.load(path)
            except Exception as exc:  # yaml errors come in several types
                raise ConfigError(f"cannot read config '{path}': {exc}") from None
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"config '{path}' must be a mapping of keys to values")
            refuse_renamed(OmegaConf.to_container(loaded, resolve=False))
            merged = OmegaConf.merge(merged, loaded)
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not KEY=VALUE")
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if key.startswith("agent."):
                refuse_renamed({"agent": {key[len("agent.") :]: None}})
        for item in overrides:
            merged = OmegaConf.merge(merged, _override_config(item))
        refuse_resolvers(OmegaConf.to_container(merged, resolve=False), "config")
        cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    explicit_seed = [item for item in overrides if item.split("=", 1)[0].strip() == "seed"]
    seed_ignored = bool(cfg.seeds and explicit_seed and cfg.seed not in cfg.seeds)
    cfg = settled(cfg)
    validate(cfg)
    if seed_ignored:
        warnings.warn(
            f"seeds={','.join(map(str, cfg.seeds))} trains those seeds: "
            f"{explicit_seed[-1].strip()} is ignored",
            AlmWarning,
            stacklevel=2,
        )
    return cfg


def settled(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the values its keys' spellings leave open settled, before ``validate``
    (which only checks, so that a config is never edited after it is validated):
    ``agent.compile`` true/false as on/off, and ``seed`` the first of ``seeds`` when a
    batch is given (a batch's config names its first seed)."""
    agent = replace(cfg.agent, compile=normalise_compile_mode(cfg.agent.compile))
    seed = cfg.seeds[0] if cfg.seeds else cfg.seed
    return replace(cfg, agent=agent, seed=seed)


def refuse_renamed(raw: Any) -> None:
    """``ConfigError`` naming the replacement of a key earlier versions had (``RENAMED``) in
    the raw config mapping ``raw``."""
    agent = raw.get("agent") if isinstance(raw, dict) else None
    for key in agent if isinstance(agent, dict) else ():
        if key in RENAMED:
            raise ConfigError(RENAMED[key])


def _override_config(item: str) -> DictConfig:
    """One ``KEY=VALUE`` override as a config to merge; ``ConfigError`` naming the key when
    its value cannot be read. ``seeds`` takes the command line's form, ``1,2,3`` and ranges
    ``1-5`` (``parse_seeds``), or a YAML list."""
    key, value = (part.strip() for part in item.split("=", 1))
    if key == "seeds" and not value.startswith("["):
        return OmegaConf.create({"seeds": parse_seeds(value)})
    try:
        return OmegaConf.from_dotlist([item])
    except OmegaConfBaseException:
        raise
    except Exception as exc:  # YAML's errors for a malformed value come in several types
        problem = first_line(exc).rstrip(":")
        raise ConfigError(f"{key}: cannot read the value '{value}' ({problem})") from None


def parse_seeds(text: str) -> list[int]:
    """``1,2,3``, ``1-5`` or a mix (``1-3,7``) as a list of seeds; ``ConfigError`` naming
    ``seeds`` for anything else (an empty item, a word, a range that runs backwards)."""
    seeds: list[int] = []
    for part in (item.strip() for item in text.split(",")):
        bounds = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)  # -1: validate says why
        if bounds is None:
            raise ConfigError(
                f"seeds: '{text}' is not a list of seeds (1,2,3, a range 1-5, or both)"
            )
        low = int(bounds[1])
        high = int(bounds[2]) if bounds[2] is not None else low
        if high < low:
            raise ConfigError(f"seeds: the range '{part}' runs backwards")
        seeds.extend(range(low, high + 1))
    return seeds


def run_seeds(cfg: RunConfig) -> tuple[int, ...]:
    """The seeds a run trains: ``seeds``, or ``seed`` alone."""
    return tuple(cfg.seeds) if cfg.seeds else (cfg.seed,)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``to_dict`` output (checkpoints, run dirs)."""
    refuse_resolvers(data, "stored config")
    refuse_renamed(data)
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), data))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad stored config: {_one_line(exc)}") from None
    cfg = settled(cfg)  # type: ignore[arg-type]
    validate(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg``."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _float_fields(cfg: RunConfig) -> list[tuple[str, float]]:
    """(dotted key, value) of every float setting that is set."""
    found = []
    for prefix, section in (("", cfg), ("agent.", cfg.agent), ("eval.", cfg.eval)):
        for item in fields(section):
            value = getattr(section, item.name)
            if isinstance(value, float):
                found.append((prefix + item.name, value))
    return found


RESOLVER = re.compile(r"\$\{\s*([\w.]+)\s*:")


def refuse_resolvers(raw: Any, source: str, key: str = "") -> None:
    """``ConfigError`` for any ``${name:...}`` resolver call (``oc.env`` above all) in the
    unresolved config ``raw``: its value would be written into config.yaml and checkpoints,
    and a run dir from elsewhere could read this machine's environment."""
    if isinstance(raw, dict):
        for name, value in raw.items():
            refuse_resolvers(value, source, f"{key}.{name}" if key else str(name))
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            refuse_resolvers(value, source, f"{key}[{index}]")
    elif isinstance(raw, str) and (match := RESOLVER.search(raw)):
        raise ConfigError(
            f"{source}: {key} calls the resolver {match.group(1)} ('{raw}'); configs may not "
            "use resolvers such as oc.env (their values would be written into the run dir)"
        )


def normalise_compile_mode(value: str) -> str:
    """``agent.compile`` as one of ``COMPILE_MODES``: booleans (``true``/``false``, as YAML
    and older configs write them) mean ``on``/``off``."""
    lowered = str(value).strip().lower()
    return {"true": "on", "false": "off"}.get(lowered, lowered)


def _validate_agent_choices(a: AgentConfig) -> None:
    """The agent's choices (each within its enum) and the keys that apply to one of them."""
    if a.compile not in COMPILE_MODES:
        raise ConfigError(
            f"agent.compile must be one of {', '.join(COMPILE_MODES)} (or true/false), "
            f"got '{a.compile}'"
        )
    for key, allowed in CHOICES.items():
        value = getattr(a, key)
        if value not in allowed:
            raise ConfigError(f"agent.{key} must be one of {', '.join(allowed)}, got '{value}'")
    if a.buffer_size < a.seq_len + 2:
        raise ConfigError(f"agent.buffer_size must be at least seq_len + 2, got {a.buffer_size}")
    if a.td3_alpha > 0 and a.actor_loss != ActorLoss.TD3:
        raise ConfigError("agent.td3_alpha applies to actor_loss=td3, not the svg actor loss")
    if a.action_penalty > 0 and a.actor_loss != ActorLoss.SVG:
        raise ConfigError("agent.action_penalty applies to the svg actor loss, not actor_loss=td3")


def validate(cfg: RunConfig) -> None:
    """Fail fast on values that type checking cannot catch (checks only: it edits nothing)."""
    a = cfg.agent
    positive = {
        "steps": cfg.steps,
        "checkpoint_every": cfg.checkpoint_every,
        "log_every": cfg.log_every,
        "agent.seq_len": a.seq_len,
        "agent.batch_size": a.batch_size,
        "agent.hidden_dim": a.hidden_dim,
        "agent.model_hidden_dim": a.model_hidden_dim,
        "agent.latent_dim": a.latent_dim,
        "agent.lr": a.lr,
        "agent.buffer_size": a.buffer_size,
        "agent.max_grad_norm": a.max_grad_norm,
        "agent.expl_std_steps": a.expl_std_steps,
    }
    for key, value in _float_fields(cfg):
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    for seed in (cfg.seed, *cfg.seeds):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seeds must be integers, got {seed!r}")
        if not 0 <= seed < 2**32:
            raise ConfigError(f"seed must be in [0, 2^32), got {seed}")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds must be distinct, got {','.join(map(str, cfg.seeds))}")
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    non_negative = {
        "eval.every": cfg.eval.every,
        "eval.episodes": cfg.eval.episodes,
        "threads": cfg.threads,
        "agent.warmup_steps": a.warmup_steps,
        "agent.classifier_coef": a.classifier_coef,
        "agent.expl_std_start": a.expl_std_start,
        "agent.expl_std_end": a.expl_std_end,
        "agent.stddev_clip": a.stddev_clip,
        "agent.bc_weight": a.bc_weight,
        "agent.td3_alpha": a.td3_alpha,
        "agent.kl_coef": a.kl_coef,
        "agent.entropy_bonus": a.entropy_bonus,
        "agent.action_penalty": a.action_penalty,
        "agent.log_reward_shift": a.log_reward_shift,
    }
    for key, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    for key, value in {
        "agent.gamma": a.gamma,
        "agent.lambda_": a.lambda_,
        "agent.tau": a.tau,
    }.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {value}")
    _validate_agent_choices(a)
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got '{cfg.method}'")
    e = cfg.eval
    if e.latent not in EVAL_LATENTS:
        raise ConfigError(f"eval.latent must be one of {', '.join(EVAL_LATENTS)}, got '{e.latent}'")
    if (e.ref_min is None) != (e.ref_max is None):
        raise ConfigError("eval.ref_min and eval.ref_max must be given together")
    if e.ref_min is not None and e.ref_max is not None and e.ref_max <= e.ref_min:
        raise ConfigError(f"eval.ref_max ({e.ref_max}) must exceed eval.ref_min ({e.ref_min})")
    check_device_name(cfg.device)


DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # device=, --device: what a run may ask for


def check_device_name(name: str) -> str:
    """``name`` when it is one of ``DEVICES`` (``cuda:N`` with a number), else a
    ``ConfigError``; whether torch has it is ``resolve_device``'s question."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        allowed = f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]}"
        raise ConfigError(f"device must be {allowed}, got '{name}'")
    return name


# ------------------------------------------------------------------ the keys, documented
def field_comments() -> dict[str, str]:
    """Each config key (dotted: ``agent.seq_len``) -> its comment in this file, the one
    place the keys are documented (``alm config`` prints them)."""
    import ast
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    lines = source.splitlines()
    prefixes = {
        "RunConfig": "",
        "AgentConfig": "agent.",
        "EvalConfig": "eval.",
        "LoggerConfig": "logger.",
    }
    comments: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.ClassDef) and node.name in prefixes):
            continue
        for item in node.body:
            if not isinstance(item, ast.AnnAssign) or ast.unparse(item.annotation) in prefixes:
                continue  # a section (agent, eval, logger) is no key of its own
            own = [
                lines[i].split("  # ", 1)[1]
                for i in range(item.lineno - 1, item.end_lineno)
                if "  # " in lines[i]
            ]
            above, i = [], item.lineno - 2
            while lines[i].strip().startswith("# ") and not lines[i].strip().startswith("# --"):
                above.insert(0, lines[i].strip()[2:])
                i -= 1
            comments[prefixes[node.name] + item.target.id] = " ".join(above + own)
    return comments


def documented_yaml(cfg: RunConfig) -> str:
    """``cfg`` as YAML with each key's comment from this file beside it."""
    comments = field_comments()
    out = []
    for section, values in to_dict(cfg).items():
        if isinstance(values, dict):
            out.append(f"{section}:")
            for key, value in values.items():
                out.append(_yaml_line(f"  {key}", value, comments.get(f"{section}.{key}", "")))
        else:
            out.append(_yaml_line(section, values, comments.get(section, "")))
    return "\n".join(out) + "\n"


def _yaml_line(key: str, value: Any, comment: str) -> str:
    text = OmegaConf.to_yaml({"v": value}).strip()[3:] if value is not None else "null"
    return f"{key}: {text}" + (f"  # {comment}" if comment else "")
