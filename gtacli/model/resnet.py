"""ResNet-50 backbone with torchvision's parameter names and no classifier (docs/reproduction.md §4.1).

Written out here (no torchvision dependency) so the state_dict keys are exactly torchvision's `resnet50`
minus `fc.*`, i.e. mmhuman3d's `backbone.*` keys once prefixed. `forward` returns the layer4 feature map.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

# (planes, blocks) of the four stages of ResNet-50 and their strides (docs/reproduction.md §4.1).
RESNET50_STAGES: Sequence[tuple] = ((64, 3), (128, 4), (256, 6), (512, 3))
RESNET50_STRIDES: Sequence[int] = (1, 2, 2, 2)
BOTTLENECK_EXPANSION = 4
STEM_CHANNELS = 64
FEATURE_CHANNELS = RESNET50_STAGES[-1][0] * BOTTLENECK_EXPANSION  # 2048


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here: 'pytorch' style) -> 1x1, plus identity or 1x1 projection shortcut."""

    expansion = BOTTLENECK_EXPANSION

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision: no extra activation-sized tensor per block
        return self.relu(out)


class ResNet50(nn.Module):
    """ResNet-50 without `avgpool`/`fc`: `forward(img (B,3,H,W)) -> (B,2048,H/32,W/32)`."""

    def __init__(self, init_weights: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = STEM_CHANNELS
        for index, ((planes, blocks), stride) in enumerate(zip(RESNET50_STAGES, RESNET50_STRIDES), start=1):
            layer, inplanes = _make_layer(inplanes, planes, blocks, stride)
            self.add_module(f"layer{index}", layer)
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's defaults; irrelevant once weights are loaded, but gives sane activations otherwise.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int) -> tuple:
    out_channels = planes * BOTTLENECK_EXPANSION
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers: List[nn.Module] = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_channels
