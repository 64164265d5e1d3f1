"""Small builders shared by tests."""

import torch

from wiringlab.engine import DeviceData


def blob_data(n_train=512, n_test=256, dim=20, classes=4, seed=0, noise=0.6) -> DeviceData:
    """Gaussian blobs around random class centres: learnable by a small MLP in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 1.5

    def draw(n):
        y = torch.randint(0, classes, (n,), generator=g)
        return centres[y] + noise * torch.randn(n, dim, generator=g), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return DeviceData(x_train, y_train, x_test, y_test, (dim,), classes)
