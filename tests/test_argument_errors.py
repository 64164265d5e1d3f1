"""Bad arguments to the pure functions and layers are refused with a message that names
the value and what is allowed (the library's own callers validate configs first; these
guard direct use from Python)."""

import pytest
import torch

import wiringlab.geometry as geo
import wiringlab.sparse as sp
from wiringlab.layers.spatial import SpatialLinear
from wiringlab.layers.task_kernel import TaskKernelLinear

MASK = torch.zeros(3, 4, dtype=torch.bool)
G = torch.Generator().manual_seed(0)

CASES = [
    (lambda: sp.er_density(10, 10, 0.0), r"need n_in, n_out, epsilon > 0; got 10, 10, 0.0"),
    (lambda: sp.prune("smallest", torch.ones(3, 4), MASK, 0.1), r"unknown prune rule 'smallest'; allowed: sign"),
    (lambda: sp.prune("sign", torch.ones(3, 4), MASK, 1.5), r"zeta must be in \[0, 1\], got 1.5"),
    (lambda: sp.regrow_random(torch.ones(3, 4, dtype=torch.bool), 1, G),
     r"cannot draw 1 empty positions: only 0 of 12"),
    (lambda: sp.regrow_gradient(torch.ones(3, 4, dtype=torch.bool), 1, torch.ones(3, 4)),
     r"cannot regrow 1 connections: only 0 are empty of 12 positions"),
    (lambda: sp.regrow_gradient(MASK, 1, torch.ones(4, 3)), r"dense_grad shape \(4, 3\) != mask shape \(3, 4\)"),
    (lambda: sp.regrow_distance(MASK, 1, torch.ones(4, 3), G), r"probability shape \(4, 3\) != mask shape \(3, 4\)"),
    (lambda: sp.regrow_distance(MASK, 1, -torch.ones(3, 4), G), r"probability must be non-negative"),
    (lambda: sp.regrown_values(2, "glorot", 0.1, G), r"unknown regrow init 'glorot'; allowed: zero, uniform"),
    (lambda: sp.zeta_at(0.3, "linear", 0.5), r"unknown zeta schedule 'linear'; allowed: constant, cosine"),
    (lambda: geo.grid_shape(0), r"a grid needs at least one unit, got n=0"),
    (lambda: geo.grid_positions(2, 2, 5), r"5 units do not fit a 2x2 grid"),
    (lambda: geo.layer_positions(4, 3, "ring"), r"unknown layout 'ring'; allowed: line, grid"),
    (lambda: geo.pairwise_distance(torch.zeros(2, 2), torch.zeros(3, 1)), r"positions of different dimension: 2 and 1"),
    (lambda: SpatialLinear(3, 4, scale="per-unit"), r"unknown scale 'per-unit'; allowed: learnable, fixed"),
    (lambda: SpatialLinear(3, 4, kernel="exponential", geometry=torch.ones(3, 4)),
     r"distance matrix of shape \(3, 4\); the layer needs \(4, 3\)"),
    (lambda: SpatialLinear(3, 4, geometry=torch.ones(3, 4)), r"distance matrix of shape \(3, 4\)"),  # no kernel
    (lambda: TaskKernelLinear(3, 4, ["a", "a"]), r"tasks must be distinct names, at least one; got \('a', 'a'\)"),
    (lambda: TaskKernelLinear(3, 4, ["a", "b"]).task_index("c"), r"unknown task 'c'; the layer's tasks: a, b"),
    (lambda: TaskKernelLinear(3, 4, ["a"]).set_kernel_("a", torch.ones(3, 4)),
     r"kernel of shape \(3, 4\); the layer needs \(4, 3\)"),
]


@pytest.mark.parametrize("call, message", CASES, ids=[m.split(" ")[0] + f"-{i}" for i, (_, m) in enumerate(CASES)])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
