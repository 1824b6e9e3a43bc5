"""Networks of ALM (paper App. D, Table 4): one MLP builder, a Gaussian head, twin critics.

All MLPs have two hidden layers with orthogonal weights and zero biases. Encoder and latent
model output a diagonal Gaussian (mean squashed by ``30 tanh(m / 30)``, std softly bounded to
[0.1, 10]); reward, classifier and critic heads use Linear -> LayerNorm -> Tanh -> Linear ->
ELU -> Linear; the actor outputs a tanh mean and acts with clipped Gaussian noise.
Every network's last layer runs in fp32 (``OutputLinear``), so under bf16 autocast only the
hidden layers' matrix products run in bf16 and every output and loss is fp32.
"""

from __future__ import annotations

import math

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


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal weights, zero biases for every ``nn.Linear`` in ``module``."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        nn.init.zeros_(module.bias)


class OutputLinear(nn.Linear):
    """The last layer of a network, always in fp32: under bf16 autocast its input is cast up
    and the product runs in fp32, so Gaussian means and stds, rewards, logits, Q-values and
    actions keep fp32 precision (bf16's 8-bit mantissa would put errors of about 0.1 on a
    latent mean near 30, and of a whole unit on a Q-value near 300). In fp32 it is an
    ``nn.Linear`` (same state-dict keys, same result)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.weight, self.bias)


def mlp(
    in_dim: int, hidden_dim: int, out_dim: int, *, normalized_head: bool = False
) -> nn.Sequential:
    """Two hidden layers. ``normalized_head`` uses LayerNorm+Tanh after the first layer."""
    # in-place ELU on a Linear's output (which its backward does not need): autograd then
    # saves the ELU's result and its backward needs no exp() (same values, less work)
    first_act: list[nn.Module] = (
        [nn.LayerNorm(hidden_dim), nn.Tanh()] if normalized_head else [nn.ELU(inplace=True)]
    )
    net = nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        *first_act,
        nn.Linear(hidden_dim, hidden_dim),
        nn.ELU(inplace=True),
        OutputLinear(hidden_dim, out_dim),
    )
    net.apply(orthogonal_init)
    return net


def gaussian_params(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2Z) raw output -> mean (..., Z) in (-30, 30), std (..., Z) softly in [0.1, 10]."""
    mean, std = raw.chunk(2, dim=-1)
    mean = MEAN_SCALE * torch.tanh(mean / MEAN_SCALE)
    std = STD_MAX - F.softplus(STD_MAX - std)
    std = STD_MIN + F.softplus(std - STD_MIN)
    return mean, std


class GaussianMLP(nn.Module):
    """x (..., in_dim) -> (mean, std), each (..., out_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden_dim, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gaussian_params(self.net(x).float())


class LatentModel(nn.Module):
    """m(z' | z, a): z (..., Z), a (..., A) -> (mean, std) of z' (..., Z)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gaussian = GaussianMLP(latent_dim + action_dim, hidden_dim, latent_dim)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gaussian(torch.cat([z, a], dim=-1))


class RewardHead(nn.Module):
    """r(z, a): (..., Z), (..., A) -> (..., 1)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim + action_dim, hidden_dim, 1, normalized_head=True)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=-1)).float()


class Classifier(nn.Module):
    """C(z, a, z'): two logits (..., 2); index 1 means "z' came from the encoder".

    ``linear`` makes it one affine map of (z, a, z') (the linear-classifier ablation, Fig. 16).
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, linear: bool = False):
        super().__init__()
        in_dim = 2 * latent_dim + action_dim
        self.net = (
            OutputLinear(in_dim, 2) if linear else mlp(in_dim, hidden_dim, 2, normalized_head=True)
        )
        self.net.apply(orthogonal_init)

    def forward(self, z: torch.Tensor, a: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a, z_next], dim=-1)).float()


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers: x (E, N, in) -> (E, N, out); ``fp32``: always
    in fp32, as ``OutputLinear``."""

    def __init__(self, members: int, in_dim: int, out_dim: int, fp32: bool = False) -> None:
        super().__init__()
        self.fp32 = fp32
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        for member in range(members):  # orthogonal (out, in) matrix per member, as nn.Linear
            self.weight.data[member] = nn.init.orthogonal_(torch.empty(out_dim, in_dim)).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp32:
            with torch.autocast(x.device.type, enabled=False):
                return torch.baddbmm(self.bias, x.float(), self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate affine transform per member: (E, N, H) -> (E, N, H)."""

    def __init__(self, members: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,)) * self.weight + self.bias


