"""Animation export: per-track glTF 2.0 (.glb), BVH and AMASS-style SMPL sequences from a demo's results."""
