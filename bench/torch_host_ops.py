"""PyTorch peer of bench/host_op_cost.ts: microseconds per call of tiny CPU ops on one thread, timed
as the TypeScript side times them: wall time in many short rounds, their lower quartile (another
process's time slice inflates a round, never shrinks it).
Prints one JSON line per op: {"name": ..., "us": ...}.

    python3 bench/torch_host_ops.py [--rounds 41] [--ms 5]
"""
import argparse
import json
import time

import torch


def per_call(fn, ms: float, rounds: int) -> float:
    """Wall microseconds per call: the lower quartile of `rounds` rounds of about `ms` milliseconds."""
    for _ in range(50):  # warm-up
        fn()
    n = 16
    while True:  # calls per round, doubling until a batch is long enough to scale from
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        took = (time.perf_counter_ns() - t0) / 1e6
        if took >= ms:
            n = max(1, round(n * ms / took))
            break
        n *= 2
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        out.append((time.perf_counter_ns() - t0) / 1e3 / n)
    out.sort()
    return out[(len(out) - 1) // 4]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--ms", type=float, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(1), torch.randn(1)
    xg, yg = torch.randn(1, requires_grad=True), torch.randn(1, requires_grad=True)
    m1, m2 = torch.randn(64, 64), torch.randn(64, 64)
    b1, b2 = m1.bfloat16(), m2.bfloat16()

    def grad_step() -> None:
        torch.add(xg, yg).backward()

    sized = {n: (torch.randn(n), torch.randn(n)) for n in (256, 4096, 16384)}
    rows = [
        ("add [1] cpu", lambda: torch.add(x, y)),
        ("add [1] cpu, requiresGrad fwd+bwd", grad_step),
        *((f"add [{n}] cpu", lambda p=p: torch.add(*p)) for n, p in sized.items()),
        ("mm 64^3 f32 cpu", lambda: torch.mm(m1, m2)),
        ("mm 64^3 bf16 cpu", lambda: torch.mm(b1, b2)),
    ]
    for name, fn in rows:
        print(json.dumps({"name": name, "us": per_call(fn, a.ms, a.rounds)}), flush=True)


if __name__ == "__main__":
    main()