class TwinCritic(nn.Module):
    """Q1, Q2 as one batched module: z (..., Z), a (..., A) -> (2, ..., 1)."""

    members = 2

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = EnsembleLinear(self.members, latent_dim + action_dim, hidden_dim)
        self.norm = EnsembleLayerNorm(self.members, hidden_dim)
        self.fc2 = EnsembleLinear(self.members, hidden_dim, hidden_dim)
        self.out = EnsembleLinear(self.members, hidden_dim, 1, fp32=True)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, a], dim=-1)
        lead = x.shape[:-1]
        h = x.reshape(1, math.prod(lead), x.shape[-1]).expand(self.members, -1, -1)
        h = torch.tanh(self.norm(self.fc1(h)))
        h = F.elu(self.fc2(h), inplace=True)
        return self.out(h).float().reshape(self.members, *lead, 1)


class Actor(nn.Module):
    """pi(a | z): z (..., Z) -> tanh mean (..., A); acts with clipped Gaussian noise whose std
    is the exploration schedule's, or (``learn_std``, entropy-bonus ablation) its own."""

    def __init__(
        self, latent_dim: int, action_dim: int, hidden_dim: int, learn_std: bool = False
    ) -> None:
        super().__init__()
        self.learn_std = learn_std
        self.net = mlp(latent_dim, hidden_dim, 2 * action_dim if learn_std else action_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z).float()
        return torch.tanh(out.chunk(2, dim=-1)[0] if self.learn_std else out)

    def distribution(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., Z) -> (tanh mean, std), each (..., A); only with ``learn_std``."""
        mean, raw_std = self.net(z).float().chunk(2, dim=-1)
        low, high = POLICY_LOG_STD
        log_std = low + 0.5 * (high - low) * (torch.tanh(raw_std) + 1.0)
        return torch.tanh(mean), log_std.exp()


class IdentityEncoder(nn.Module):
    """e(z | s) = N(s, IDENTITY_STD^2): no parameters, z is the state (MnM-like, Fig. 13)."""

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return obs, torch.full_like(obs, IDENTITY_STD)


class Decoder(nn.Module):
    """d(s | z): z (..., Z) -> reconstructed observation (..., D) (reconstruction ablation)."""

    def __init__(self, latent_dim: int, obs_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dim, obs_dim)

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
    """Every network of ALM and the two targets, with small named methods.

    Shapes: obs (..., D), z (..., Z), a (..., A). Gaussians are (mean, std) pairs. The
    keyword switches build the paper's ablations (defaults: the main method):
    ``identity_encoder`` (z = s, so Z = D), ``linear_classifier``, ``decoder`` (for the
    reconstruction-trained encoder) and ``learn_policy_std`` (entropy bonus).
    ``standardize_obs``: both encoders see (obs - mean) / std, with the data's statistics
    set once by ``set_observation_stats`` (buffers, saved with the weights).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        latent_dim: int,
        hidden_dim: int,
        model_hidden_dim: int,
        identity_encoder: bool = False,
        linear_classifier: bool = False,
        decoder: bool = False,
        learn_policy_std: bool = False,
        standardize_obs: bool = False,
    ) -> None:
        super().__init__()
        self.standardize_obs = standardize_obs
        if standardize_obs:
            self.register_buffer("obs_mean", torch.zeros(obs_dim))
            self.register_buffer("obs_std", torch.ones(obs_dim))
        if identity_encoder:
            latent_dim = obs_dim
            self.encoder: nn.Module = IdentityEncoder()
            self.encoder_target: nn.Module = IdentityEncoder()
        else:
            self.encoder = GaussianMLP(obs_dim, hidden_dim, latent_dim)
            self.encoder_target = GaussianMLP(obs_dim, hidden_dim, latent_dim)
        self.latent_dim = latent_dim
        self.model = LatentModel(latent_dim, action_dim, model_hidden_dim)
        self.reward_head = RewardHead(latent_dim, action_dim, hidden_dim)
        self.classifier = Classifier(latent_dim, action_dim, hidden_dim, linear=linear_classifier)
        self.critic = TwinCritic(latent_dim, action_dim, hidden_dim)
        self.critic_target = TwinCritic(latent_dim, action_dim, hidden_dim)
        self.actor = Actor(latent_dim, action_dim, hidden_dim, learn_std=learn_policy_std)
        self.decoder = Decoder(latent_dim, obs_dim, hidden_dim) if decoder else None
        self.encoder_target.load_state_dict(self.encoder.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for target in (self.encoder_target, self.critic_target):
            target.requires_grad_(False)

    def set_observation_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-dim mean and std (D,) that ``standardize_obs`` divides by (in place)."""
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(OBS_STD_FLOOR))

    def _input(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std if self.standardize_obs else obs

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

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        assert self.decoder is not None, "built without a decoder"
        return self.decoder(z)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four groups with their own optimiser (targets excluded)."""
        decoder = [] if self.decoder is None else list(self.decoder.parameters())
        return {
            "world": [*self.encoder.parameters(), *self.model.parameters(), *decoder],
            "reward": [*self.reward_head.parameters(), *self.classifier.parameters()],
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
