"""Classification trainer: schedule, augmentation, EMA, configuration checks, real CIFAR-10 runs and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_noisydarts.checkpoint import load_model, read_checkpoint
from nni_noisydarts.cli import main
from nni_noisydarts.darts.genotype import format_genotype
from nni_noisydarts.darts.zoo import get_genotype
from nni_noisydarts.profiling import count_parameters
from nni_noisydarts.training import TrainConfig, evaluate, get_preset, run_training
from nni_noisydarts.training.augment import Cutout, cifar_transforms
from nni_noisydarts.training.datasets import build_datasets, build_loaders
from nni_noisydarts.training.ema import ModelEma
from nni_noisydarts.training.models import build_network, load_genotype_argument
from nni_noisydarts.training.schedule import learning_rate_at

# A DARTS run small enough for a few seconds per epoch on two CPU cores.
TINY_DARTS = dict(width=4, cells=3, subset=160, test_subset=100, batch_size=32, lr=0.05, cutout_length=0,
                  drop_path_prob=0.0, eval_interval=0)


def test_schedule_warmup_then_cosine():
    lrs = [learning_rate_at(step, 100, 0.1, 0.001, warmup_steps=10) for step in range(100)]

    assert lrs[0] == pytest.approx(0.01)
    assert lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.001 + 0.5 * 0.099 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert learning_rate_at(100, 100, 0.1, 0.001, warmup_steps=10) == pytest.approx(0.001)


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    cutout = Cutout(16)
    for _ in range(20):
        out = cutout(torch.ones(3, 32, 32))
        zero_rows = (out[0] == 0).any(dim=1).nonzero().flatten()
        zero_cols = (out[0] == 0).any(dim=0).nonzero().flatten()

        assert 8 <= len(zero_rows) <= 16
        assert 8 <= len(zero_cols) <= 16
        assert int((out[0] == 0).sum()) == len(zero_rows) * len(zero_cols)
        assert torch.equal(out[0] == 0, out[2] == 0)


def test_cifar_transform_upsamples_after_cutout():
    from PIL import Image

    image = Image.new("RGB", (32, 32), color=(128, 64, 32))
    transform = cifar_transforms(train=True, cutout_length=16, autoaugment=True, resolution=96)

    assert transform(image).shape == (3, 96, 96)
    assert [type(step).__name__ for step in transform.transforms][-2:] == ["Cutout", "Resize"]


def test_ema_follows_weights():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEma(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)

    # Update n caps the decay at (1 + n) / (10 + n): 2/11, then 3/12.
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.25 * (1 - 2 / 11) + 0.75)
    assert not ema.module.weight.requires_grad


@pytest.mark.parametrize("overrides, name", [
    ({"epochs": -1}, "epochs"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": float("nan")}, "lr"),
    ({"drop_path_prob": 1.0}, "drop_path_prob"),
    ({"warmup_epochs": 600}, "warmup_epochs"),
    ({"width": 7}, "width"),
    ({"subset": 0}, "subset"),
])
def test_config_rejects_invalid_values(overrides, name):
    config = get_preset("darts-paper", **overrides)

    with pytest.raises(ValueError, match=f"invalid {name}="):
        config.validate()


def test_config_needs_one_architecture():
    with pytest.raises(ValueError, match="exactly one architecture"):
        TrainConfig().validate()
    with pytest.raises(ValueError, match="exactly one architecture"):
        TrainConfig(genotype="darts-v2", model="darts-v2-cifar").validate()


def test_presets_match_recipes():
    paper = get_preset("darts-paper")
    transfer = get_preset("noisydarts-a-t")
    imagenet = get_preset("imagenet-paper")

    assert (paper.epochs, paper.batch_size, paper.lr, paper.weight_decay) == (600, 96, 0.025, 3e-4)
    assert (paper.grad_clip, paper.aux_weight, paper.drop_path_prob, paper.cutout_length) == (5.0, 0.4, 0.2, 16)
    assert (paper.width, paper.cells) == (36, 20)
    assert (transfer.epochs, transfer.batch_size, transfer.lr, transfer.weight_decay) == (200, 256, 0.05, 0.0)
    assert (transfer.dropout, transfer.drop_connect_rate, transfer.autoaugment) == (0.1, 0.1, True)
    assert (imagenet.label_smoothing, imagenet.dropout, imagenet.drop_connect_rate) == (0.1, 0.2, 0.2)
    assert imagenet.ema_decay > 0
    assert imagenet.warmup_epochs > 0
    for name in ("darts-paper", "darts-quick", "imagenet-paper", "imagenet-quick", "noisydarts-a-t"):
        get_preset(name).validate()


def test_preset_architecture_override():
    config = get_preset("noisydarts-a-t", genotype="darts-v2")

    assert (config.genotype, config.model) == ("darts-v2", None)
    with pytest.raises(ValueError, match="unknown preset 'fast'; known presets: darts-paper"):
        get_preset("fast")
    with pytest.raises(ValueError, match="unknown training settings \\['epoch'\\]"):
        get_preset("darts-paper", epoch=3)


def test_build_network_options():
    darts = build_network(get_preset("darts-quick"), num_classes=10)
    mobile = build_network(get_preset("imagenet-quick", dropout=0.1), num_classes=10)

    assert darts.auxiliary_head is not None
    assert darts.arch_spec["kwargs"]["width"] == 8
    assert mobile.arch_spec["kwargs"] == {"num_classes": 10, "width_mult": 0.35, "dropout": 0.1,
                                          "drop_connect_rate": 0.2}
    with pytest.raises(ValueError, match="drop_connect_rate=0.1 has no effect on a DARTS network"):
        build_network(get_preset("darts-quick", drop_connect_rate=0.1), num_classes=10)
    with pytest.raises(ValueError, match="does not take width=8"):
        build_network(get_preset("darts-quick", model="noisydarts-a-imagenet"), num_classes=10)


def test_genotype_argument_forms(tmp_path: Path):
    text = format_genotype(get_genotype("noisydarts-b"))
    text_file = tmp_path / "genotype.txt"
    text_file.write_text(text + "\n")

    assert load_genotype_argument("noisydarts-b") == get_genotype("noisydarts-b")
    assert load_genotype_argument(text) == get_genotype("noisydarts-b")
    assert load_genotype_argument(str(text_file)) == get_genotype("noisydarts-b")
    with pytest.raises(FileNotFoundError, match="genotype file"):
        load_genotype_argument(str(tmp_path / "missing.json"))


def test_training_lowers_loss_and_resumes(cifar_root: Path, tmp_path: Path):
    config = get_preset("darts-quick", data_root=str(cifar_root), epochs=3, **TINY_DARTS)
    results = run_training(config, tmp_path)

    losses = [record["train_loss"] for record in results["history"]]
    assert losses[-1] < losses[0]
    assert results["epochs"] == 3
    assert results["train_images"] == 160
    assert results["test_images"] == 100
    assert 0.0 <= results["test_accuracy"] <= 1.0
    for name in ("config.json", "last.pt", "model.pt", "results.json"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "results.json").read_text())["test_accuracy"] == results["test_accuracy"]

    # The final checkpoint rebuilds the network by itself and reproduces the reported accuracy.
    model = load_model(tmp_path / "model.pt")
    assert count_parameters(model, exclude=["auxiliary_head"]) == results["parameters"]
    _, test_set, _ = build_datasets(config)
    _, test_loader = build_loaders(config, test_set, test_set, pin_memory=False)
    assert evaluate(model, test_loader, torch.device("cpu"))["test_accuracy"] == results["test_accuracy"]

    # Resuming with one more epoch continues after epoch 3 and keeps the history.
    longer = get_preset("darts-quick", data_root=str(cifar_root), epochs=4, **TINY_DARTS)
    resumed = run_training(longer, tmp_path, resume="auto")
    assert [record["epoch"] for record in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"][:3] == results["history"]
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["epoch"] == 4


def test_training_refuses_existing_results(cifar_root: Path, tmp_path: Path):
    (tmp_path / "results.json").write_text('{"test_accuracy": 0.97}')
    config = get_preset("darts-quick", data_root=str(cifar_root), epochs=1, **TINY_DARTS)

    with pytest.raises(ValueError, match="already contains results.json .* --overwrite"):
        run_training(config, tmp_path)
    assert (tmp_path / "results.json").read_text() == '{"test_accuracy": 0.97}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_resume_rejects_other_architecture(cifar_root: Path, tmp_path: Path):
    first = get_preset("darts-quick", data_root=str(cifar_root), epochs=1, **TINY_DARTS)
    run_training(first, tmp_path)
    other = get_preset("darts-quick", data_root=str(cifar_root), epochs=2, genotype="darts-v2", **TINY_DARTS)

    with pytest.raises(ValueError, match="contains architecture .*but the model is"):
        run_training(other, tmp_path, resume="auto")


def test_imagenet_style_run_with_ema(cifar_root: Path, tmp_path: Path):
    """MobileNetV2 options on upsampled CIFAR-10: AutoAugment, dropout, drop-connect, smoothing, warm-up, EMA."""
    config = get_preset("imagenet-quick", dataset="cifar10", data_root=str(cifar_root), resolution=48,
                        autoaugment=True, dropout=0.1, drop_connect_rate=0.1, ema_decay=0.9, epochs=2,
                        warmup_epochs=1, subset=32, test_subset=20, batch_size=16)
    results = run_training(config, tmp_path)

    assert results["evaluated_weights"] == "ema"
    assert results["arch"]["model"] == "noisydarts-a-imagenet"
    assert read_checkpoint(tmp_path / "last.pt")["extra"]["ema"]["updates"] == 4
    model = load_model(tmp_path / "model.pt")
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 10)


# --- command line ------------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, message", [
    (["--genotype", "noisydarts-z"], "unknown genotype name 'noisydarts-z'; known names: darts-v2"),
    (["--genotype", "missing/genotype.txt"], "genotype file 'missing/genotype.txt' not found"),
    (["--genotype", "Genotype(normal=[('sep_conv_9x9', 0)"], "malformed genotype"),
    (["--genotype", "darts-v2", "--epochs", "-3"], "invalid epochs=-3"),
    (["--model", "resnet-9000"], "unknown model name 'resnet-9000'"),
    (["--genotype", "darts-v2", "--data-root", "/nonexistent/cifar"], "--data-root '/nonexistent/cifar' not found"),
    (["--preset", "imagenet-paper", "--drop-connect", "0.5", "--genotype", "darts-v2"], "drop_connect_rate=0.5"),
])
def test_cli_train_bad_input(capsys, tmp_path: Path, monkeypatch, argv, message):
    monkeypatch.setenv("NOISYDARTS_DATA", str(tmp_path / "no-data"))
    output = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--output", str(output), "--preset", "darts-quick", *argv)

    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_cli_train_missing_default_data(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NOISYDARTS_DATA", raising=False)
    code, _, err = run_cli(capsys, "train", "--output", str(tmp_path / "run"), "--preset", "darts-quick")

    assert code == 2
    assert "no data folder given: pass --data-root" in err
    assert not (tmp_path / "run").exists()


def test_cli_train_keeps_existing_results(capsys, cifar_root: Path, tmp_path: Path):
    (tmp_path / "results.json").write_text("{}")
    code, _, err = run_cli(capsys, "train", "--output", str(tmp_path), "--preset", "darts-quick",
                           "--data-root", str(cifar_root), "--genotype", "darts-v2")

    assert code == 2
    assert "already contains results.json" in err
    assert (tmp_path / "results.json").read_text() == "{}"


def test_cli_train_quick_run(capsys, cifar_root: Path, tmp_path: Path):
    genotype_file = tmp_path / "genotype.json"
    genotype_file.write_text(json.dumps({
        "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]] * 4, "normal_concat": [2, 3, 4, 5],
        "reduce": [["max_pool_3x3", 0], ["dil_conv_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5],
    }))
    output = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--genotype", str(genotype_file), "--preset", "darts-quick",
                           "--data-root", str(cifar_root), "--output", str(output), "--epochs", "1",
                           "--width", "4", "--cells", "3", "--subset", "64", "--test-subset", "40")

    assert code == 0
    assert "test accuracy" in out
    assert "on 40 images" in out
    results = json.loads((output / "results.json").read_text())
    assert results["arch"]["genotype"].startswith("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)")
    assert json.loads((output / "config.json").read_text())["genotype"] == results["arch"]["genotype"]


def test_cli_profile_darts_v2(capsys):
    code, out, _ = run_cli(capsys, "profile", "--genotype", "darts-v2")

    assert code == 0
    assert "3,349,342 (3,825,768 with the auxiliary head)" in out
    assert "conv + linear:            528.4M" in out
    assert "+ 2 per BN output:        539.1M" in out


def test_cli_profile_json_resolution(capsys):
    code, out, _ = run_cli(capsys, "profile", "--model", "noisydarts-a-cifar", "--width", "4", "--cells", "3",
                           "--resolution", "64", "--json")
    report = json.loads(out)

    assert code == 0
    assert report["resolution"] == 64
    assert report["madds_conv_linear"] < report["madds_with_bn"]
    assert report["parameters"] < report["parameters_with_training_heads"]


@pytest.mark.parametrize("argv, message", [
    (["--genotype", "Genotype(normal=[])"], "genotype fields must be exactly"),
    (["--model", "nope"], "unknown model name 'nope'"),
    ([], "give --genotype NAME|FILE|STRING or --model NAME"),
    (["--genotype", "darts-v2", "--resolution", "4"], "--resolution 4 is too small"),
])
def test_cli_profile_bad_input(capsys, argv, message):
    code, _, err = run_cli(capsys, "profile", *argv)

    assert code == 2
    assert message in err


def test_console_script_exit_code(tmp_path: Path):
    script = Path(sys.executable).with_name("noisydarts")
    if not script.exists():
        pytest.skip(f"console script {script} is not installed; run 'pip install -e .'")
    completed = subprocess.run([str(script), "train", "--genotype", "nope", "--output", str(tmp_path / "run")],
                               capture_output=True, text=True, timeout=120)

    assert completed.returncode == 2
    assert "unknown genotype name 'nope'" in completed.stderr
    assert not (tmp_path / "run").exists()
