"""The run machinery: a run from its config to its summary.

``start`` is the one place a run starts (config, dataset, run dir, lock); ``online`` and
``offline`` are the training loops, one per mode, both driving ``run.TrainingRun`` (agent,
evaluation, best checkpoint, summary); ``methods`` is the table of what can train on a
dataset (ALM and the d3rlpy ``baselines``). ``rundir``, ``checkpoint``, ``loggers``,
``progress``, ``threads`` and ``tempfiles`` are what a run writes and how; ``envs`` and
``rollout`` make envs and play episodes in them.
"""
