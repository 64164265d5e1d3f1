"""Optimizers over stacked members: tensors with a leading member dim M.

Each member is updated by torch's own optimizer functions (`torch.optim.sgd.sgd`,
`adam.adam`, `rmsprop.rmsprop`) on its slices of the stacked parameters, with its own
hyperparameters and the same flags as `optim.build_optimizer` (fused SGD/Adam/AdamW,
single-tensor RMSprop). So a stacked member takes exactly the steps it would take
alone, and members stay independent: nothing (gradient clipping, a global norm)
mixes them. Neighbouring members with the same hyperparameters and lr (the seeds of a
config, configs that differ only in kernels or masks) share one call on their joint
slice: these updates are elementwise, so the numbers are the same to float rounding
(torch's fused CPU SGD rounds the elements past its last full vector differently), with
one call per run of members instead of one per member (a Python call and, on a GPU,
kernel launches).

Evidence (`bench/stacked.py`, 2-core CPU, 8 members of a 784-1000-1000-10 MLP): an
earlier version updated all members at once with broadcast (M, 1, 1) hyperparameters;
each of its ~8 full-size temporaries per parameter cost ~40 ms (fresh 32 MB buffers,
page faults), and the stack ran 2.3x *slower* than the members one at a time. The
in-place fused kernels per member allocate nothing.
"""

from __future__ import annotations

import torch
from torch.optim import adam, rmsprop, sgd

__all__ = ["StackedOptimizer", "MemberOptimizerView"]

_STATE_NAMES = {
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg", "momentum_buffer"),
}


