"""gtacli: the GTA-Human SPIN pipeline (ResNet-50 + HMR regressor of SMPL) without mmcv/mmhuman3d."""

__version__ = "0.1.0"
