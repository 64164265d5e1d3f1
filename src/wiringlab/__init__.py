"""wiringlab: connectivity priors for neural networks.

Drop-in layers, pure functions for kernels, masks and analyses, and a recipe runner
that writes honest results folders. See the README for the two commands that set up
and run everything.
"""

__version__ = "0.1.0"

from .data import Dataset, load_dataset, list_datasets  # noqa: E402
from .engine import train, evaluate, to_device_data  # noqa: E402
from .experiment import RunConfig, expand, load_recipe, run_sweep  # noqa: E402
from .init import init_parameters_  # noqa: E402
from .layers import CSRSparseLinear, SparseLinear, SpatialLinear, effective_weight, make_linear  # noqa: E402
from .models import build_model, linear_layers, hidden_linear_layers  # noqa: E402
from .report import build_report  # noqa: E402
from .seeding import make_generator  # noqa: E402

__all__ = [
    "__version__", "Dataset", "load_dataset", "list_datasets", "train", "evaluate", "to_device_data",
    "RunConfig", "expand", "load_recipe", "run_sweep", "init_parameters_", "effective_weight",
    "SparseLinear", "CSRSparseLinear", "SpatialLinear", "make_linear", "build_model", "linear_layers",
    "hidden_linear_layers", "build_report", "make_generator",
]
