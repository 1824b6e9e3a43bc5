"""The tools that read or drive runs, a module per job:

- ``evaluate``: ``alm eval``, a checkpoint's deterministic returns and video;
- ``analysis``, ``model_kl``, ``falls``: ``alm analyze bias|rollout``, ``model-kl``, ``falls``;
- ``plotting``, ``published``: ``alm plot`` and the paper's published curves;
- ``update_speed``, ``bench_seeds``: ``alm bench``; ``paper_results``: the GPU script's report;
- ``stats``: rliable's IQM and probability of improvement, seeded;
- ``sweep/``: ``alm sweep`` on Ray; ``alm grid run|report|summary``, results that land seed
  by seed and cell by cell: ``grid_file`` (the grid file), ``grid_records`` (seed and cell
  files), ``grid_run`` (running), ``grid_report``, ``online_report``, ``grid_summary``;
- ``make_suite``: ``alm dataset make-suite``'s behaviour runs (ALM, or D4RL's SAC recipe).
"""
