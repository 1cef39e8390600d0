"""PyTorch peer of bench/gpu_resnet.ts: ResNet-101 training steps on CIFAR-10-shaped synthetic
batches on one GPU, the same model (torchvision resnet101, 10 classes), batch, optimizer (SGD,
momentum 0.9, weight decay 5e-4) and precision as meshtrain's step: with --dtype bf16 the weights
and activations are bf16 (as meshtrain's bf16 model), not autocast; channels-last memory format.
Times each step with CUDA events; prints one JSON line last: {"images_per_s": ..., ...}.

    python3 bench/gpu_torch_resnet.py --batch 128 --steps 10 --dtype bf16
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
import torchvision


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to PyTorch")
    dev = torch.device("cuda:0")
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = False  # meshtrain's f32 is plain f32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = torchvision.models.resnet101(num_classes=10).to(dev, dtype=dtype, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, 32, 32, device=dev).to(dtype=dtype, memory_format=torch.channels_last)
    y = torch.arange(a.batch, device=dev) % 10

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up: cuDNN's algorithm search, allocator growth
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        step()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 1000)
    s = statistics.median(times)
    loss = F.cross_entropy(model(x), y).item()
    print(json.dumps({
        "images_per_s": a.batch / s, "step_s": s, "batch": a.batch, "dtype": a.dtype, "loss": loss,
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
