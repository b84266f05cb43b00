"""A YOLOX-S network with random weights, as an ONNX file shaped like OpenCV model zoo's
`object_detection_yolox_2022nov.onnx` (input `images` (1, 3, 640, 640), output (1, 8400, 85): box offsets, then
sigmoid objectness and 80 sigmoid class scores per anchor), for timing the demo's YOLOX detector where the zoo's
weights cannot be downloaded.

Benchmark-only (not part of gtacli): the time a convolutional network takes does not depend on its weights, so
this stands in for the real file in `bench_demo.py --yolox-architecture`. The layers follow YOLOX-S as published
(Ge et al. 2021; depth 0.33, width 0.50, SiLU): a Focus stem, CSPDarknet with an SPP block, PAFPN and the
decoupled head, with BatchNorm folded into the convolutions as an export folds it (about 26.8 GFLOPs at 640 px).
Its boxes are meaningless: the benchmark runs it for the time and keeps the people another detector found.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

DEPTH, WIDTH = 0.33, 0.50
CLASSES = 80
INPUT = 640


def _channels(c: int) -> int:
    return int(c * WIDTH)


def _depth(n: int) -> int:
    return max(round(n * DEPTH), 1)


class ConvAct(nn.Module):
    """Convolution (BatchNorm folded into its bias) + SiLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=True)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool):
        super().__init__()
        self.conv1, self.conv2, self.shortcut = ConvAct(c, c, 1), ConvAct(c, c, 3), shortcut

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True):
        super().__init__()
        hidden = cout // 2
        self.conv1, self.conv2 = ConvAct(cin, hidden, 1), ConvAct(cin, hidden, 1)
        self.conv3 = ConvAct(2 * hidden, cout, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut) for _ in range(n)])

    def forward(self, x):
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], 1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels=(5, 9, 13)):
        super().__init__()
        hidden = cin // 2
        self.conv1 = ConvAct(cin, hidden, 1)
        self.pools = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = ConvAct(hidden * (len(kernels) + 1), cout, 1)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.pools], 1))


class Focus(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvAct(4 * cin, cout, 3)

    def forward(self, x):
        tl, bl = x[..., ::2, ::2], x[..., 1::2, ::2]
        tr, br = x[..., ::2, 1::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat([tl, bl, tr, br], 1))


class YoloxS(nn.Module):
    def __init__(self):
        super().__init__()
        c, n = _channels(64), _depth(3)  # 32, 1
        self.stem = Focus(3, c)
        self.dark2 = nn.Sequential(ConvAct(c, 2 * c, 3, 2), CSPLayer(2 * c, 2 * c, n))
        self.dark3 = nn.Sequential(ConvAct(2 * c, 4 * c, 3, 2), CSPLayer(4 * c, 4 * c, 3 * n))
        self.dark4 = nn.Sequential(ConvAct(4 * c, 8 * c, 3, 2), CSPLayer(8 * c, 8 * c, 3 * n))
        self.dark5 = nn.Sequential(
            ConvAct(8 * c, 16 * c, 3, 2), SPPBottleneck(16 * c, 16 * c), CSPLayer(16 * c, 16 * c, n, False)
        )
        c3, c4, c5 = 4 * c, 8 * c, 16 * c  # 128, 256, 512
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = ConvAct(c5, c4, 1)
        self.c3_p4 = CSPLayer(2 * c4, c4, n, False)
        self.reduce_conv1 = ConvAct(c4, c3, 1)
        self.c3_p3 = CSPLayer(2 * c3, c3, n, False)
        self.bu_conv2 = ConvAct(c3, c3, 3, 2)
        self.c3_n3 = CSPLayer(2 * c3, c4, n, False)
        self.bu_conv1 = ConvAct(c4, c4, 3, 2)
        self.c3_n4 = CSPLayer(2 * c4, c5, n, False)
        hidden = _channels(256)  # 128
        self.heads = nn.ModuleList()
        for cin in (c3, c4, c5):
            head = nn.Module()
            head.stem = ConvAct(cin, hidden, 1)
            head.cls_convs = nn.Sequential(ConvAct(hidden, hidden, 3), ConvAct(hidden, hidden, 3))
            head.reg_convs = nn.Sequential(ConvAct(hidden, hidden, 3), ConvAct(hidden, hidden, 3))
            head.cls_pred = nn.Conv2d(hidden, CLASSES, 1)
            head.reg_pred = nn.Conv2d(hidden, 4, 1)
            head.obj_pred = nn.Conv2d(hidden, 1, 1)
            self.heads.append(head)

    def forward(self, x):
        x2 = self.dark3(self.dark2(self.stem(x)))
        x1 = self.dark4(x2)
        x0 = self.dark5(x1)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.c3_p4(torch.cat([self.up(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.c3_p3(torch.cat([self.up(fpn_out1), x2], 1))
        pan_out1 = self.c3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.c3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        rows = []
        for head, feature in zip(self.heads, (pan_out2, pan_out1, pan_out0)):
            feature = head.stem(feature)
            cls = head.cls_pred(head.cls_convs(feature))
            reg_feature = head.reg_convs(feature)
            out = torch.cat(
                [head.reg_pred(reg_feature), head.obj_pred(reg_feature).sigmoid(), cls.sigmoid()], 1
            )
            rows.append(out.flatten(2))  # (1, 85, H*W), x fastest
        return torch.cat(rows, 2).permute(0, 2, 1)  # (1, 8400, 85)


def write_yolox_s_onnx(path: Path, seed: int = 0) -> Path:
    """Write the random-weight YOLOX-S (see the module docstring) to `path`."""
    torch.manual_seed(seed)
    model = YoloxS().eval()
    for module in model.modules():  # small weights keep the activations finite through 60 layers
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5 * 0.5)
            nn.init.zeros_(module.bias)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the legacy exporter announces its deprecation (as gtacli export does)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, INPUT, INPUT),),
            buffer,
            dynamo=False,
            opset_version=11,
            input_names=["images"],
            output_names=["output"],
        )
    path.write_bytes(buffer.getvalue())
    return path
