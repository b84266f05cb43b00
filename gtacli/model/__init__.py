"""The network: ResNet-50 backbone, HMR iterative head, the estimator joining them, and checkpoint I/O.

Import submodules directly (`from gtacli.model.estimator import HMREstimator`); this package keeps
`import gtacli.model` free of torch so the CLI stays fast.
"""
