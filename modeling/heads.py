"""BNNeck: BatchNorm1d with a frozen zero bias, then a bias-free linear classifier (N(0, 0.001))."""

import torch.nn as nn


class BNNeck(nn.Module):
    """feat (B, D) -> logits (B, num_classes) through the BN'd feature."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        # The shift is frozen at zero, as in the BNNeck of the strong ReID baseline.
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat):
        return self.classifier(self.bn(feat))
