"""Evaluation: metrics (MPJPE, PA-MPJPE, PVE, 3DPCK, AUC), the protocols of each test set, and the runner
behind `gtacli eval`. Import submodules directly."""
