"""Visualisation for the demo and the sample tree: headless mesh rendering, detection, video I/O, smoothing."""
