"""Speed and memory of gradcam_utils next to pytorch-grad-cam, captum and torchcam: `make bench`.

Every time is a median, reported as a ratio to one plain forward pass (no gradients) of the
same model on the same machine, the two timed alternately in the same run. Exits 1 when a target is missed.
Peers: `pip install -e '.[bench]'`.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytorch_grad_cam as pgc
import quantus
import torch
import torchcam.methods as tcm
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import gradcam_utils as gu

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "cat_dog.png"
MODELS = {"resnet50": ("resnet50", None, "layer4"), "lite0": ("efficientnet_lite0", "DEFAULT", "bn2")}
# Score-CAM runs one forward pass per channel: timed at a layer of 80 channels (resnet50's fewest are 256: minutes per
# job on a CPU).
SCORE_LAYERS = {"lite0": "blocks.3"}
# The gradient variants: (our name, pytorch-grad-cam's class, torchcam's class or None)
VARIANTS = {
    "Grad-CAM++": ("gradcam_pp", "GradCAMPlusPlus", "GradCAMpp"),
    "XGrad-CAM": ("xgradcam", "XGradCAM", "XGradCAM"),
    "HiResCAM": ("hirescam", "HiResCAM", None),
    "Layer-CAM": ("layercam", "LayerCAM", "LayerCAM"),
}
SAMPLES, STEPS = 25, 32  # SmoothGrad's noisy copies, Integrated Gradients' path points
MANY_POINTS = ("SmoothGrad", "Integrated Gradients", "Score-CAM")  # each job a few seconds on a CPU: timed fewer times


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(job, device):
    sync(device)
    start = time.perf_counter()
    job()
    sync(device)
    return time.perf_counter() - start


def ratio_of(job, baseline, device, repeat):
    """median time of job / median time of baseline, the two run alternately, so that a slow
    spell of the machine weighs on both alike."""
    job(), baseline()
    times = [(seconds(job, device), seconds(baseline, device)) for _ in range(repeat)]
    return statistics.median(t for t, _ in times) / statistics.median(b for _, b in times)


def setup(name, device):
    arch, weights, layer = MODELS[name]
    torch.manual_seed(0)
    model = gu.load_model(arch, weights=weights, device=device)
    x = gu.preprocess(SAMPLE, model)
    with torch.no_grad():
        classes = model(x)[0].topk(10).indices.tolist()
    return model, x, layer, classes


def jobs(model, x, layer, classes, score_layer=None):
    """{(job, library): callable}, each computing the same maps."""
    module = gu.get_layer(model, layer)
    captum_cam = LayerGradCam(model, module)

    # Peers that keep hooks on the model are built and released inside their own job,
    # so that no library's hooks run during another library's job.
    def pgc_job(k, method="GradCAM", at=layer):
        def run():
            with getattr(pgc, method)(model, target_layers=[gu.get_layer(model, at)]) as cam:
                cam.batch_size = 32  # Score-CAM's: the same as ours
                for c in classes[:k]:
                    cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])

        return run

    def torchcam_job(k, method="GradCAM", at=layer):
        def run():
            options = {"batch_size": 32} if method == "ScoreCAM" else {}
            extractor = getattr(tcm, method)(model, target_layer=at, input_shape=tuple(x.shape[1:]), **options)
            for c in classes[:k]:
                extractor(c, model(x))
            extractor.remove_hooks()

        return run

    def captum_all(k):
        def run():
            for c in classes[:k]:
                Saliency(model).attribute(x, target=c, abs=False)
                Deconvolution(model).attribute(x, target=c)
                GuidedBackprop(model).attribute(x, target=c)
                LayerAttribution.interpolate(
                    captum_cam.attribute(x, target=c, relu_attributions=True), x.shape[-2:], "bilinear"
                )
                GuidedGradCam(model, module).attribute(x, target=c, interpolate_mode="bilinear")

        return run

    table = {}
    for k in (1, 3, 10):
        table[(f"Grad-CAM top-{k}", "ours")] = lambda k=k: gu.gradcam(model, x, classes[:k], layer=layer)
        table[(f"Grad-CAM top-{k}", "pytorch-grad-cam")] = pgc_job(k)
        table[(f"Grad-CAM top-{k}", "captum")] = lambda k=k: [
            LayerAttribution.interpolate(
                captum_cam.attribute(x, target=c, relu_attributions=True), x.shape[-2:], "bilinear"
            )
            for c in classes[:k]
        ]
        table[(f"Grad-CAM top-{k}", "torchcam")] = torchcam_job(k)
    for title, (ours, theirs, torchcams) in VARIANTS.items():
        table[(f"{title} top-3", "ours")] = lambda ours=ours: getattr(gu, ours)(model, x, classes[:3], layer=layer)
        table[(f"{title} top-3", "pytorch-grad-cam")] = pgc_job(3, theirs)
        if torchcams:
            table[(f"{title} top-3", "torchcam")] = torchcam_job(3, torchcams)
    for k in (1, 3) if score_layer else ():
        table[(f"Score-CAM ({score_layer}) top-{k}", "ours")] = lambda k=k: gu.scorecam(
            model, x, classes[:k], layer=score_layer, progress=False
        )
        table[(f"Score-CAM ({score_layer}) top-{k}", "pytorch-grad-cam")] = pgc_job(k, "ScoreCAM", score_layer)
        table[(f"Score-CAM ({score_layer}) top-{k}", "torchcam")] = torchcam_job(k, "ScoreCAM", score_layer)
    table[("all five, top-3", "ours")] = lambda: gu.explain(model, x, classes[:3], layer=layer)
    table[("all five, top-3", "captum")] = captum_all(3)

    # The same points per forward pass for both: our default batch.
    batch = gu.noise_and_paths.default_batch_size(x.device)
    sigma = 0.15 * (x.max() - x.min()).item()
    for k in (1, 3):
        table[(f"SmoothGrad ({SAMPLES}) top-{k}", "ours")] = lambda k=k: gu.smoothgrad(
            model, x, classes[:k], samples=SAMPLES, seed=0
        )
        table[(f"SmoothGrad ({SAMPLES}) top-{k}", "captum")] = lambda k=k: [
            NoiseTunnel(Saliency(model)).attribute(
                x,
                target=c,
                nt_type="smoothgrad",
                nt_samples=SAMPLES,
                nt_samples_batch_size=batch,
                stdevs=sigma,
                abs=False,
            )
            for c in classes[:k]
        ]
        table[(f"Integrated Gradients ({STEPS}) top-{k}", "ours")] = lambda k=k: gu.integrated_gradients(
            model, x, classes[:k], baseline="zeros", steps=STEPS
        )
        table[(f"Integrated Gradients ({STEPS}) top-{k}", "captum")] = lambda k=k: [
            IntegratedGradients(model).attribute(x, target=c, n_steps=STEPS, internal_batch_size=batch)
            for c in classes[:k]
        ]
    return table


def explorer_change_ratio(model, layer, forward, device, changes):
    """The computation behind one widget change (class, layer or method), drawing excluded, over one forward."""
    explorer = gu.Explorer("gradcam", model, SAMPLE, layer=layer)
    explorer._quiet = True  # change the widgets without drawing
    settings = [(m, rank, name) for m in gu.METHODS for rank in range(5) for name in explorer.layers[-4:]]
    times = []
    for i in range(changes):
        method, rank, name = settings[(i * 7) % len(settings)]  # stride through, so each step changes something
        explorer.method.value, explorer.class_slider.index, explorer.layer.value = method, rank, name
        times.append((seconds(explorer.compute, device), seconds(forward, device)))
    return statistics.median(t for t, _ in times) / statistics.median(f for _, f in times)


def batch_ratio(model, x, layer, device, repeat, size=4):
    """Per-image cost of a batch of `size` over the cost of one image alone, for each method."""
    batch = torch.cat([x, x.flip(-1), x.flip(-2), x * 0.9][:size])
    return {
        method: ratio_of(
            lambda method=method: gu.explain(model, batch, methods=method, layer=layer),
            lambda method=method: gu.explain(model, x, methods=method, layer=layer),
            device,
            repeat,
        )
        / size
        for method in gu.METHODS
    }


def peak_memory(model_name, job, library, device):
    """Peak memory of one job in a fresh process: bytes above the process's level before the job."""
    command = [
        sys.executable,
        __file__,
        "--memory-job",
        json.dumps([model_name, job, library]),
        "--device",
        str(device),
    ]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


