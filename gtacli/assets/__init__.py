"""What files the recipe needs, where they come from and where they go.

`manifest` (the registry in `manifest.json` + content validators), `download` (verified, resumable
fetches), `smpl_import` (licensed SMPL files -> plain-numpy pickles), `layout_check` (per-job checks of a
data root).
"""
