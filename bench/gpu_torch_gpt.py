"""PyTorch peer of bench/gpu_gpt.ts (bench/gpu.ts part (b)) and of bench/gpu_attention.ts.

GPT mode (default): GPT-2 124M training steps doing the same work as gptBenchStep: 12 layers,
12 heads, hidden 768, context 1024, vocabulary 50257 (--vocab 50304 for the padded row; several
comma-separated values run one after another in this process), biases, pre-LN, GELU's tanh form
(our c_fc's activation), an output head tied to the token embedding, dropout 0, GPT-2's init. The
weights and activations are bf16 (model.to(bfloat16), not autocast, as our bf16 model). AdamW lr
1e-4, weight decay 0.1 on every parameter, betas (0.9, 0.999), eps 1e-8; with --adam master (the
default) it keeps fp32 master weights and fp32 moments, as our AdamW does for bf16 parameters:
each step copies the bf16 gradients into fp32, runs fused AdamW on the masters and rounds them
back into the bf16 weights (two extra passes ours fuses into its one kernel); --adam bf16 is
torch.optim.AdamW on the bf16 weights themselves (bf16 moments, no master). The same synthetic
token batches as ours (two, alternated). Attention: F.scaled_dot_product_attention(is_causal=True)
where it exists (torch >= 2.0), else a plain masked softmax (for checking the plumbing only).
Each step is timed with CUDA events after the warm-up; the median is reported. One JSON line per
vocabulary: {"tokens_per_s", "step_ms", "loss", "torch", "attention", ...}; --compile adds the same
for torch.compile(model) under "compiled" (slow to compile; reported separately).

Attention mode (--attention): SDPA forward and forward+backward (of the output's sum) at
--shape B,H,T,D (default 8,12,1024,64), causal, bf16: median ms as bench/gpu_attention.ts times
ours (groups of calls between two events, after a warm-up); one JSON line.

--smoke: GPT's 'tiny' size (vocabulary 64, context 16, 2 layers, 4 heads, hidden 32) at batch
4 x 16, or attention at [1, 2, 128, 64], one warm-up and one timed step: checks the logic where
there is no GPU (with --device cpu or auto; timings meaningless).

    python3 bench/gpu_torch_gpt.py [--vocab 50257,50304] [--warmup 10] [--steps 10] [--compile]
    python3 bench/gpu_torch_gpt.py --attention [--shape 8,12,1024,64]
    /usr/bin/python3 bench/gpu_torch_gpt.py --smoke --device cpu
"""
import argparse
import inspect
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The sizes of models/gpt.ts's gptConfig ('124M' and the test size 'tiny') and their benchmark batch.
SIZES = {
    "124M": {"vocab": 50257, "ctx": 1024, "layers": 12, "heads": 12, "embd": 768, "batch": 8},
    "tiny": {"vocab": 64, "ctx": 16, "layers": 2, "heads": 4, "embd": 32, "batch": 4},
}
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def causal_attention(q, k, v):
    """[B, H, T, D] -> [B, H, T, D], each position attending to itself and earlier ones."""
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch < 2.0 (Debian's 1.13): materialized scores, for checking the plumbing only.
    t = q.shape[-2]
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v


def sdpa_backend(q, k, v) -> str:
    """Which SDPA kernel PyTorch picks for these inputs (flash, cuDNN, ...): a private query, best effort."""
    if not HAS_SDPA:
        return "masked softmax (no SDPA in torch %s)" % torch.__version__
    try:
        choice = torch._fused_sdp_choice(q, k, v, is_causal=True)
        try:
            from torch.nn.attention import SDPBackend
            return "sdpa:" + SDPBackend(choice).name.lower()
        except Exception:
            return "sdpa:%s" % choice
    except Exception:
        return "sdpa"


class Attention(nn.Module):
    def __init__(self, c, heads, std, proj_std, dev):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(c, 3 * c, device=dev)
        self.c_proj = nn.Linear(c, c, device=dev)
        for lin, s in ((self.c_attn, std), (self.c_proj, proj_std)):
            nn.init.normal_(lin.weight, 0.0, s)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = causal_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then + mlp(ln_2(.)), the MLP's GELU in its tanh form."""

    def __init__(self, c, heads, std, proj_std, dev):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c, eps=1e-5, device=dev)
        self.attn = Attention(c, heads, std, proj_std, dev)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5, device=dev)
        self.c_fc = nn.Linear(c, 4 * c, device=dev)
        self.c_proj = nn.Linear(4 * c, c, device=dev)
        for lin, s in ((self.c_fc, std), (self.c_proj, proj_std)):
            nn.init.normal_(lin.weight, 0.0, s)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, ctx, layers, heads, embd, dev):
        super().__init__()
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * layers)
        self.wte = nn.Embedding(vocab, embd, device=dev)
        self.wpe = nn.Embedding(ctx, embd, device=dev)
        nn.init.normal_(self.wte.weight, 0.0, std)
        nn.init.normal_(self.wpe.weight, 0.0, std)
        self.h = nn.ModuleList(Block(embd, heads, std, proj_std, dev) for _ in range(layers))
        self.ln_f = nn.LayerNorm(embd, eps=1e-5, device=dev)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # the head tied to the token embedding


