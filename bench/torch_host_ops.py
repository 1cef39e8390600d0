"""PyTorch peer of bench/host_op_cost.ts: main-thread CPU microseconds per call of tiny CPU ops, one
thread, median of rounds (time.thread_time_ns: this thread only, as the TypeScript side reads).
Prints one JSON line per op: {"name": ..., "us": ...}.

    python3 bench/torch_host_ops.py [--rounds 7] [--ms 60]
"""
import argparse
import json
import statistics
import time

import torch


def per_call(fn, ms: float, rounds: int) -> float:
    """Microseconds of thread CPU per call: median of rounds of about `ms` milliseconds each."""
    fn()
    t0 = time.thread_time_ns()
    n = 0
    while time.thread_time_ns() - t0 < 5e6:  # calibrate: calls per 5 ms
        fn()
        n += 1
    calls = max(1, int(n * ms / 5))
    out = []
    for _ in range(rounds):
        t0 = time.thread_time_ns()
        for _ in range(calls):
            fn()
        out.append((time.thread_time_ns() - t0) / 1e3 / calls)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ms", type=float, default=60)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(1), torch.randn(1)
    xg, yg = torch.randn(1, requires_grad=True), torch.randn(1, requires_grad=True)
    m1, m2 = torch.randn(64, 64), torch.randn(64, 64)
    b1, b2 = m1.bfloat16(), m2.bfloat16()

    def grad_step() -> None:
        torch.add(xg, yg).backward()

    rows = [
        ("add [1] cpu", lambda: torch.add(x, y)),
        ("add [1] cpu, requiresGrad fwd+bwd", grad_step),
        ("mm 64^3 f32 cpu", lambda: torch.mm(m1, m2)),
        ("mm 64^3 bf16 cpu", lambda: torch.mm(b1, b2)),
    ]
    for name, fn in rows:
        print(json.dumps({"name": name, "us": per_call(fn, a.ms, a.rounds)}), flush=True)


if __name__ == "__main__":
    main()
