"""Replay storage on the training device, with vectorised length-K sequence sampling.

Layout: one ring of ``capacity`` observation *slots*. Every observation is stored once.
Slot ``i`` holds ``obs[i]`` and, when ``has_next[i]`` is true, the transition taken from it
(``action[i]``, ``reward[i]``, ``terminated[i]``) whose next observation is slot ``i + 1``
(mod capacity). The last observation of an episode (terminal or truncated) occupies a
slot of its own with ``has_next`` false, so next observations never cross an episode.

A length-K sequence may start at slot ``i`` when slots ``i .. i+K-1`` all hold transitions;
those starts, and the single-transition starts, are kept in two index sets updated in O(1)
per environment step, so sampling is ``randint`` + gather with no Python loop over the batch
and no host sync (the count lives on the device too).

``terminated`` is the MDP terminal flag; truncations (time limits) only end the episode.

Seeds: ``SeedReplay`` samples for S seeds at once, batches leading with the seed dim. Online,
each seed has its own ``ReplayBuffer`` whose tensors are rows of one stacked storage
(``SeedReplay.create``), so one ``rand`` + gather samples every seed's own data; offline,
the seeds share one buffer of the dataset (``SeedReplay.shared``) and draw their own indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SequenceBatch:
    """Length-K real sequences. obs: (K+1, B, D); action: (K, B, A); reward, terminated: (K, B)
    for one buffer; with a leading seed dim (S, ...) from ``SeedReplay``."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor


@dataclass(frozen=True)
class TransitionBatch:
    """Single transitions. obs, next_obs: (B, D); action: (B, A); reward, terminated: (B,) for
    one buffer; with a leading seed dim (S, ...) from ``SeedReplay``."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class IndexSet:
    """A set of slot ids with O(1) add/remove and uniform sampling on the device.

    Its device side lives in a ``ReplayStorage`` row: ``members_device`` (capacity,) long
    and ``count_device`` (0-d float) are views, so ``SeedReplay`` samples every row at once."""

    def __init__(self, members_device: torch.Tensor, count_device: torch.Tensor) -> None:
        capacity = members_device.shape[0]
        self._members = np.zeros(capacity, dtype=np.int64)
        self._position = np.full(capacity, -1, dtype=np.int64)
        self._count = 0
        self.members_device, self.count_device = members_device, count_device

    def __len__(self) -> int:
        return self._count

    def host_nbytes(self) -> int:
        return self._members.nbytes + self._position.nbytes

    def __contains__(self, slot: int) -> bool:
        return self._position[slot] >= 0

    def add(self, slot: int) -> None:
        if self._position[slot] >= 0:
            return
        self._members[self._count] = slot
        self._position[slot] = self._count
        self.members_device[self._count] = slot
        self._count += 1
        self.count_device.fill_(self._count)

    def remove(self, slot: int) -> None:
        where = self._position[slot]
        if where < 0:
            return
        last = self._members[self._count - 1]
        self._members[where] = last
        self._position[last] = where
        self.members_device[where] = int(last)
        self._position[slot] = -1
        self._count -= 1
        self.count_device.fill_(self._count)

    def reset_to(self, slots: np.ndarray) -> None:
        """Replace the contents with ``slots`` (in that order)."""
        self._position[:] = -1
        self._count = len(slots)
        self._members[: self._count] = slots
        self._position[slots] = np.arange(self._count)
        self.members_device[: self._count] = torch.as_tensor(
            slots, device=self.members_device.device
        )
        self.count_device.fill_(self._count)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) slot ids drawn uniformly with replacement, on the device, without a host sync."""
        u = torch.rand(batch_size, device=self.members_device.device, generator=generator)
        picks = (u * self.count_device).long().clamp_(max=self.members_device.shape[0] - 1)
        return self.members_device[picks]

    def state_dict(self) -> dict:
        return {"members": torch.from_numpy(self._members[: self._count].copy())}

    def load_state_dict(self, state: dict) -> None:
        self.reset_to(state["members"].numpy())


