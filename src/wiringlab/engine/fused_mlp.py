"""A hand-derived training step for plain MLPs: forward, backward and update in a few BLAS calls.

What it does: for an `MLP` made only of `nn.Linear` layers with ReLU between them (no
BatchNorm, dropout, prior or sparse layers, no module hooks) one training step runs without
autograd. Activations are kept feature-major, (features, B), so each large GEMM has the layer
width as its M and the batch as its N; MKL splits that shape better over two threads than
(B, features). With SGD momentum (no Nesterov) and no callback that reads gradients, the
momentum update is folded into the weight-gradient GEMM (buf ← m·buf + G·Hᵀ: one `addmm_`
with beta = m) and each layer is updated as soon as its gradient exists; otherwise the
gradients are written to `.grad` and the run's own optimizer steps, so every optimizer works.

Evidence (`python bench/throughput.py --samples 12800 --rounds 5`, 2-core AMD EPYC, MLP
784-1000-1000-10, batch 128, SGD momentum, six runs on a shared box): 9.6k–11.1k samples/s,
1.11–1.21x the same engine with autograd's step in the same runs (bench/README.md). Scratch
runs (one process, alternating, 12,800 samples): the hand-derived step with (B, features)
activations 10.0k samples/s, feature-major 11.2–11.3k, of which folding the momentum is ~4%
(10.8k with the optimizer stepping on `.grad`).

Same numbers as autograd up to rounding: tests/test_fused_mlp.py trains float64 models both
ways (SGD with and without momentum, Nesterov, weight decay, Adam, AdamW, RMSprop; partial and
one-sample last batches; lr schedules) and compares every parameter and metric to 1e-10.

Pitfalls:
    - In the folded mode `.grad` stays None: a callback that reads gradients must say so
      (`Callback.reads_gradients = True`), which selects the `.grad` mode.
    - Labels are used as indices without autograd's range check; `DeviceData` checks their
      range when it is built, so labels changed in place afterwards are not checked again.
    - The module's `forward` is not called during training steps, so forward hooks added after
      `train` starts are not seen; hooks present at the start make the run use autograd.
    - `train.step: autograd` forces the autograd loop, e.g. to reproduce numbers of runs made
      before this step existed (they differ in float rounding only).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import MLP

__all__ = ["FusedMLPStep", "fused_mlp_layers", "fused_step_blocker"]


def _has_hooks(model: nn.Module) -> bool:
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(m, name, None) for m in model.modules() for name in hook_dicts):
        return True
    module_globals = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                      "_global_backward_pre_hooks")
    if any(getattr(nn.modules.module, name, None) for name in module_globals):
        return True
    return any(p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None) for p in model.parameters())


def _layers_own_the_parameters(model: nn.Module, layers: list[nn.Linear]) -> bool:
    """Each parameter belongs to exactly one layer (no tied weights: the hand-derived step
    would update a shared tensor once per use) and the layers hold all of the model's."""
    owned = [id(p) for layer in layers for p in layer.parameters()]
    return len(owned) == len(set(owned)) and set(owned) == {id(p) for p in model.parameters()}


def fused_mlp_layers(model: nn.Module) -> list[nn.Linear] | str:
    """The linear layers of `model` in forward order when `FusedMLPStep` can train it, else
    a sentence saying why not."""
    if type(model) is not MLP:
        return f"the model is a {type(model).__name__}, not a plain MLP"
    stack = model.stack
    if type(stack.prior) is not nn.Identity:
        return "the model has a prior block"
    layers = []
    for index, block in enumerate(stack.hidden):
        kinds = [type(m) for m in block]
        if kinds != [nn.Linear, nn.ReLU]:
            return f"hidden block {index} is {' → '.join(k.__name__ for k in kinds)}, not Linear → ReLU"
        layers.append(block[0])
    if type(stack.classifier) is not nn.Linear:
        return f"the classifier is a {type(stack.classifier).__name__}, not an nn.Linear"
    layers.append(stack.classifier)
    if _has_hooks(model):
        return "the model has module or parameter hooks, which a step without autograd would skip"
    if not _layers_own_the_parameters(model, layers):
        return "layers share parameters"
    if any(p.dtype not in (torch.float32, torch.float64) for p in model.parameters()):
        return "the parameters are not float32 or float64 (autograd computes the loss in float32 there)"
    if not all(p.requires_grad for p in model.parameters()):
        return "some parameters do not require gradients"
    return layers


def fused_step_blocker(cfg, penalties=(), optimizer=None) -> str | None:
    """None when a run's `TrainConfig`, penalties and optimizer allow the fused step, else
    why not (the model aside: `fused_mlp_layers`)."""
    if cfg.step != "auto":
        return "train.step is autograd"
    if cfg.precision != "fp32" or cfg.compile != "off":
        return "train.precision or train.compile is set"
    if cfg.l1 > 0 or penalties:
        return "the loss has penalties (train.l1 or a layer's)"
    if optimizer is not None and len(optimizer.param_groups) != 1:
        return "the optimizer has several parameter groups"
    return None


def _optimizer_has_hooks(optimizer) -> bool:
    from torch.optim import optimizer as optim_module

    own = (optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks)
    shared = (getattr(optim_module, "_global_optimizer_pre_hooks", None),
              getattr(optim_module, "_global_optimizer_post_hooks", None))
    return any(own) or any(shared)