class StackedOptimizer:
    """One optimizer for parameters of shape (M, ...), with per-member hyperparameters.

    Args:
        params: list of leaf tensors, each with leading dim M.
        name: "sgd" | "adam" | "adamw" | "rmsprop" (every member uses the same rule).
        configs: M `OptimizerConfig`s, one per member (lr, weight_decay, momentum, ...).

    Pitfall: `set_lr_factors` multiplies each member's *base* lr; call it once per epoch
    with the schedule's factor, as LambdaLR does for a single model.
    """

    def __init__(self, params: list[torch.Tensor], name: str, configs, drop_grads: list[bool] | None = None) -> None:
        if any(c.name != name for c in configs):
            raise ValueError("stacked members must share the optimizer type")
        self.params, self.name, self.configs = list(params), name, list(configs)
        # per parameter: drop its gradient between steps (it arrives in the parameter's
        # layout, so autograd hands it over) rather than zeroing it in place
        self.drop_grads = list(drop_grads) if drop_grads is not None else [False] * len(self.params)
        # the dim order that makes each parameter contiguous: torch's fused kernels copy
        # strided tensors, so each run's slices are stepped as contiguous permuted views
        # (the state tensors and gradients share the parameter's strides)
        self._orders = [sorted(range(p.dim()), key=lambda d: -p.stride(d)) for p in self.params]
        # Python floats, not tensors: the lr is host bookkeeping, read every step
        self.base_lr = [float(c.lr) for c in configs]
        self.lr = list(self.base_lr)
        self.state = [{k: torch.zeros_like(p) for k in _STATE_NAMES[name]} for p in self.params]
        # Steps per parameter that had a gradient, as torch counts them (a parameter the loss
        # reaches only later starts later). Adam/RMSprop read the count from a tensor per
        # parameter (fused Adam: float32 on its device) that each call increments; every
        # member steps every time, so one tensor per parameter serves all the runs' calls,
        # set to the count before each.
        self.step_counts = [0] * len(self.params)
        self._steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._runs = self._member_runs()

    def set_lr_factors(self, factors) -> None:
        self.lr = [base * float(factor) for base, factor in zip(self.base_lr, factors, strict=True)]
        self._runs = self._member_runs()

    def _member_runs(self) -> list[tuple[int, int]]:
        """[start, stop) of each run of neighbouring members with equal configs and lr."""
        starts = [m for m in range(len(self.configs))
                  if m == 0 or (self.configs[m], self.lr[m]) != (self.configs[m - 1], self.lr[m - 1])]
        return list(zip(starts, starts[1:] + [len(self.configs)]))

    def zero_grad(self) -> None:
        """Drop the gradients that arrive in their parameter's layout (autograd hands the
        next one over without a copy); zero the others in place: a gradient in another
        layout is copied into a fresh buffer when `.grad` is None (15.7 ms per step for
        15 x 512 x 784 on 2 CPU threads, mostly page faults) but added in place otherwise
        (6.9 ms). `StackedMembers.adopt_gradient_layouts` makes most of them match."""
        for p, drop in zip(self.params, self.drop_grads):
            if drop:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in live:
            self.step_counts[i] += 1
        counts = [self.step_counts[i] for i in live]
        order = [self._orders[i] for i in live]
        full_grads = [self._grad_like_param(i) for i in live]  # once per step, not per run
        for a, b in self._runs:
            params = [self.params[i][a:b].permute(o) for i, o in zip(live, order)]  # (members of the run, ...)
            grads = [g[a:b].permute(o) for g, o in zip(full_grads, order)]
            states = [{k: v[a:b].permute(o) for k, v in self.state[i].items()} for i, o in zip(live, order)]
            steps = [] if self.name == "sgd" else [self._steps[i].fill_(n - 1) for i, n in zip(live, counts)]
            getattr(self, f"_{self.name}")(self.configs[a], self.lr[a], params, grads, states, steps)

    def _grad_like_param(self, i: int) -> torch.Tensor:
        # autograd gives `.grad` its dense parameter's strides; torch's fused CPU kernels
        # would pair the wrong elements if a gradient set by hand broke that, so copy it then
        p, g = self.params[i], self.params[i].grad
        return g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)

    def _sgd(self, c, lr, params, grads, states, steps):
        # Zero-initialised buffers reproduce torch's first step exactly: it copies the first
        # gradient into a new buffer, and with dampening 0, momentum * 0 + g is that gradient.
        sgd.sgd(params, grads, [s["momentum_buffer"] for s in states], fused=True, weight_decay=c.weight_decay,
                momentum=c.momentum, lr=lr, dampening=0.0, nesterov=c.nesterov and c.momentum > 0, maximize=False)

    def _adam(self, c, lr, params, grads, states, steps, decoupled: bool = False):
        adam.adam(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
                  fused=True, decoupled_weight_decay=decoupled, amsgrad=False, beta1=c.betas[0],
                  beta2=c.betas[1], lr=lr, weight_decay=c.weight_decay, eps=c.eps, maximize=False)

    def _adamw(self, c, lr, params, grads, states, steps):
        self._adam(c, lr, params, grads, states, steps, decoupled=True)

    def _rmsprop(self, c, lr, params, grads, states, steps):
        buffers = [s["momentum_buffer"] for s in states] if c.momentum > 0 else []
        rmsprop.rmsprop(params, grads, [s["square_avg"] for s in states], [], buffers, steps, foreach=False,
                        lr=lr, alpha=c.alpha, eps=c.eps, weight_decay=c.weight_decay, momentum=c.momentum,
                        centered=False)

    def member_view(self, member: int, member_params: list[torch.Tensor]) -> "MemberOptimizerView":
        """An optimizer-like view of one member, whose state tensors alias this one's."""
        return MemberOptimizerView(self, member, member_params)


class MemberOptimizerView:
    """What a single-model callback sees as `state.optimizer` for one stacked member.

    `state[param]` maps each member parameter to views of the stacked state, so an
    in-place reset (e.g. SET zeroing Adam moments at regrown weights) reaches the stack.
    `param_groups[0]["lr"]` is the member's current learning rate (read-only).
    """

    def __init__(self, stacked: StackedOptimizer, member: int, member_params: list[torch.Tensor]) -> None:
        self._stacked, self._member, self._params = stacked, member, list(member_params)
        # Views stay valid: stacked state tensors are updated in place, never replaced.
        self.state = {p: {k: v[member] for k, v in s.items()} for p, s in zip(self._params, stacked.state)}

    @property
    def param_groups(self) -> list[dict]:
        return [{"params": self._params, "lr": self._stacked.lr[self._member]}]