class ReplayBuffer:
    """Device-resident ring of observation slots; see the module docstring for the layout."""

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        seq_len: int,
        device: torch.device | str = "cpu",
        storage: ReplayStorage | None = None,
        row: int = 0,
    ) -> None:
        if capacity < seq_len + 2:
            raise ValueError(f"replay capacity {capacity} is smaller than seq_len + 2")
        self.capacity = capacity
        self.seq_len = seq_len
        self.device = torch.device(device)
        if storage is None:
            storage = ReplayStorage(1, capacity, obs_dim, action_dim, self.device)
        self.storage, self.row = storage, row
        self.obs, self.action = storage.obs[row], storage.action[row]
        self.reward, self.terminated = storage.reward[row], storage.terminated[row]
        self.has_next = np.zeros(capacity, dtype=bool)
        self.head = 0  # the next slot to write
        self.size = 0  # slots holding an observation
        self.sequence_starts = IndexSet(storage.sequence_members[row], storage.sequence_count[row])
        self.transition_starts = IndexSet(
            storage.transition_members[row], storage.transition_count[row]
        )
        self._offsets = torch.arange(seq_len + 1, device=self.device)

    @staticmethod
    def bytes_per_slot(obs_dim: int, action_dim: int) -> int:
        """Memory of one slot (one observation and its transition), device plus host.

        Device: obs, action, reward, terminated (float32) and the two index sets' members
        (int64). Host: ``has_next`` (bool) and the index sets' members and positions (int64).
        """
        device = 4 * (obs_dim + action_dim + 2) + 2 * 8
        host = 1 + 2 * (8 + 8)
        return device + host

    def nbytes(self) -> int:
        """Bytes held by this buffer (equals ``capacity * bytes_per_slot``)."""
        tensors = [self.obs, self.action, self.reward, self.terminated]
        sets = [self.sequence_starts, self.transition_starts]
        total = sum(t.nbytes for t in tensors) + self.has_next.nbytes
        for index_set in sets:
            total += index_set.members_device.nbytes + index_set.host_nbytes()
        return total

    # ------------------------------------------------------------------ writing
    @property
    def num_transitions(self) -> int:
        return len(self.transition_starts)

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_starts)

    def start_episode(self, obs: np.ndarray) -> None:
        """Write the first observation of an episode into a fresh slot."""
        self._write_obs(obs)

    def add(
        self, action: np.ndarray, reward: float, terminated: bool, next_obs: np.ndarray
    ) -> None:
        """Record the transition from the newest observation and write ``next_obs`` after it."""
        if self.size == 0:
            raise RuntimeError("start_episode must be called before add")
        slot = (self.head - 1) % self.capacity
        # one host -> device copy per step: [action, reward, terminated, next_obs]
        action_dim = self.action.shape[1]
        row = np.empty(action_dim + 2 + self.obs.shape[1], dtype=np.float32)
        row[:action_dim] = action
        row[action_dim] = reward
        row[action_dim + 1] = float(terminated)
        row[action_dim + 2 :] = next_obs
        packed = torch.from_numpy(row).to(self.device)
        self.action[slot] = packed[:action_dim]
        self.reward[slot] = packed[action_dim]
        self.terminated[slot] = packed[action_dim + 1]
        self._write_obs(packed[action_dim + 2 :])  # frees the successor slot, then marks it
        self.has_next[slot] = True
        self.transition_starts.add(slot)
        first = (slot - self.seq_len + 1) % self.capacity
        if self._run_has_next(first, self.seq_len):
            self.sequence_starts.add(first)

    def _write_obs(self, obs: np.ndarray | torch.Tensor) -> None:
        slot = self.head
        if self.has_next[slot]:  # overwriting the oldest transition
            self.has_next[slot] = False
            self.transition_starts.remove(slot)
            self.sequence_starts.remove(slot)
        self.obs[slot] = torch.as_tensor(obs, dtype=torch.float32)
        self.head = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _run_has_next(self, first: int, length: int) -> bool:
        idx = (first + np.arange(length)) % self.capacity
        return bool(self.has_next[idx].all())

    # ------------------------------------------------------------ bulk loading
    def load_episodes(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        episode_lengths: np.ndarray,
    ) -> None:
        """Fill an empty buffer with whole episodes (Minari layout, episodes concatenated).

        observations: (sum(T_i + 1), D); actions: (sum T_i, A); rewards, terminations:
        (sum T_i,); episode_lengths: (E,) with T_i >= 1.
        """
        lengths = np.asarray(episode_lengths, dtype=np.int64)
        n_obs = int(lengths.sum() + len(lengths))
        if n_obs != len(observations) or n_obs > self.capacity:
            raise ValueError(
                f"{len(observations)} observations for {len(lengths)} episodes of "
                f"{int(lengths.sum())} steps, capacity {self.capacity}"
            )
        if self.size:
            raise RuntimeError("load_episodes needs an empty buffer")
        has_next = np.ones(n_obs, dtype=bool)
        has_next[np.cumsum(lengths + 1) - 1] = False
        slots = np.flatnonzero(has_next)
        self.obs[:n_obs] = torch.as_tensor(observations, dtype=torch.float32)
        self.action[slots] = torch.as_tensor(actions, dtype=torch.float32).to(self.device)
        self.reward[slots] = torch.as_tensor(rewards, dtype=torch.float32).to(self.device)
        self.terminated[slots] = torch.as_tensor(terminations, dtype=torch.float32).to(self.device)
        self.has_next[:n_obs] = has_next
        self.head = n_obs % self.capacity
        self.size = n_obs
        self._rebuild_index_sets()

    def _rebuild_index_sets(self) -> None:
        """Recompute both index sets from ``has_next`` (vectorised)."""
        valid = self.has_next.copy()
        for shift in range(1, self.seq_len):
            valid &= np.roll(self.has_next, -shift)
        self.transition_starts.reset_to(np.flatnonzero(self.has_next))
        self.sequence_starts.reset_to(np.flatnonzero(valid))

    # ---------------------------------------------------------------- sampling
    def sample_sequences(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> SequenceBatch:
        """``batch_size`` length-K sequences that never cross an episode end."""
        start = self.sequence_starts.sample(batch_size, generator)
        idx = (start.unsqueeze(0) + self._offsets.unsqueeze(1)) % self.capacity  # (K+1, B)
        steps = idx[:-1]
        return SequenceBatch(
            obs=self.obs[idx],
            action=self.action[steps],
            reward=self.reward[steps],
            terminated=self.terminated[steps],
        )

    def sample_transitions(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> TransitionBatch:
        """``batch_size`` single transitions (s, a, r, s', terminated)."""
        idx = self.transition_starts.sample(batch_size, generator)
        nxt = (idx + 1) % self.capacity
        return TransitionBatch(
            obs=self.obs[idx],
            action=self.action[idx],
            reward=self.reward[idx],
            next_obs=self.obs[nxt],
            terminated=self.terminated[idx],
        )

    def observations(self) -> torch.Tensor:
        """(size, D) the stored observations (a view; slot order, not time order)."""
        return self.obs[: self.size]

    def can_sample(self) -> bool:
        return len(self.sequence_starts) > 0 and len(self.transition_starts) > 0

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (filled slots only), as copies: a view of
        the buffer's rows would make ``torch.save`` write the whole storage, every seed's
        capacity when the buffer is one row of a stacked ``ReplayStorage``."""
        n = self.size
        return {
            "capacity": self.capacity,
            "seq_len": self.seq_len,
            "obs": self.obs[:n].to("cpu", copy=True),
            "action": self.action[:n].to("cpu", copy=True),
            "reward": self.reward[:n].to("cpu", copy=True),
            "terminated": self.terminated[:n].to("cpu", copy=True),
            "has_next": torch.from_numpy(self.has_next[:n].copy()),
            "head": self.head,
            "size": self.size,
            "sequence_starts": self.sequence_starts.state_dict(),
            "transition_starts": self.transition_starts.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["seq_len"] != self.seq_len:
            raise ValueError(
                f"replay checkpoint has capacity {state['capacity']} / seq_len "
                f"{state['seq_len']}, config has {self.capacity} / {self.seq_len}"
            )
        n = state["size"]
        self.obs[:n] = state["obs"].to(self.device)
        self.action[:n] = state["action"].to(self.device)
        self.reward[:n] = state["reward"].to(self.device)
        self.terminated[:n] = state["terminated"].to(self.device)
        self.has_next[:] = False
        self.has_next[:n] = state["has_next"].numpy()
        self.head, self.size = state["head"], n
        self.sequence_starts.load_state_dict(state["sequence_starts"])
        self.transition_starts.load_state_dict(state["transition_starts"])


class ReplayStorage:
    """The device tensors of R replay buffers, stacked: obs (R, C, D), action (R, C, A),
    reward and terminated (R, C), and the two index sets' members (R, C) and counts (R,).
    Row r is buffer r's; ``ReplayBuffer`` works on views of its row."""

    def __init__(
        self, rows: int, capacity: int, obs_dim: int, action_dim: int, device: torch.device
    ) -> None:
        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        self.obs = zeros(rows, capacity, obs_dim)
        self.action = zeros(rows, capacity, action_dim)
        self.reward = zeros(rows, capacity)
        self.terminated = zeros(rows, capacity)
        self.sequence_members = zeros(rows, capacity, dtype=torch.long)
        self.sequence_count = zeros(rows)
        self.transition_members = zeros(rows, capacity, dtype=torch.long)
        self.transition_count = zeros(rows)


class SeedReplay:
    """Batches for S seeds in one draw, each seed from its own buffer (``create``: one per
    seed, online) or all from one (``shared``: the dataset, offline).

    ``rows[s]`` is the storage row seed s samples from. A draw is one ``rand`` of shape
    (S, B) and one gather, whatever S: no loop over seeds or over the batch, no host sync.
    """

    def __init__(self, seed_buffers: list[ReplayBuffer]) -> None:
        """``seed_buffers[s]``: the buffer seed s samples, all rows of one storage."""
        self.storage = seed_buffers[0].storage
        if any(buffer.storage is not self.storage for buffer in seed_buffers):
            raise ValueError("a SeedReplay's buffers must share one ReplayStorage")
        self.seed_buffers, self.num_seeds = seed_buffers, len(seed_buffers)
        self.buffers = list({id(b): b for b in seed_buffers}.values())  # each buffer once
        device = self.storage.obs.device
        self.rows = torch.tensor([buffer.row for buffer in seed_buffers], device=device)
        self.capacity, self.seq_len = seed_buffers[0].capacity, seed_buffers[0].seq_len
        self._offsets = torch.arange(self.seq_len + 1, device=device)

    @classmethod
    def create(
        cls,
        seeds: int,
        capacity: int,
        obs_dim: int,
        action_dim: int,
        seq_len: int,
        device: torch.device | str = "cpu",
    ) -> SeedReplay:
        """S empty buffers, one per seed, on one stacked storage."""
        device = torch.device(device)
        storage = ReplayStorage(seeds, capacity, obs_dim, action_dim, device)
        return cls(
            [
                ReplayBuffer(capacity, obs_dim, action_dim, seq_len, device, storage, row)
                for row in range(seeds)
            ]
        )

    @classmethod
    def shared(cls, buffer: ReplayBuffer, seeds: int) -> SeedReplay:
        """Every seed samples ``buffer`` (its own indices)."""
        return cls([buffer] * seeds)

    def can_sample(self) -> bool:
        return all(buffer.can_sample() for buffer in self.buffers)

    def _starts(self, members: torch.Tensor, counts: torch.Tensor, batch: int) -> torch.Tensor:
        """(S, B) slot ids, each seed's drawn uniformly from its row's index set."""
        u = torch.rand(self.num_seeds, batch, device=members.device)
        picks = (u * counts[self.rows].unsqueeze(1)).long().clamp_(max=self.capacity - 1)
        return members[self.rows.unsqueeze(1), picks]

    def sample_sequences(self, batch_size: int) -> SequenceBatch:
        """(S, K+1, B, D) sequences, each seed's from its own buffer, never crossing an
        episode end."""
        st = self.storage
        start = self._starts(st.sequence_members, st.sequence_count, batch_size)  # (S, B)
        idx = (start.unsqueeze(1) + self._offsets.view(1, -1, 1)) % self.capacity  # (S, K+1, B)
        rows = self.rows.view(-1, 1, 1)
        steps = idx[:, :-1]
        return SequenceBatch(
            obs=st.obs[rows, idx],
            action=st.action[rows, steps],
            reward=st.reward[rows, steps],
            terminated=st.terminated[rows, steps],
        )

    def sample_transitions(self, batch_size: int) -> TransitionBatch:
        """(S, B, ...) single transitions (s, a, r, s', terminated)."""
        st = self.storage
        idx = self._starts(st.transition_members, st.transition_count, batch_size)  # (S, B)
        rows = self.rows.view(-1, 1)
        nxt = (idx + 1) % self.capacity
        return TransitionBatch(
            obs=st.obs[rows, idx],
            action=st.action[rows, idx],
            reward=st.reward[rows, idx],
            next_obs=st.obs[rows, nxt],
            terminated=st.terminated[rows, idx],
        )

    def observations(self) -> list[torch.Tensor]:
        """Each seed's stored observations (N_s, D) (views)."""
        return [buffer.observations() for buffer in self.seed_buffers]
