"""Test-only PyTorch networks written to the reference architecture (reference lib/models/pose_resnet.py).

Used to check that converted checkpoints reproduce PyTorch outputs; module names give the
reference state_dict keys.
"""
from __future__ import annotations

import torch
from torch import nn


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottle(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _layer(block, cin, planes, n, stride):
    down = None
    if stride != 1 or cin != planes * block.expansion:
        down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                             nn.BatchNorm2d(planes * block.expansion))
    mods = [block(cin, planes, stride, down)]
    mods += [block(planes * block.expansion, planes) for _ in range(n - 1)]
    return nn.Sequential(*mods), planes * block.expansion


class PoseResNet(nn.Module):
    SPECS = {18: (Basic, [2, 2, 2, 2]), 50: (Bottle, [3, 4, 6, 3])}

    def __init__(self, depth=18, joints=24, final_name="final_layer_1", deconv_kernel=4):
        super().__init__()
        block, counts = self.SPECS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = 64
        self.layer1, c = _layer(block, c, 64, counts[0], 1)
        self.layer2, c = _layer(block, c, 128, counts[1], 2)
        self.layer3, c = _layer(block, c, 256, counts[2], 2)
        self.layer4, c = _layer(block, c, 512, counts[3], 2)
        pad, op = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[deconv_kernel]
        mods = []
        for _ in range(3):
            mods += [nn.ConvTranspose2d(c, 256, deconv_kernel, 2, pad, op, bias=False), nn.BatchNorm2d(256), nn.ReLU()]
            c = 256
        self.deconv_layers = nn.Sequential(*mods)
        self.final_name = final_name
        setattr(self, final_name, nn.Conv2d(256, joints, 1))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return getattr(self, self.final_name)(self.deconv_layers(x))


class HRModule(nn.Module):
    def __init__(self, chans, multi):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*[Basic(c, c) for _ in range(4)]) for c in chans])
        fuse = []
        for i in range(len(chans) if multi else 1):
            row = []
            for j in range(len(chans)):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(chans[j], chans[i], 1, bias=False), nn.BatchNorm2d(chans[i]),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        oc = chans[i] if last else chans[j]
                        mods = [nn.Conv2d(chans[j], oc, 3, 2, 1, bias=False), nn.BatchNorm2d(oc)]
                        if not last:
                            mods.append(nn.ReLU())
                        steps.append(nn.Sequential(*mods))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU()

    def forward(self, xs):
        xs = [b(x) for b, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


class PoseHRNet(nn.Module):
    def __init__(self, width=32, joints=24):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1, _ = _layer(Bottle, 64, 64, 4, 1)
        pre = [256]
        for s, (nb, nm) in enumerate(((2, 1), (3, 4), (4, 3))):
            cur = [width * 2 ** i for i in range(nb)]
            trans = []
            for i, c in enumerate(cur):
                if i < len(pre):
                    trans.append(nn.Sequential(nn.Conv2d(pre[i], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
                                 if pre[i] != c else None)
                else:
                    trans.append(nn.Sequential(nn.Sequential(nn.Conv2d(pre[-1], c, 3, 2, 1, bias=False),
                                                             nn.BatchNorm2d(c), nn.ReLU())))
            setattr(self, f"transition{s + 1}", nn.ModuleList(trans))
            setattr(self, f"stage{s + 2}", nn.Sequential(*[HRModule(cur, not (s == 2 and m == nm - 1))
                                                           for m in range(nm)]))
            pre = cur
        self.final_layer = nn.Conv2d(width, joints, 1)

    def forward(self, x):
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for s in range(3):
            trans = getattr(self, f"transition{s + 1}")
            new = []
            for i, t in enumerate(trans):
                if t is None:
                    new.append(xs[i])
                else:
                    new.append(t(xs[i] if i < len(xs) else xs[-1]))
            xs = new
            for m in getattr(self, f"stage{s + 2}"):
                xs = m(xs)
        return self.final_layer(xs[0])


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BN statistics, then eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), nn.ConvTranspose2d):
                    fan_in = p.shape[0] * p.shape[2] * p.shape[3] / 4
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
    return model.eval()
