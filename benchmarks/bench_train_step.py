"""Training-step efficiency on the CPU (issue 5, benchmark 7a). Results to benchmarks/results/train_step.json.

    python benchmarks/bench_train_step.py [--batch-size 8] [--workers 2] [--steps 6] [--data-root DIR]

efficiency = (network forward + backward + both Adam steps on a fixed, already-loaded batch)
             / (the full training step of `gtacli finetune`: waiting for the data loader (workers decode,
                augment and crop the images), moving the batch, forward, registration (GT and fit SMPL,
                estimate_translation, the registrant's joint loss), the predicted-SMPL forward, the six
                losses, backward and both Adam steps)
Goal: >= 0.85. Both are the median time per step after one warm-up step, measured alternately in the same
process on the same model (recipe gta-spin-ft, BatchNorm in train mode, dropout on). Without --data-root the
tiny synthetic sample tree is built in a temporary folder (the numbers do not depend on the weights).
The machine's load average is recorded: other processes on the same cores slow every part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per mode (after 1 warm-up)")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "train_step.json")
    args = parser.parse_args()

    import torch

    from gtacli.train.loop import Trainer, TrainOptions, set_train_mode
    from gtacli.train.recipe import apply_cli_overrides, get_recipe

    tmp = tempfile.TemporaryDirectory(prefix="gtacli-bench-train-")
    root = args.data_root
    if root is None:
        from gtacli.sample.tree import build_sample_tree

        root = build_sample_tree(Path(tmp.name) / "data", size="tiny", seed=0)
    total_steps = 2 * (args.steps + 1)
    recipe = apply_cli_overrides(
        get_recipe("gta-spin-ft"),
        batch_size=args.batch_size,
        workers=args.workers,
        num_data=args.batch_size * total_steps,
        epochs=1,
        settings={"eval_each_epoch": "false"},
    )
    opts = TrainOptions(
        command="finetune", recipe=recipe, data_root=Path(root), work_dir=Path(tmp.name) / "run", device="cpu",
        seed=0, progress=False, log=lambda m: None, warn=lambda m: None,
    )  # fmt: skip
    trainer = Trainer(opts).setup()
    set_train_mode(trainer.model, trainer.recipe)
    trainer.sampler.set_epoch(0)
    fixed = trainer.to_device(next(iter(trainer.loader)))

    def network_step() -> float:
        t0 = time.perf_counter()
        out = trainer.model(fixed["img"])
        # a scalar touching every output, so backward covers the whole network
        loss = (
            out["pred_pose"].square().mean()
            + out["pred_shape"].square().mean()
            + out["pred_cam"].square().mean()
        )
        for opt in trainer.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in trainer.optimizers.values():
            opt.step()
        return time.perf_counter() - t0

    # the full step, as the training loop runs it (data wait + transfer + train_step)
    trainer.sampler.set_epoch(1)
    iterator = iter(trainer.loader)
    parts = {"data_wait_s": [], "full_step_s": []}

    def full_step() -> float:
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        trainer.train_step(trainer.to_device(batch))
        t2 = time.perf_counter()
        parts["data_wait_s"].append(t1 - t0)
        return t2 - t0

    net_times, full_times = [], []
    network_step()  # warm-up
    full_step()
    parts = {"data_wait_s": [], "full_step_s": []}
    for _ in range(args.steps):  # alternate so both see the same machine load
        net_times.append(network_step())
        full_times.append(full_step())
    net = statistics.median(net_times)
    full = statistics.median(full_times)
    result = {
        "benchmark": "train_step",
        "command": "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:]),
        "goal": "efficiency >= 0.85",
        "efficiency": round(net / full, 4),
        "network_step_s_median": round(net, 4),
        "full_step_s_median": round(full, 4),
        "data_wait_s_median": round(statistics.median(parts["data_wait_s"]), 4),
        "network_step_s": [round(t, 4) for t in net_times],
        "full_step_s": [round(t, 4) for t in full_times],
        "batch_size": args.batch_size,
        "workers": args.workers,
        "steps_measured": args.steps,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "data": "synthetic sample tree" if args.data_root is None else str(args.data_root),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from gtacli.io.atomic import atomic_write_json

    atomic_write_json(args.output, result)
    print(json.dumps(result, indent=2))
    tmp.cleanup()


if __name__ == "__main__":
    main()
