"""The env and file helpers every layer above uses: env construction and episode tapes
(``envs``), the one episode loop and the one env-step loop (``rollout``, ``envs.SeedEnvs``),
writes that never leave a half-written file (``files``) and the CPU's name (``machine``).
They import only config, errors, scores and core."""
