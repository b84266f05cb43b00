"""Training-step speed against the reference code's rate. Results to benchmarks/results/train_step.json.

    python benchmarks/bench_train_step.py [--batch-size 8] [--workers 2] [--steps 6] [--device cpu] [--data-root DIR]

Three rates (samples/s), measured alternately in one process on the same weights and the same batch size:

* reference: ResNet-50 + HMR forward + backward + both Adam steps in plain NCHW float32 on a fixed batch, as
  SPIN and mmhuman3d run it (a copy of our model kept in the default memory layout);
* ours: the same network step in channels-last layout (what `gtacli finetune`/`train` use by default);
* full step: the whole training step of `gtacli finetune` (recipe gta-spin-ft): waiting for the data loader
  (workers decode, augment and crop), moving the batch, forward, registration, the predicted-SMPL forward,
  the six losses, backward and both Adam steps.

Reported: each median, ours / reference (how much the memory layout buys for training) and full / ours
(goal >= 0.85: the rest of the step costs little beside the network). Without --data-root the tiny synthetic sample tree is built in a
temporary folder (the timings do not depend on the weights). The load average is recorded: other processes
on the same cores slow every part.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "train_step.json")
    args = parser.parse_args()

    import torch

    from gtacli.io.atomic import atomic_write_json
    from gtacli.train.loop import Trainer
    from gtacli.train.optim import build_optimizers, set_train_mode
    from gtacli.train.options import TrainOptions
    from gtacli.train.recipe import apply_cli_overrides, get_recipe

    tmp = tempfile.TemporaryDirectory(prefix="gtacli-bench-train-")
    root = args.data_root
    if root is None:
        from gtacli.sample.tree import build_sample_tree

        root = build_sample_tree(Path(tmp.name) / "data", size="tiny", seed=0)
    total_steps = 2 * (args.steps + 1)
    recipe = apply_cli_overrides(
        get_recipe("gta-spin-ft"),
        {"eval_each_epoch": "false"},
        batch_size=args.batch_size,
        workers=args.workers,
        num_data=args.batch_size * total_steps,
        epochs=1,
    )
    opts = TrainOptions(
        command="finetune", recipe=recipe, data_root=Path(root), work_dir=Path(tmp.name) / "run",
        device=args.device, seed=0, handle_signals=False,
    )  # fmt: skip
    trainer = Trainer(opts).setup()
    device = trainer.device
    set_train_mode(trainer.model, recipe.optim)
    trainer.sampler.set_epoch(0)
    fixed = trainer.step.to_device(next(iter(trainer.loader)))
    img_nhwc = fixed["img"]  # channels-last, as the loader builds it
    img_nchw = img_nhwc.contiguous()
    assert img_nhwc.is_contiguous(memory_format=torch.channels_last) and img_nchw.is_contiguous()

    # the reference: the same weights in the default (NCHW) layout, its own Adams
    reference = copy.deepcopy(trainer.model).to(memory_format=torch.contiguous_format)
    assert reference.backbone.conv1.weight.is_contiguous()
    ref_optimizers = build_optimizers(reference, recipe.optim)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def network_step(model, optimizers, img) -> float:
        sync()
        t0 = time.perf_counter()
        out = model(img)
        # a scalar touching every output, so backward covers the whole network
        loss = (
            out["pred_pose"].square().mean()
            + out["pred_shape"].square().mean()
            + out["pred_cam"].square().mean()
        )
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        sync()
        return time.perf_counter() - t0

    # the full step, as the training loop runs it (data wait + transfer + step)
    trainer.sampler.set_epoch(1)
    iterator = iter(trainer.loader)
    data_wait = []

    def full_step(step: int) -> float:
        sync()
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        trainer.step(trainer.step.to_device(batch), step)
        sync()
        data_wait.append(t1 - t0)
        return time.perf_counter() - t0

    modes = {
        "reference": lambda i: network_step(reference, ref_optimizers, img_nchw),
        "ours": lambda i: network_step(trainer.model, trainer.optimizers, img_nhwc),
        "full_step": full_step,
    }
    times = {name: [] for name in modes}
    for fn in modes.values():  # warm-up
        fn(0)
    data_wait.clear()
    for i in range(args.steps):  # alternate so every mode sees the same machine load
        for name, fn in modes.items():
            times[name].append(fn(i + 1))
    median = {name: statistics.median(t) for name, t in times.items()}
    rate = {name: args.batch_size / s for name, s in median.items()}
    result = {
        "benchmark": "train_step",
        "command": "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:]),
        "goal": "full_step/ours >= 0.85",
        "samples_per_s": {k: round(v, 3) for k, v in rate.items()},
        "ours_over_reference": round(rate["ours"] / rate["reference"], 4),
        "full_step_over_ours": round(rate["full_step"] / rate["ours"], 4),
        "full_step_over_reference": round(rate["full_step"] / rate["reference"], 4),
        "step_s_median": {k: round(v, 4) for k, v in median.items()},
        "step_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "data_wait_s_median": round(statistics.median(data_wait), 4),
        "layouts": {
            "reference": "NCHW float32",
            "ours": "channels-last float32",
            "full_step": "channels-last float32",
        },
        "batch_size": args.batch_size,
        "workers": args.workers,
        "steps_measured": args.steps,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recipe": dataclasses.asdict(recipe.optim)
        | {"channels_last": recipe.channels_last, "amp": recipe.amp},
        "data": "synthetic sample tree" if args.data_root is None else str(args.data_root),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    trainer.close()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, result)
    print(json.dumps({k: result[k] for k in ("command", "samples_per_s", "ours_over_reference",
                                             "full_step_over_ours", "full_step_over_reference", "device",
                                             "torch_threads", "load_average_1m")}, indent=2))  # fmt: skip
    tmp.cleanup()


if __name__ == "__main__":
    main()
