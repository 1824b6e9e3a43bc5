"""The agent core: what ALM computes.

``networks`` (encoder, latent model, reward, critic, actor as one ``WorldModel``),
``losses`` (the paper's bound as pure functions returning frozen dataclasses), ``agent``
(``AlmAgent``: one ``autograd.grad`` per parameter group, its optimisers and targets),
``fused`` (the same update compiled as one graph), ``updater`` (the eager or CUDA-graphed
step the training loops call), ``replay`` (sequences and transitions sampled on the agent's
device) and ``metrics`` (the per-update metrics window). Nothing here owns an env, a run
dir or a logger.
"""
