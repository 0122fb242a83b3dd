"""An exponential moving average of the weights while training (torch's AveragedModel), kept
beside the raw weights: both are evaluated at every evaluation and the run's best weights are
whichever scored lower. Its tensors and count travel in the last checkpoint, so a resumed run
averages on exactly as it would have."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .model import RNNLanguageModel

PREFIX = "average."  # the average's tensors in the last checkpoint
COUNT = "average_count"


class WeightAverage:
    def __init__(self, model: RNNLanguageModel, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    @property
    def model(self) -> RNNLanguageModel:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: RNNLanguageModel) -> None:
        self.averaged.update_parameters(model)

    def tensors(self) -> dict[str, torch.Tensor]:
        """For the last checkpoint."""
        # copies: tied weights share storage, which safetensors refuses
        saved = {PREFIX + name: value.detach().clone()
                 for name, value in self.model.state_dict().items()}
        saved[COUNT] = self.averaged.n_averaged.detach().clone()
        return saved

    def restore(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Load what tensors() saved; -> False when the checkpoint holds no average (the run
        trained without one until now: it starts from the current weights)."""
        if COUNT not in tensors:
            return False
        weights = {name[len(PREFIX):]: value for name, value in tensors.items()
                   if name.startswith(PREFIX)}
        self.model.load_state_dict(weights)
        self.averaged.n_averaged.copy_(tensors[COUNT])
        return True
