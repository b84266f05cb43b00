"""Body model (SMPL via smplx), keypoint conventions, rotations and cameras."""
