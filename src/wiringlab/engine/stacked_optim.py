"""Elementwise optimizers over stacked members: tensors with a leading member dim M.

Each hyperparameter (lr, weight decay, momentum, betas, ...) is a tensor of shape (M,),
broadcast over a parameter's trailing dims, so members with different values train in
one pass yet stay exactly independent: every update is elementwise, and nothing
(gradient clipping, a global norm) mixes members.

The update rules reproduce torch.optim.SGD/Adam/AdamW/RMSprop step for step (same
first-step momentum initialisation, same bias corrections), so a stacked member
follows the same trajectory as the member trained alone, to float rounding.
"""

from __future__ import annotations

import torch

__all__ = ["StackedOptimizer", "MemberOptimizerView"]

_STATE_NAMES = {
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg", "momentum_buffer"),
}


def _per_member(values, like: torch.Tensor) -> torch.Tensor:
    """(M,) tensor of `values`, viewed to broadcast against `like` (M, ...)."""
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return t.view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """One optimizer for parameters of shape (M, ...), with per-member hyperparameters.

    Args:
        params: list of leaf tensors, each with leading dim M.
        name: "sgd" | "adam" | "adamw" | "rmsprop" (every member uses the same rule).
        configs: M `OptimizerConfig`s, one per member (lr, weight_decay, momentum, ...).

    Pitfall: `set_lr_factors` multiplies each member's *base* lr; call it once per epoch
    with the schedule's factor, as LambdaLR does for a single model.
    """

    def __init__(self, params: list[torch.Tensor], name: str, configs) -> None:
        if any(c.name != name for c in configs):
            raise ValueError("stacked members must share the optimizer type")
        self.params, self.name, self.configs = list(params), name, list(configs)
        self.base_lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)
        self.lr = self.base_lr.clone()
        self.step_count = 0
        self.state = [{k: torch.zeros_like(p) for k in _STATE_NAMES[name]} for p in self.params]

    def set_lr_factors(self, factors) -> None:
        self.lr = self.base_lr * torch.as_tensor(factors, dtype=torch.float64)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _hyper(self, attr: str, p: torch.Tensor, index: int | None = None) -> torch.Tensor:
        values = [getattr(c, attr) if index is None else getattr(c, attr)[index] for c in self.configs]
        return _per_member(values, p)

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                getattr(self, f"_{self.name}")(p, p.grad, state)

    def _sgd(self, p, g, state):
        lr, wd, mom = _per_member(self.lr, p), self._hyper("weight_decay", p), self._hyper("momentum", p)
        nesterov = self._hyper("nesterov", p).bool() & (mom > 0)
        g = g + wd * p
        buf = state["momentum_buffer"]
        if self.step_count == 1:
            buf.copy_(g)  # torch initialises the buffer with the first gradient
        else:
            buf.mul_(mom).add_(g)
        update = torch.where(nesterov, g + mom * buf, torch.where(mom > 0, buf, g))
        p.sub_(lr * update)

    def _adam(self, p, g, state, decoupled: bool = False):
        lr, wd = _per_member(self.lr, p), self._hyper("weight_decay", p)
        b1, b2, eps = self._hyper("betas", p, 0), self._hyper("betas", p, 1), self._hyper("eps", p)
        if decoupled:
            p.mul_(1 - lr * wd)
        else:
            g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).add_((1 - b2) * g * g)
        t = self.step_count
        step_size = lr / (1 - b1**t)
        denom = v.sqrt() / (1 - b2**t).sqrt() + eps
        p.sub_(step_size * m / denom)

    def _adamw(self, p, g, state):
        self._adam(p, g, state, decoupled=True)

    def _rmsprop(self, p, g, state):
        lr, wd = _per_member(self.lr, p), self._hyper("weight_decay", p)
        alpha, eps, mom = self._hyper("alpha", p), self._hyper("eps", p), self._hyper("momentum", p)
        g = g + wd * p
        sq = state["square_avg"]
        sq.mul_(alpha).add_((1 - alpha) * g * g)
        avg = sq.sqrt() + eps
        buf = state["momentum_buffer"]
        buf.mul_(mom).add_(g / avg)
        p.sub_(lr * torch.where(mom > 0, buf, g / avg))

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
        return [{"params": self._params, "lr": float(self._stacked.lr[self._member])}]
