"""Timing fidelity: convbench's protocol against torch.utils.benchmark's blocked_autorange on the same forward,
interleaved in one process, for the model, batch and dtype given. On a GPU at a batch that keeps it busy the
ratio must be 1.00 +- 0.03; at batch 1 the two differ by design when the forward is launch-bound (events around
each call versus blocks of back-to-back calls), and the script says so.

    python benchmarks/fidelity.py --device cuda --model resnet50 --batch-size 256,1 --dtype bf16 --channels-last
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from convbench.run.modes import prepare
from convbench.zoo.registry import create_model
from convbench.selfcheck.battery import fidelity

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", default="1")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.5, help="per round and side")
    parser.add_argument("--input-size", type=int, default=None, help="default: the model's own")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model = create_model(args.model).to(device).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    size = args.input_size or (299 if args.model.startswith("inception_v3") else 224)
    results = []
    for batch in (int(b) for b in args.batch_size.split(",")):
        x = torch.randn(batch, 3, size, size, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        forward = prepare(model, x, "eager", device, DTYPES[args.dtype])
        ratio, ours, theirs = fidelity(forward, device, args.rounds, args.seconds)
        print(f"{args.model} b{batch} {args.dtype}{' channels_last' if args.channels_last else ''} on "
              f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: convbench p50 {ours:.3f} ms, "
              f"blocked_autorange {theirs:.3f} ms, ratio {ratio:.3f}", flush=True)
        results.append({"model": args.model, "batch_size": batch, "input_size": size, "dtype": args.dtype,
                        "channels_last": args.channels_last, "device": args.device, "convbench_p50_ms": ours,
                        "blocked_autorange_ms": theirs, "ratio": ratio})
        if args.out:  # after every batch size: a call cut short keeps what finished
            args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
