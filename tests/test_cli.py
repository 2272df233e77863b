"""The command line: `python -m gradcam_utils` and the `gradcam-utils` script."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLES
from PIL import Image

from gradcam_utils import cli


def pngs(folder):
    return sorted(p.name for p in Path(folder).glob("*.png"))


def assert_real_picture(path):
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 100 and pixels.std() > 5, f"{path} looks blank"


def test_the_seed_job_writes_one_png_per_class_and_method_plus_a_summary(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam_utils",
            "--image-path",
            str(SAMPLES / "cat_dog.png"),
            "--topk",
            "2",
            "--output-dir",
            str(tmp_path),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "#1  0.717  bull mastiff (243)" in result.stdout and "#2  0.069  boxer (242)" in result.stdout
    written = pngs(tmp_path)
    assert len(written) == 2 * 5 + 1
    assert "cat_dog-efficientnet_lite0-gradcam-bn2-bull_mastiff.png" in written
    assert "cat_dog-efficientnet_lite0-vanilla_backprop-boxer.png" in written
    assert "cat_dog-efficientnet_lite0-summary.png" in written
    for name in written:
        assert_real_picture(tmp_path / name)


def test_several_images_layer_sweep_and_arch_comparison(tmp_path, capsys):
    images = ["-i", str(SAMPLES / "cat_dog.png"), "-i", str(SAMPLES / "vegetables.jpg")]
    assert cli.main(images + ["-k", "1", "--methods", "gradcam", "-o", str(tmp_path / "two"), "--no-cuda"]) == 0
    assert len(pngs(tmp_path / "two")) == 2 * (1 + 1)

    layers = ["conv_stem", "blocks.3", "bn2"]
    assert (
        cli.main(
            images[:2]
            + [
                "--layer-sweep",
                *layers,
                "--target-class",
                "tiger cat",
                "-o",
                str(tmp_path / "sweep"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert pngs(tmp_path / "sweep") == sorted(
        [f"cat_dog-efficientnet_lite0-gradcam-{layer.replace('.', '_')}-tiger_cat.png" for layer in layers]
        + ["cat_dog-efficientnet_lite0-layers-tiger_cat.png"]
    )

    archs = ["efficientnet_lite0", "efficientnet_lite1", "resnet152"]
    assert cli.main(images[:2] + ["--compare-archs", *archs, "-o", str(tmp_path / "archs"), "--device", "cpu"]) == 0
    written = pngs(tmp_path / "archs")
    assert "cat_dog-archs-bull_mastiff.png" in written
    assert "cat_dog-efficientnet_lite1-gradcam-bn2-bull_mastiff.png" in written
    for name in written:
        assert_real_picture(tmp_path / "archs" / name)
    if not any("resnet152" in name for name in written):  # no network and not cached: skipped with a line
        assert "skipping resnet152: could not get pretrained weights" in capsys.readouterr().err


def bad_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    return str(path)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (lambda t: ["-i", str(t / "missing.png")], "image not found"),
        (lambda t: ["-i", bad_text_file(t)], "is not an image file"),
        (
            lambda t: ["-i", str(SAMPLES / "cat_dog.png"), "--arch", "resnet5"],
            "unknown arch 'resnet5'; close matches: .*resnet50",
        ),
        (
            lambda t: ["-i", str(SAMPLES / "cat_dog.png"), "--target-layer", "block.6"],
            "no layer named 'block.6'.*blocks.6",
        ),
        (lambda t: ["-i", str(SAMPLES / "cat_dog.png"), "--topk", "0"], "topk must be an integer from 1 to 1000"),
        (lambda t: ["-i", str(SAMPLES / "cat_dog.png"), "--topk", "1001"], "topk must be an integer from 1 to 1000"),
        (lambda t: ["-i", str(SAMPLES / "cat_dog.png"), "--topk", "three"], "invalid int value"),
    ],
)
def test_each_error_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "results"
    try:
        status = cli.main(arguments(tmp_path) + ["-o", str(out), "--device", "cpu"])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not out.exists() or not any(out.iterdir())


def test_an_unusable_output_directory_is_a_one_line_error_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    for out, message in (
        (a_file, "the output directory .*notes.txt is a file"),
        (a_file / "sub", "cannot create the output directory .*: Not a directory"),
    ):
        assert (
            cli.main(["-i", str(SAMPLES / "cat_dog.png"), "-o", str(out), "--device", "cpu", "--methods", "gradcam"])
            == 2
        )
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and __import__("re").search(message, err), err
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so --cuda is not an error here")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    assert cli.main(["-i", str(SAMPLES / "cat_dog.png"), "--cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("gradcam-utils")
    result = subprocess.run([str(script), "-i", "missing.png"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == "gradcam-utils: error: image not found: missing.png"


def test_the_noise_and_path_methods_from_the_command_line_and_the_explorer(tmp_path, capsys):
    methods = ["input_x_gradient", "smoothgrad", "integrated_gradients"]
    assert cli.main(
        [
            "-i",
            str(SAMPLES / "cat_dog.png"),
            "--topk",
            "1",
            "--methods",
            *methods,
            "-o",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    ) in (0, None)
    written = pngs(tmp_path)
    assert sorted(f"cat_dog-efficientnet_lite0-{m}-bull_mastiff.png" for m in methods) == sorted(
        n for n in written if "summary" not in n
    )
    for name in written:
        assert_real_picture(tmp_path / name)
    import gradcam_utils as gu

    explorer = gu.explore("smoothgrad", gu.load_model(device="cpu"), SAMPLES / "cat_dog.png")
    before = explorer.picture_widget.value
    explorer.samples.value = 3
    assert explorer.picture_widget.value != before
    assert (
        explorer.options["smoothgrad"].layout.display is None
        and explorer.options["integrated_gradients"].layout.display == "none"
    )
    before = explorer.picture_widget.value
    explorer.method.value = "integrated_gradients"
    assert explorer.picture_widget.value != before and explorer.layer.disabled
    assert (
        explorer.options["smoothgrad"].layout.display == "none"
        and explorer.options["integrated_gradients"].layout.display is None
    )
    before = explorer.picture_widget.value
    explorer.baseline.value = "blur"
    assert explorer.picture_widget.value != before
    explorer.method.value = "gradcam"
    assert all(box.layout.display == "none" for box in explorer.options.values())


def test_the_grad_cam_family_from_the_command_line_and_the_explorer(tmp_path, capsys):
    methods = ["gradcam_pp", "layercam", "eigencam"]
    assert cli.main(
        [
            "-i",
            str(SAMPLES / "cat_dog.png"),
            "--topk",
            "1",
            "--methods",
            *methods,
            "-o",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    ) in (0, None)
    assert sorted(f"cat_dog-efficientnet_lite0-{m}-bn2-bull_mastiff.png" for m in methods) == sorted(
        n for n in pngs(tmp_path) if "summary" not in n
    )
    assert (
        cli.main(
            [
                "-i",
                str(SAMPLES / "cat_dog.png"),
                "--methods",
                "cam",
                "-t",
                "blocks.5",
                "-o",
                str(tmp_path / "no"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith("gradcam-utils: error: cam needs logits = a linear layer") and "\n" not in error
    import gradcam_utils as gu

    explorer = gu.explore("layercam", gu.load_model(device="cpu"), SAMPLES / "cat_dog.png")
    assert not explorer.layer.disabled
    before = explorer.picture_widget.value
    explorer.layer.value = "blocks.3"
    assert explorer.picture_widget.value != before
