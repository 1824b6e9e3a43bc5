"""Ray: joining a cluster (or starting a local one) and running one task per trial.

A task asks Ray for ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs whatever its
number of seeds: a batched ALM trial trains its seeds in one process (one ``threads=``
torch pool, one device), so a cell of five seeds takes the slot of one trial, not five.

Each task runs with ``max_retries=0``: a trial whose worker or node dies is a ``failed``
row, never retried automatically (a retry would start it again from scratch, on a node
chosen by Ray, while the driver reports nothing); ``alm sweep --resume`` continues it from
its last checkpoint instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alm_offline import errors
from alm_offline.tools.sweep.spec import SweepError

RAY_MISSING = "alm sweep needs Ray: pip install 'alm-offline[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of a task's exception (a row's error)."""
    text = errors.first_line(exc)
    return text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


def connect(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address``, or start a local Ray of this sweep's own with this
    machine's CPUs and GPUs (``address="local"``: never the Ray another sweep started, which
    takes its trials with it when that sweep ends); ``SweepError`` (one line) when Ray
    cannot start."""
    try:
        if address is None:
            import torch

            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                num_gpus=torch.cuda.device_count(),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises many types; the user gets one line
        ray.shutdown()
        raise SweepError(f"cannot start Ray ({address or 'local'}): {first_line(exc)}") from None
    session = _session_dir(ray)
    if address is None:  # this sweep owns its Ray: say so, for a sweep that would join it
        if session is not None:
            owner = {"pid": os.getpid(), "gcs_address": _gcs_address(ray)}
            (session / OWNER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        return
    owner = _owner(session)
    if owner is not None and owner != os.getpid():
        ray.shutdown()
        raise SweepError(
            f"--address {address} is the local Ray of another sweep (pid {owner}), which stops "
            "it when it ends and would take this sweep's trials with it: start a shared "
            "cluster with ray start --head, or leave out --address"
        )


OWNER_FILE = "alm-sweep-owner.json"  # in a Ray session dir: the sweep that started that Ray


def _session_dir(ray: Any) -> Path | None:
    """The connected cluster's session dir on this machine (None when not local)."""
    try:
        path = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    except Exception:  # a remote cluster, or a Ray without this attribute
        return None
    return path if path.is_dir() else None


def _gcs_address(ray: Any) -> str | None:
    try:
        return ray._private.worker.global_worker.node.gcs_address
    except Exception:
        return None


def _owner(session: Path | None) -> int | None:
    """The pid of the live sweep that started the cluster of ``session``, if any."""
    if session is None:
        return None
    try:
        pid = int(json.loads((session / OWNER_FILE).read_text(encoding="utf-8"))["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no owner file (a ray start cluster), or its sweep has ended
    return pid


Rows = list[dict[str, Any]]


def run_tasks(
    ray: Any,
    function: Callable[..., Rows],
    arguments: Sequence[tuple],
    failed_rows: Callable[[int, BaseException], Rows],
    finished: Callable[[int, Rows], None],
    *,
    cpus_per_trial: float,
    gpus_per_trial: float,
) -> None:
    """Run ``function(*arguments[i])`` (a trial's rows) for every i as a task on the
    connected Ray, each with the same resources, and give each result to
    ``finished(i, rows)`` as it comes; a task that died (crashed worker, dead node, lost
    object) becomes ``failed_rows(i, exc)``."""
    task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(function)
    pending = {task.remote(*args): i for i, args in enumerate(arguments)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            try:
                rows = ray.get(ref)
            except Exception as exc:  # RayTaskError, WorkerCrashedError, NodeDiedError, ...
                cause = getattr(exc, "cause", None)
                rows = failed_rows(i, cause if isinstance(cause, BaseException) else exc)
            finished(i, rows)