def _folds_momentum(optimizer, callbacks) -> bool:
    """Whether the update can be folded into the GEMM: torch's SGD with momentum, no Nesterov,
    dampening or maximize, no step hooks (it never calls `optimizer.step()`), no callback that
    reads `.grad`. Checked every step: a callback may change the param group."""
    group = optimizer.param_groups[0]
    plain_momentum = (type(optimizer) is torch.optim.SGD and group["momentum"] > 0 and not group["nesterov"]
                      and group["dampening"] == 0 and not group["maximize"])
    return plain_momentum and not _optimizer_has_hooks(optimizer) and not callbacks.reads_gradients


class FusedMLPStep:
    """One SGD/optimizer step of a plain ReLU MLP, computed by hand (see the module docstring).

    Args:
        layers: the MLP's `nn.Linear` layers in forward order (`fused_mlp_layers`).
        optimizer: the run's optimizer over exactly these layers' parameters.
        callbacks: the run's `CallbackList`; one with `reads_gradients` keeps `.grad` filled.

    Call with a batch (x, y) to train on it; returns the batch's mean cross-entropy and its
    logits, both detached (the logits are a view of a buffer the next call overwrites).
    """

    FOLDED, ON_GRAD = "fused-mlp, momentum in the GEMM", "fused-mlp, optimizer on .grad"

    def __init__(self, layers: list[nn.Linear], optimizer: torch.optim.Optimizer, callbacks) -> None:
        self.layers = layers
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.modes: set[str] = set()  # every mode a step has used
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]] = {}

    def _scratch(self, n: int, like: torch.Tensor):
        """Activation and input-gradient buffers for a batch of `n`, each (features, n), reused."""
        if n not in self._buffers:
            kw = dict(dtype=like.dtype, device=like.device)
            acts = [torch.empty(layer.out_features, n, **kw) for layer in self.layers]
            grads = [torch.empty(layer.in_features, n, **kw) for layer in self.layers[1:]]
            self._buffers[n] = acts, grads, torch.arange(n, device=like.device)
        return self._buffers[n]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fold = _folds_momentum(self.optimizer, self.callbacks)
        self.modes.add(self.FOLDED if fold else self.ON_GRAD)
        acts, grads, rows = self._scratch(len(y), self.layers[0].weight)
        inputs = [x.flatten(1).t()]  # (in, B)
        for i, layer in enumerate(self.layers):
            out = acts[i]  # (out, B)
            if layer.bias is None:
                torch.mm(layer.weight, inputs[-1], out=out)
            else:
                torch.addmm(layer.bias[:, None], layer.weight, inputs[-1], out=out)
            if i < len(self.layers) - 1:
                out.relu_()
            inputs.append(out)
        logits = inputs.pop().t()  # (B, classes)
        log_p = torch.log_softmax(logits, 1)
        loss = -log_p[rows, y].mean()
        grad = log_p.exp_()  # softmax; d mean-CE / d logits = (softmax - onehot) / B
        grad[rows, y] -= 1.0
        grad.div_(len(y))
        self._backward(grad.t(), inputs, grads, fold)  # (classes, B)
        if not fold:
            self.optimizer.step()
        return loss, logits

    def _backward(self, grad_out: torch.Tensor, inputs: list[torch.Tensor], grads: list[torch.Tensor],
                  fold: bool) -> None:
        for i in reversed(range(len(self.layers))):
            layer, grad_in = self.layers[i], None
            if i > 0:  # the input gradient uses this layer's weights before its update
                grad_in = torch.mm(layer.weight.t(), grad_out, out=grads[i - 1])  # (in, B)
                # ReLU's backward, from its output as autograd's: zero where the output is 0
                torch.ops.aten.threshold_backward.grad_input(grad_in, inputs[i], 0.0, grad_input=grad_in)
            if fold:
                self._update(layer, grad_out, inputs[i])
            else:
                self._write_grads(layer, grad_out, inputs[i])
            grad_out = grad_in

    def _write_grads(self, layer: nn.Linear, grad_out: torch.Tensor, inp: torch.Tensor) -> None:
        for p in layer.parameters():  # overwritten, as after zero_grad(set_to_none=True) and backward
            if p.grad is None:
                p.grad = torch.empty_like(p)
        torch.mm(grad_out, inp.t(), out=layer.weight.grad)  # (out, in)
        if layer.bias is not None:
            torch.sum(grad_out, 1, out=layer.bias.grad)

    def _update(self, layer: nn.Linear, grad_out: torch.Tensor, inp: torch.Tensor) -> None:
        """torch's SGD with momentum m, dampening 0, weight decay wd:
        buf ← m·buf + (g + wd·p);  p ← p − lr·buf."""
        group = self.optimizer.param_groups[0]
        lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
        weight_buf = self._momentum_buffer(layer.weight)
        weight_buf.addmm_(grad_out, inp.t(), beta=m)  # (out, in)
        if layer.bias is not None:
            self._momentum_buffer(layer.bias).mul_(m).add_(grad_out.sum(1))
        for p in layer.parameters():
            buf = self._momentum_buffer(p)
            if wd:
                buf.add_(p, alpha=wd)
            p.add_(buf, alpha=-lr)

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        """The optimizer's own buffer, so that its state (saved, reset by callbacks) stays true."""
        state = self.optimizer.state[p]
        if state.get("momentum_buffer") is None:  # torch's first step: m·0 + g = g
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]
