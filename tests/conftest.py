"""Shared test setup: one torch thread, since the tests run on small shared machines."""

import torch

torch.set_num_threads(1)