def measure_memory_here(model_name, job, library, device):
    model, x, layer, classes = setup(model_name, device)
    run = jobs(model, x, layer, classes)[(job, library)]
    if device.type == "cuda":
        run()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    process = psutil.Process(os.getpid())
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run()
    done.set()
    sampler.join()
    return peak[0] - base


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--write", action="store_true", help="also write the table to docs/benchmark-<device>.md and the README"
    )
    parser.add_argument("--memory-job", help=argparse.SUPPRESS)
    parser.add_argument("--known-answers", action="store_true", help="only the known-answers rows (shapes set)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_job:
        print(measure_memory_here(*json.loads(args.memory_job), device))
        return 0

    if args.known_answers:
        return 0 if all(ok for ok, _ in known_answers(device)) else 1
    if not args.write:
        return report(device, args.repeat)
    output = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, output)):
        code = report(device, args.repeat)
    # The table goes, as printed, to docs/benchmark-<device>.md and between the README's markers.
    (ROOT / "docs" / f"benchmark-{device.type}.md").write_text(output.getvalue())
    readme = (ROOT / "README.md").read_text()
    start, end = f"<!-- benchmark-{device.type} -->\n", f"<!-- /benchmark-{device.type} -->"
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        (ROOT / "README.md").write_text(head + start + output.getvalue() + end + rest.split(end, 1)[1])
    return code


class Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def report(device, repeat):
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device "
        f"{device} ({card})"
    )
    print(
        "Times are medians, as multiples of one plain forward pass (torch.no_grad) of the same model, timed "
        "alternately with each job; batch 1.\n"
    )
    missed = []

    def check(ok, what):
        if not ok:
            missed.append(what)
        return "yes" if ok else "NO"

    for name in MODELS:
        model, x, layer, classes = setup(name, device)

        def forward(model=model, x=x):
            with torch.no_grad():
                model(x)

        table = jobs(model, x, layer, classes, SCORE_LAYERS.get(name))
        times = {
            key: ratio_of(job, forward, device, max(3, repeat // 5) if key[0].startswith(MANY_POINTS) else repeat)
            for key, job in table.items()
        }
        forward_ms = statistics.median(seconds(forward, device) for _ in range(repeat)) * 1000
        print(f"## {name} (layer {layer}, input {tuple(x.shape[-2:])}): one forward = {forward_ms:.1f} ms\n")
        print("| job | ours | pytorch-grad-cam | captum | torchcam | target | met |")
        print("|---|---|---|---|---|---|---|")
        for job in dict.fromkeys(j for j, _ in table):
            row = {library: times.get((job, library)) for library in ("ours", "pytorch-grad-cam", "captum", "torchcam")}
            peers = [t for library, t in row.items() if library != "ours" and t is not None]
            if job.split(" ")[0] == "Grad-CAM":
                k = int(job.split("-")[-1])
                need = {1: None, 3: 2.0, 10: 6.0}[k]
                target = "<= 1.5x" + (f", {need:.0f}x faster than the fastest peer" if need else "")
                ok = row["ours"] <= 1.5 and (need is None or min(peers) / row["ours"] >= need)
            elif job.split(" ")[0] in VARIANTS:
                target, ok = "<= 1.5x", row["ours"] <= 1.5
            elif job.startswith("Score-CAM"):
                need = 2.5 if job.endswith("top-3") else 1.0
                target = f"{need}x as fast as the fastest peer" if need > 1 else "no slower than the fastest peer"
                ok = min(peers) / row["ours"] >= need
            elif job.startswith(MANY_POINTS):
                need = 1.4 if job.endswith("top-3") else 1.0
                target = f"{need}x as fast as captum" if need > 1 else "no slower than captum"
                ok = row["captum"] / row["ours"] >= need
            else:
                target = "<= 12x, 3x faster than captum"
                ok = row["ours"] <= 12 and row["captum"] / row["ours"] >= 3
            cells = " | ".join(f"{t:.2f}x" if t is not None else "n/a" for t in row.values())
            print(f"| {job} | {cells} | {target} | {check(ok, f'{name}: {job}')} |")

        change = explorer_change_ratio(model, layer, forward, device, changes=60)
        print(
            f"| explorer: one widget change | {change:.2f}x | | | | <= 2x | "
            f"{check(change <= 2, f'{name}: explorer change')} |"
        )
        for method, ratio in batch_ratio(model, x, layer, device, max(5, repeat // 3)).items():
            # 10% for timing noise: the target is "no more per image than a loop over single images".
            print(
                f"| batch of 4, per image / one image: {method} | {ratio:.2f} | | | | <= 1 | "
                f"{check(ratio <= 1.1, f'{name}: batch {method}')} |"
            )
        for job in (
            "Grad-CAM top-3",
            "all five, top-3",
            f"SmoothGrad ({SAMPLES}) top-1",
            f"Integrated Gradients ({STEPS}) top-3",
        ):
            ours, captum = (peak_memory(name, job, library, device) for library in ("ours", "captum"))
            ok = ours <= captum * 1.05 + 2**20
            print(
                f"| peak memory, {job} | {ours / 2**20:.1f} MB | | {captum / 2**20:.1f} MB | | <= captum | "
                f"{check(ok, f'{name}: memory {job}')} |"
            )
        print()

    for ok, what in known_answers(device):
        check(ok, what)
    print()
    print("All targets met." if not missed else "Missed: " + "; ".join(missed))
    return 1 if missed else 0


KNOWN = {"gradcam": "Grad-CAM", "vanilla_backprop": "Saliency", "guided_backprop": "GuidedBackprop"}
LOCALISATION = {"pointing": quantus.PointingGame, "relevance_mass": quantus.RelevanceMassAccuracy,
                "relevance_rank": quantus.RelevanceRankAccuracy}  # fmt: skip


def captum_explain(model, inputs, targets, method, **_):
    """Quantus's explain_func: captum's maps of the 1,000 images, reduced as gu.evaluate reduces them (Grad-CAM's
    positive part upsampled; a pixel map's absolute sum over its channels)."""
    x, t = torch.as_tensor(inputs), torch.as_tensor(targets)
    if method == "gradcam":
        cam = LayerGradCam(model, model.features[3]).attribute(x, target=t, relu_attributions=True)
        maps = LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")[:, 0]
    elif method == "vanilla_backprop":
        maps = Saliency(model).attribute(x, target=t, abs=True).sum(1)
    else:
        maps = GuidedBackprop(model).attribute(x, target=t).abs().sum(1)
    return maps[:, None].detach().cpu().numpy()


def timed(job):
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def known_answers(device, images=1000, batch=100):
    """The localisation table of three methods over the shapes set: gu.evaluate against Quantus with captum's maps
    (the same values, at least 5x faster), and gu.evaluate in batches against one image at a time (at least 3x)."""
    model = gu.load_small_model("shapes", device)
    data = gu.shapes_dataset(images, "test", seed=0)
    x, y, s = (torch.stack([torch.as_tensor(data[i][k]) for i in range(images)]) for k in range(3))
    kwargs = {"methods": list(KNOWN), "metrics": list(LOCALISATION), "per_image": True, "progress": False}
    drawn = torch.utils.data.TensorDataset(x, y, s)  # both libraries get the images already drawn
    start = time.perf_counter()
    ours = gu.evaluate(model, drawn, batch_size=batch, **kwargs)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = {
        (method, measure): metric(abs=False, normalise=False, disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, s_batch=s[:, None].numpy(),
            explain_func=captum_explain, explain_func_kwargs={"method": method}, batch_size=batch, device=str(device),
        )
        for method in KNOWN for measure, metric in LOCALISATION.items()
    }  # fmt: skip
    quantus_seconds = time.perf_counter() - start
    equal = all(
        np.allclose(
            ours[(ours.method == method) & (ours.measure == measure)].sort_values("image").value, values, atol=1e-5
        )
        for (method, measure), values in theirs.items()
    )
    batched = min(seconds, timed(lambda: gu.evaluate(model, drawn, batch_size=batch, **kwargs)))
    single = timed(lambda: gu.evaluate(model, drawn, batch_size=1, **kwargs))
    print(f"## Known answers: {images} images of the shapes set, the small 'shapes' model, batches of {batch}\n")
    print("| job | ours | Quantus with captum | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    faster = quantus_seconds / seconds
    met = "yes" if faster >= 5 and equal else "NO"
    jobs = f"pointing game, relevance mass and rank of {', '.join(KNOWN.values())}"
    print(f"| {jobs} | {seconds:.1f} s | {quantus_seconds:.1f} s | {faster:.1f}x | 5x faster, values equal | {met} |")
    cheaper = single / batched
    met = "yes" if cheaper >= 3 else "NO"
    print(f"| the same, ours in batches of {batch} against ours one image at a time | {batched:.1f} s | {single:.1f} s "
          f"(ours, one at a time) | {cheaper:.1f}x | 3x cheaper | {met} |")  # fmt: skip
    return [(faster >= 5 and equal, "known answers: against Quantus"), (cheaper >= 3, "known answers: batches")]


if __name__ == "__main__":
    sys.exit(main())
