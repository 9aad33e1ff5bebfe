"""The one optimiser builder of the package's trainable parts (world models and agents alike)."""

from __future__ import annotations

import optax

from world_models.backbones.s5 import ssm_param_labels


def make_optimizer(lr: float, grad_clip: float, eps: float = 1e-8, ssm_lr: float = 0.0
                   ) -> optax.GradientTransformation:
    """Adam after clipping the global gradient norm to ``grad_clip``.

    With ``ssm_lr > 0`` the parameters ``ssm_param_labels`` marks (S5's ``Lambda``, ``B`` and
    ``log Delta``, wherever S5 layers sit in the tree) take Adam at ``ssm_lr`` and the rest at ``lr``
    (S5's recipe); the clipping still sees all gradients at once. ``ssm_lr = 0``: one Adam at ``lr``
    for everything, whose state has the layout of checkpoints written before ``ssm_lr`` existed.
    """
    clip = optax.clip_by_global_norm(grad_clip)
    if ssm_lr == 0.0:
        return optax.chain(clip, optax.adam(lr, eps=eps))
    rates = {"regular": optax.adam(lr, eps=eps), "ssm": optax.adam(ssm_lr, eps=eps)}
    return optax.chain(clip, optax.multi_transform(rates, ssm_param_labels))