def adamw(params, dev):
    """torch.optim.AdamW as ours is configured, fused where this torch has it for this device."""
    kw = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}
    sig = inspect.signature(torch.optim.AdamW).parameters
    if dev.type == "cuda" and "fused" in sig:
        try:
            return torch.optim.AdamW(params, fused=True, **kw), "fused"
        except (RuntimeError, ValueError):  # a torch whose fused kernel lacks this dtype or device
            pass
    if "foreach" in sig:
        return torch.optim.AdamW(params, foreach=True, **kw), "foreach"
    return torch.optim.AdamW(params, **kw), "for-loop"


def copy_all(dst, src):
    """dst[i].copy_(src[i]) (converting dtype), in few launches where torch has _foreach_copy_."""
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


class MasterAdamW:
    """fp32 master weights and moments for bf16 weights, as our AdamW: grads in, fused AdamW, round back."""

    def __init__(self, params, dev):
        self.params = list(params)
        self.masters = [p.detach().to(torch.float32, copy=True).requires_grad_(True) for p in self.params]
        for m in self.masters:
            m.grad = torch.zeros_like(m)
        self.opt, self.impl = adamw(self.masters, dev)

    def step(self):
        copy_all([m.grad for m in self.masters], [p.grad for p in self.params])
        self.opt.step()
        with torch.no_grad():
            copy_all([p.data for p in self.params], self.masters)


def token_batches(vocab, batch, seq, dev):
    """bench/gpu_gpt.ts's two fixed batches: ids (i*7919 + b*31337) % V, targets (i*104729 + b*7) % V."""
    i = torch.arange(batch * seq, dtype=torch.int64)
    return [
        (((i * 7919 + b * 31337) % vocab).view(batch, seq).to(dev), ((i * 104729 + b * 7) % vocab).to(dev))
        for b in (0, 1)
    ]


