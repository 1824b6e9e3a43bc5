"""Networks of ALM (paper App. D, Table 4), stacked over seeds: one MLP builder, a Gaussian
head, twin critics.

Every network holds the weights of S independent seeds: a weight is (S, in, out) and an
input is (S, ..., in), so S agents run as one batched matrix product per layer (``baddbmm``)
and nothing mixes seeds. One seed is S = 1 of the same code. Seed s's weights are drawn from
its own generator (``seed_generators``), so they do not depend on which seeds run beside it.

All MLPs have two hidden layers with orthogonal weights and zero biases. Encoder and latent
model output a diagonal Gaussian (mean squashed by ``30 tanh(m / 30)``, std softly bounded to
[0.1, 10]); reward, classifier and critic heads use Linear -> LayerNorm -> Tanh -> Linear ->
ELU -> Linear; the actor outputs a tanh mean and acts with clipped Gaussian noise.
Every network's last layer runs in fp32 (``fp32=True``), so under bf16 autocast only the
hidden layers' matrix products run in bf16 and every output and loss is fp32.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MEAN_SCALE = 30.0
STD_MIN = 0.1
STD_MAX = 10.0
OBS_STD_FLOOR = 1e-3  # a constant observation dim is centred, not blown up
ACTION_EPS = 1e-6
IDENTITY_STD = 0.1  # fixed std of the identity encoder (MnM-like ablation): z ~ N(s, 0.1^2)
POLICY_LOG_STD = (-5.0, 0.0)  # range of a learned policy log-std (entropy-bonus ablation)

# one generator per seed (None: torch's global generator) that initialises its weights
Generators = Sequence[torch.Generator | None]


def seed_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """A CPU generator per seed, seeded with it: seed s's initial weights are its own."""
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def per_seed(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values (S, *tail) viewed to broadcast against ``like`` (S, ..., *tail)."""
    middle = like.dim() - values.dim()
    return values.reshape(values.shape[0], *([1] * middle), *values.shape[1:])


def seed_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over everything but the leading seed dim: (S, ...) -> (S,)."""
    return x.reshape(x.shape[0], -1).mean(1)


class SeedLinear(nn.Module):
    """One linear layer per seed (``members`` per seed for an ensemble, e.g. twin critics):
    x (S * members, ..., in) -> (S * members, ..., out) by one ``baddbmm``.

    Weights are (S, in, out), or (S, members, in, out): the seed is always the leading dim.
    Each (out, in) matrix is orthogonal as ``nn.Linear``'s would be, drawn from its seed's
    generator. ``fp32``: always in fp32 (a network's last layer; see the module docstring).
    """

    def __init__(
        self,
        generators: Generators,
        in_dim: int,
        out_dim: int,
        *,
        members: int = 0,
        fp32: bool = False,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.fp32 = in_dim, out_dim, fp32
        lead = (len(generators), members) if members else (len(generators),)
        self.weight = nn.Parameter(torch.empty(*lead, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(*lead, 1, out_dim))
        with torch.no_grad():
            for index, generator in enumerate(generators):  # construction, not the hot path
                weights = self.weight[index].reshape(-1, in_dim, out_dim)
                for member in range(weights.shape[0]):
                    matrix = torch.empty(out_dim, in_dim)
                    nn.init.orthogonal_(matrix, generator=generator)
                    weights[member].copy_(matrix.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.reshape(-1, self.in_features, self.out_features)
        bias = self.bias.reshape(-1, 1, self.out_features)
        lead = x.shape[:-1]
        flat = x.reshape(weight.shape[0], -1, self.in_features)
        if self.fp32:
            with torch.autocast(x.device.type, enabled=False):
                out = torch.baddbmm(bias, flat.float(), weight)
        else:
            out = torch.baddbmm(bias, flat, weight)
        return out.reshape(*lead, self.out_features)


class SeedLayerNorm(nn.Module):
    """LayerNorm with an affine transform per seed (and member): (S * members, ..., H)."""

    def __init__(self, seeds: int, dim: int, members: int = 0) -> None:
        super().__init__()
        lead = (seeds, members) if members else (seeds,)
        self.weight = nn.Parameter(torch.ones(*lead, 1, dim))
        self.bias = nn.Parameter(torch.zeros(*lead, 1, dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = per_seed(self.weight.reshape(-1, self.dim), x)
        bias = per_seed(self.bias.reshape(-1, self.dim), x)
        return F.layer_norm(x, (self.dim,)) * weight + bias


class SeedMLP(nn.Sequential):
    """Seed layers in sequence: x (S, ..., in) -> (S, ..., out)."""


def mlp(
    generators: Generators,
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    *,
    normalized_head: bool = False,
) -> SeedMLP:
    """Two hidden layers. ``normalized_head`` uses LayerNorm+Tanh after the first layer."""
    # in-place ELU on a Linear's output (which its backward does not need): autograd then
    # saves the ELU's result and its backward needs no exp() (same values, less work)
    first_act: list[nn.Module] = (
        [SeedLayerNorm(len(generators), hidden_dim), nn.Tanh()]
        if normalized_head
        else [nn.ELU(inplace=True)]
    )
    return SeedMLP(
        SeedLinear(generators, in_dim, hidden_dim),
        *first_act,
        SeedLinear(generators, hidden_dim, hidden_dim),
        nn.ELU(inplace=True),
        SeedLinear(generators, hidden_dim, out_dim, fp32=True),
    )


def gaussian_params(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2Z) raw output -> mean (..., Z) in (-30, 30), std (..., Z) softly in [0.1, 10]."""
    mean, std = raw.chunk(2, dim=-1)
    mean = MEAN_SCALE * torch.tanh(mean / MEAN_SCALE)
    std = STD_MAX - F.softplus(STD_MAX - std)
    std = STD_MIN + F.softplus(std - STD_MIN)
    return mean, std


class GaussianMLP(nn.Module):
    """x (S, ..., in_dim) -> (mean, std), each (S, ..., out_dim)."""

    def __init__(self, generators: Generators, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = mlp(generators, in_dim, hidden_dim, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gaussian_params(self.net(x).float())


class LatentModel(nn.Module):
    """m(z' | z, a): z (S, ..., Z), a (S, ..., A) -> (mean, std) of z' (S, ..., Z)."""

    def __init__(self, generators: Generators, latent_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        self.gaussian = GaussianMLP(generators, latent_dim + action_dim, hidden_dim, latent_dim)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gaussian(torch.cat([z, a], dim=-1))


class RewardHead(nn.Module):
    """r(z, a): (S, ..., Z), (S, ..., A) -> (S, ..., 1)."""

    def __init__(self, generators: Generators, latent_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        self.net = mlp(generators, latent_dim + action_dim, hidden_dim, 1, normalized_head=True)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=-1)).float()


class Classifier(nn.Module):
    """C(z, a, z'): two logits (S, ..., 2); index 1 means "z' came from the encoder".

    ``linear`` makes it one affine map of (z, a, z') (the linear-classifier ablation, Fig. 16).
    """

    def __init__(
        self,
        generators: Generators,
        latent_dim: int,
        action_dim: int,
        hidden_dim: int,
        linear: bool = False,
    ) -> None:
        super().__init__()
        in_dim = 2 * latent_dim + action_dim
        self.net = (
            SeedMLP(SeedLinear(generators, in_dim, 2, fp32=True))
            if linear
            else mlp(generators, in_dim, hidden_dim, 2, normalized_head=True)
        )

    def forward(self, z: torch.Tensor, a: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a, z_next], dim=-1)).float()


class TwinCritic(nn.Module):
    """Q1, Q2 of every seed as one batched module: z (S, ..., Z), a (S, ..., A) ->
    (2, S, ..., 1), the twin (member) dim first. Weights are (S, 2, in, out)."""

    members = 2

    def __init__(self, generators: Generators, latent_dim: int, action_dim: int, hidden_dim: int):
        super().__init__()
        seeds, members = len(generators), self.members
        self.fc1 = SeedLinear(generators, latent_dim + action_dim, hidden_dim, members=members)
        self.norm = SeedLayerNorm(seeds, hidden_dim, members=members)
        self.fc2 = SeedLinear(generators, hidden_dim, hidden_dim, members=members)
        self.out = SeedLinear(generators, hidden_dim, 1, members=members, fp32=True)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, a], dim=-1)
        seeds, lead = x.shape[0], x.shape[1:-1]
        h = x.reshape(seeds, 1, -1, x.shape[-1]).expand(-1, self.members, -1, -1)
        h = h.reshape(seeds * self.members, -1, x.shape[-1])  # (S * 2, M, in)
        h = torch.tanh(self.norm(self.fc1(h)))
        h = F.elu(self.fc2(h), inplace=True)
        q = self.out(h).float().reshape(seeds, self.members, *lead, 1)
        return q.transpose(0, 1)


class Actor(nn.Module):
    """pi(a | z): z (S, ..., Z) -> tanh mean (S, ..., A); acts with clipped Gaussian noise
    whose std is the exploration schedule's, or (``learn_std``, entropy-bonus ablation) its
    own."""

    def __init__(
        self,
        generators: Generators,
        latent_dim: int,
        action_dim: int,
        hidden_dim: int,
        learn_std: bool = False,
    ) -> None:
        super().__init__()
        self.learn_std = learn_std
        out_dim = 2 * action_dim if learn_std else action_dim
        self.net = mlp(generators, latent_dim, hidden_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z).float()
        return torch.tanh(out.chunk(2, dim=-1)[0] if self.learn_std else out)

    def distribution(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (S, ..., Z) -> (tanh mean, std), each (S, ..., A); only with ``learn_std``."""
        mean, raw_std = self.net(z).float().chunk(2, dim=-1)
        low, high = POLICY_LOG_STD
        log_std = low + 0.5 * (high - low) * (torch.tanh(raw_std) + 1.0)
        return torch.tanh(mean), log_std.exp()


class IdentityEncoder(nn.Module):
    """e(z | s) = N(s, IDENTITY_STD^2): no parameters, z is the state (MnM-like, Fig. 13)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return obs, torch.full_like(obs, IDENTITY_STD)


class Decoder(nn.Module):
    """d(s | z): z (S, ..., Z) -> reconstructed observation (S, ..., D) (reconstruction
    ablation)."""

    def __init__(self, generators: Generators, latent_dim: int, obs_dim: int, hidden_dim: int):
        super().__init__()
        self.net = mlp(generators, latent_dim, hidden_dim, obs_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).float()


def straight_through_clamp(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Clamp to [low + eps, high - eps] in the forward pass, identity gradient in the backward."""
    clamped = x.clamp(low + ACTION_EPS, high - ACTION_EPS)
    return x - x.detach() + clamped.detach()


def sample_action(
    mean: torch.Tensor, std: float | torch.Tensor, clip: float | None
) -> torch.Tensor:
    """Truncated-normal action: mean + clip(std * eps, +-clip), straight-through clamped."""
    noise = torch.randn_like(mean) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    return straight_through_clamp(mean + noise)


class WorldModel(nn.Module):
    """Every network of ALM and the two targets, for S seeds, with small named methods.

    Shapes: obs (S, ..., D), z (S, ..., Z), a (S, ..., A); the seed is always the leading
    dim. Gaussians are (mean, std) pairs. ``generators`` (one per seed; ``seed_generators``)
    draw each seed's initial weights; None: one seed from torch's global generator.
    The keyword switches build the paper's ablations (defaults: the main method):
    ``identity_encoder`` (z = s, so Z = D), ``linear_classifier``, ``decoder`` (for the
    reconstruction-trained encoder) and ``learn_policy_std`` (entropy bonus);
    ``behaviour_policy`` adds pi_b, a Gaussian head on the latents fit to a dataset's actions
    (offline ALM's behaviour-kl term, App. A.7); ``termination_head`` adds p(end | z, a), a
    logit head fit to the real terminal flags (envs that terminate: docs/termination.md).
    ``standardize_obs``: both encoders see (obs - mean) / std, with each seed's statistics
    (S, D) set once by ``set_observation_stats`` (buffers, saved with the weights).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        latent_dim: int,
        hidden_dim: int,
        model_hidden_dim: int,
        generators: Generators | None = None,
        identity_encoder: bool = False,
        linear_classifier: bool = False,
        decoder: bool = False,
        learn_policy_std: bool = False,
        behaviour_policy: bool = False,
        standardize_obs: bool = False,
        termination_head: bool = False,
    ) -> None:
        super().__init__()
        gens = list(generators) if generators is not None else [None]
        self.num_seeds = seeds = len(gens)
        self.standardize_obs = standardize_obs
        if standardize_obs:
            self.register_buffer("obs_mean", torch.zeros(seeds, obs_dim))
            self.register_buffer("obs_std", torch.ones(seeds, obs_dim))
        if identity_encoder:
            latent_dim = obs_dim
            self.encoder: nn.Module = IdentityEncoder()
            self.encoder_target: nn.Module = IdentityEncoder()
        else:
            self.encoder = GaussianMLP(gens, obs_dim, hidden_dim, latent_dim)
            self.encoder_target = copy.deepcopy(self.encoder)
        self.latent_dim = latent_dim
        self.model = LatentModel(gens, latent_dim, action_dim, model_hidden_dim)
        self.reward_head = RewardHead(gens, latent_dim, action_dim, hidden_dim)
        self.classifier = Classifier(
            gens, latent_dim, action_dim, hidden_dim, linear=linear_classifier
        )
        self.critic = TwinCritic(gens, latent_dim, action_dim, hidden_dim)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor = Actor(gens, latent_dim, action_dim, hidden_dim, learn_std=learn_policy_std)
        self.decoder = Decoder(gens, latent_dim, obs_dim, hidden_dim) if decoder else None
        # drawn last, so that every other network's initial weights are the same without it
        self.behaviour = (
            Actor(gens, latent_dim, action_dim, hidden_dim, learn_std=True)
            if behaviour_policy
            else None
        )
        # p(end | z, a) as a logit, for envs that terminate (drawn after pi_b: the same rule)
        self.termination = (
            RewardHead(gens, latent_dim, action_dim, hidden_dim) if termination_head else None
        )
        for target in (self.encoder_target, self.critic_target):
            target.requires_grad_(False)

    def set_observation_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Each seed's per-dim mean and std (S, D) that ``standardize_obs`` divides by."""
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(OBS_STD_FLOOR))

    def _input(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.standardize_obs:
            return obs
        return (obs - per_seed(self.obs_mean, obs)) / per_seed(self.obs_std, obs)

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self._input(obs))

    def encode_target(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder_target(self._input(obs))

    def next(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(z, a)

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.reward_head(z, a)

    def logits(self, z: torch.Tensor, a: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return self.classifier(z, a, z_next)

    def q(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.critic(z, a)

    def q_target(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.critic_target(z, a)

    def pi(self, z: torch.Tensor) -> torch.Tensor:
        """The policy's mean action (the deterministic policy)."""
        return self.actor(z)

    def policy(
        self, z: torch.Tensor, std: float | torch.Tensor
    ) -> tuple[torch.Tensor, float | torch.Tensor]:
        """(mean, std) to sample actions with: the schedule's ``std``, or the learned one."""
        if self.actor.learn_std:
            return self.actor.distribution(z)
        return self.actor(z), std

    def behaviour_policy(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi_b(a | z): z (S, ..., Z) -> (tanh mean, std), each (S, ..., A)."""
        assert self.behaviour is not None, "built without a behaviour policy"
        return self.behaviour.distribution(z)

    def termination_logit(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """logit of p(end | z, a): (S, ..., Z), (S, ..., A) -> (S, ...)."""
        assert self.termination is not None, "built without a termination head"
        return self.termination(z, a).squeeze(-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        assert self.decoder is not None, "built without a decoder"
        return self.decoder(z)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four groups with their own optimiser (targets excluded). pi_b and the
        termination head join the reward group: like the reward head and the classifier they
        are fit to real transitions."""
        decoder = [] if self.decoder is None else list(self.decoder.parameters())
        behaviour = [] if self.behaviour is None else list(self.behaviour.parameters())
        if self.termination is not None:
            behaviour += list(self.termination.parameters())
        return {
            "world": [*self.encoder.parameters(), *self.model.parameters(), *decoder],
            "reward": [
                *self.reward_head.parameters(),
                *self.classifier.parameters(),
                *behaviour,
            ],
            "critic": list(self.critic.parameters()),
            "actor": list(self.actor.parameters()),
        }

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Polyak: target <- target + tau * (online - target), for encoder and critic."""
        for online, target in (
            (self.encoder, self.encoder_target),
            (self.critic, self.critic_target),
        ):
            target_params = list(target.parameters())
            if target_params:  # the identity encoder has none
                torch._foreach_lerp_(target_params, list(online.parameters()), tau)


def rsample(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Reparameterised sample of a diagonal Gaussian (gradients reach mean and std)."""
    return mean + std * torch.randn_like(mean)
