"""The image tower of the world's CLIP: a plain convolutional net registered with timm.

Shapes in the world's 64x64 photos are 13-38 pixels across. A tower that downsamples by four
before its first residual stage (CLIP's ModifiedResNet, timm's ResNets) sees a small shape as
a few cells and learns to tell a pentagon from a hexagon slowly: a supervised probe of the
ModifiedResNet tower reached 35-50% shape accuracy after 300 steps of 64 single-object scenes,
where this net, whose first convolution runs at full resolution and whose features are
max-pooled over the image (an object is somewhere, not everywhere), reached 90%.

It is registered as the timm model ``shapes_convnet`` so that open_clip builds it from a model
config (``"timm_model_name": "shapes_convnet"``) and loads its weights through
``open_clip.create_model_and_transforms(name, pretrained=FILE)``, the path every CLIP
checkpoint takes; the registration holds no weights and runs no code from any file.
"""

from __future__ import annotations

from typing import Any

TIMM_NAME = "shapes_convnet"


def _build(width: int = 16) -> Any:
    import torch.nn as nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class ShapesConvNet(nn.Module):
        """Conv-BN-ReLU stages at 1, 1/2, 1/4 and 1/8 of the input's resolution (widths w, 2w,
        4w, 8w), then a global max (or average) pool: the timm interface open_clip's adapter
        uses (``num_features``, ``default_cfg``, ``reset_classifier``)."""

        def __init__(self) -> None:
            super().__init__()
            w = width
            self.features = nn.Sequential(
                *block(3, w), nn.MaxPool2d(2),
                *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
                *block(2 * w, 4 * w), *block(4 * w, 4 * w), nn.MaxPool2d(2),
                *block(4 * w, 8 * w))
            self.num_features = 8 * w
            self.default_cfg: dict[str, Any] = {"pool_size": None}  # pooled inside: a (B, C) output
            self.pretrained_cfg = self.default_cfg
            self.global_pool = "max"

        def reset_classifier(self, num_classes: int = 0, global_pool: str = "max") -> None:
            if num_classes:
                raise ValueError("shapes_convnet has no classifier; open_clip adds the projection")
            if global_pool not in ("max", "avg"):
                raise ValueError(f"shapes_convnet pools by 'max' or 'avg', not {global_pool!r}")
            self.global_pool = global_pool

        def forward(self, x: Any) -> Any:
            x = self.features(x)
            return x.amax(dim=(2, 3)) if self.global_pool == "max" else x.mean(dim=(2, 3))

    return ShapesConvNet()


def register() -> None:
    """Make ``shapes_convnet`` known to timm (once per process)."""
    import timm
    from timm.models import register_model

    if timm.is_model(TIMM_NAME):
        return

    def shapes_convnet(pretrained: bool = False, **kwargs: Any) -> Any:
        if pretrained:
            raise ValueError("shapes_convnet has no pretrained weights to download; load a checkpoint file")
        return _build()

    shapes_convnet.__module__ = __name__
    register_model(shapes_convnet)