class Timer:
    """Seconds of the device's work between start() and stop(): CUDA events, or a wall clock on the CPU."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def start(self):
        if self.cuda:
            self.e0 = torch.cuda.Event(enable_timing=True)
            self.e1 = torch.cuda.Event(enable_timing=True)
            self.e0.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.e1.record()
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1) / 1000
        return time.perf_counter() - self.t0


def time_steps(step, warmup, steps, timer):
    for k in range(warmup):
        step(k)
    times = []
    for k in range(warmup, warmup + steps):
        timer.start()
        step(k)
        times.append(timer.stop())
    return statistics.median(times)


def bench_gpt(a, dev, vocab):
    size = SIZES[a.size]
    batch, seq = size["batch"], size["ctx"]
    torch.manual_seed(0)
    model = GPT(vocab, size["ctx"], size["layers"], size["heads"], size["embd"], dev).to(torch.bfloat16)
    if a.adam == "master":
        opt = MasterAdamW(model.parameters(), dev)
        impl = "fp32 master weights and moments, %s AdamW" % opt.impl
    else:
        opt, kind = adamw(model.parameters(), dev)
        impl = "bf16 weights and moments, %s AdamW" % kind
    # Tokens and targets of the real vocabulary: a padded vocabulary's extra rows are never a target.
    batches = token_batches(size["vocab"], batch, seq, dev)
    timer = Timer(dev)

    def runner(m):
        def step(k):
            ids, targets = batches[k % 2]
            loss = F.cross_entropy(m(ids).reshape(-1, vocab), targets)
            loss.backward()
            opt.step()
            model.zero_grad(set_to_none=True)
        return step

    probe = torch.zeros(batch, size["heads"], seq, size["embd"] // size["heads"], device=dev, dtype=torch.bfloat16, requires_grad=True)
    s = time_steps(runner(model), a.warmup, a.steps, timer)
    with torch.no_grad():
        loss = F.cross_entropy(model(batches[0][0]).reshape(-1, vocab), batches[0][1]).item()
    out = {
        "tokens_per_s": batch * seq / s, "step_ms": s * 1e3, "loss": loss, "torch": torch.__version__,
        "attention": sdpa_backend(probe, probe, probe), "vocab": vocab, "batch": batch, "seq": seq,
        "params": sum(p.numel() for p in model.parameters()),
        "optimizer": impl, "steps_trained": a.warmup + a.steps, "device": device_name(dev),
    }
    if a.compile and not hasattr(torch, "compile"):
        out["compiled"] = None  # torch < 2.0
    elif a.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        s = time_steps(runner(compiled), a.warmup, a.steps, timer)  # its warm-up includes compiling
        out["compiled"] = {"tokens_per_s": batch * seq / s, "step_ms": s * 1e3, "total_s": time.perf_counter() - t0}
    return out


def bench_attention(a, dev):
    shape = [1, 2, 128, 64] if a.smoke else [int(x) for x in a.shape.split(",")]
    if len(shape) != 4:
        raise SystemExit("--shape must be B,H,T,D, got %r" % a.shape)
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, device=dev).to(torch.bfloat16).requires_grad_(True) for _ in range(3))
    timer = Timer(dev)

    def forward(_):
        causal_attention(q, k, v)  # with autograd on, as ours is timed: the training forward

    def forward_backward(_):
        causal_attention(q, k, v).sum().backward()
        for t in (q, k, v):
            t.grad = None

    def per_call(fn, iters, rounds, warmup=3):
        # As bench/gpu_timing.ts's timeDevice: the median over rounds of one group of back-to-back calls.
        for w in range(warmup):
            fn(w)
        return time_steps(lambda i: [fn(i) for _ in range(iters)], 0, rounds, timer) / iters

    fwd = per_call(forward, 1 if a.smoke else 5, 1 if a.smoke else 5)
    both = per_call(forward_backward, 1 if a.smoke else 3, 1 if a.smoke else 5)
    return {
        "forward_ms": fwd * 1e3, "forward_backward_ms": both * 1e3, "shape": shape, "causal": True, "dtype": "bf16",
        "torch": torch.__version__, "attention": sdpa_backend(q, k, v), "device": device_name(dev),
    }


def device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default=None, help="vocabulary size(s), comma-separated (default: the size's, 50257)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--adam", choices=["master", "bf16"], default="master")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model) (slow to compile)")
    ap.add_argument("--attention", action="store_true", help="time SDPA forward and forward+backward instead")
    ap.add_argument("--shape", default="8,12,1024,64", help="attention's B,H,T,D")
    ap.add_argument("--device", choices=["cuda", "cpu", "auto"], default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one step: the logic without a GPU")
    a = ap.parse_args()
    a.size = "tiny" if a.smoke else "124M"
    if a.smoke:
        a.warmup, a.steps = 1, 1
    if a.warmup < 0 or a.steps < 1:
        raise SystemExit("--warmup must be >= 0 and --steps >= 1, got %d and %d" % (a.warmup, a.steps))
    want = a.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise SystemExit("skipped: no CUDA device visible to PyTorch %s" % torch.__version__)
    if want == "cpu" and not a.smoke:
        raise SystemExit("--device cpu is for --smoke only (GPT-2 124M on the CPU would take minutes a step)")
    dev = torch.device("cuda:0" if want == "cuda" else "cpu")
    if a.attention:
        print(json.dumps(bench_attention(a, dev)), flush=True)
        return
    vocabs = [int(x) for x in a.vocab.split(",")] if a.vocab else [SIZES[a.size]["vocab"]]
    for vocab in vocabs:
        if vocab < SIZES[a.size]["vocab"]:
            raise SystemExit("--vocab %d is below the %s vocabulary %d" % (vocab, a.size, SIZES[a.size]["vocab"]))
        print(json.dumps(bench_gpt(a, dev, vocab)), flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
