"""End-to-end NoisyDARTS search on real CIFAR-10 images: outputs, resume, output-folder guards and the CLI.

The searches are tiny (width 4, 3 cells, 96 images, batch 16, 2 epochs) and share module-scoped
fixtures: one uninterrupted run, and one run interrupted at the start of epoch 1 and then resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import signal
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from interrupt import InterruptAtEpoch, Interrupted
from nni_noisydarts.cli import build_parser, main
from nni_noisydarts.cli.search import config_from_args
from nni_noisydarts.darts.genotype import edge_index, parse_genotype
from nni_noisydarts.darts.ops import PRIMITIVES
from nni_noisydarts.darts.space import genotype_from_probs
from nni_noisydarts.noise import NoiseConfig
from nni_noisydarts.search.config import preset
from nni_noisydarts.search.runner import run_search

EPOCHS = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ["alphas_normal.png", "alphas_reduce.png", "skip_counts.png", "cell_normal.png", "cell_reduce.png"]
EDGE_LABELS = {f"{cell_type}_{node}_{source}" for cell_type in ("normal", "reduce") for node, source in edge_index(4)}


def tiny_config(cifar_root: Path, output: Path):
    # A cosine noise decay over the 2 epochs checks that the per-epoch scale is applied and restored on resume.
    return preset(
        "darts", "quick", data_root=cifar_root, output=output, epochs=EPOCHS, batch_size=16, width=4, cells=3,
        subset=96, seed=0, device="cpu", noise=NoiseConfig(lam=0.2, decay_epochs=2),
    )


def read_json(path: Path):
    return json.loads(path.read_text())


def snapshot(folder: Path) -> dict:
    """Return the size, modification time and SHA-256 of every file under ``folder``."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns,
                                                    hashlib.sha256(path.read_bytes()).hexdigest())
    return files


@pytest.fixture(scope="module")
def uninterrupted(cifar_root, tmp_path_factory, single_thread):
    output = tmp_path_factory.mktemp("search") / "run"
    config = tiny_config(cifar_root, output)
    result = run_search(config)
    return config, result


@pytest.fixture(scope="module")
def interrupted(cifar_root, tmp_path_factory, single_thread):
    """Run a search that stops at the start of epoch 1, and return its settings and a snapshot of its folder."""
    output = tmp_path_factory.mktemp("search") / "run"
    config = tiny_config(cifar_root, output)
    with pytest.raises(Interrupted):
        run_search(config, extra_callbacks=[InterruptAtEpoch(1)])
    return config, snapshot(output)


@pytest.fixture(scope="module")
def resumed(interrupted):
    config, _ = interrupted
    resumed_config = dataclasses.replace(config, resume=True)
    return resumed_config, run_search(resumed_config)


# --- outputs of a finished search -----------------------------------------------------------


def test_genotype_files_parse(uninterrupted):
    config, result = uninterrupted
    text = (config.output / "genotype.txt").read_text()
    document = (config.output / "genotype.json").read_text()

    assert text.endswith("\n")
    assert parse_genotype(text) == parse_genotype(document)
    assert text.strip() == result["architecture"]


def test_genotype_from_final_weights(uninterrupted):
    config, _ = uninterrupted
    history = read_json(config.output / "alphas.json")

    genotype = parse_genotype((config.output / "genotype.txt").read_text())

    assert genotype == genotype_from_probs(history[-1]["weights"], steps=4)


def test_alphas_one_record_per_epoch(uninterrupted):
    config, _ = uninterrupted
    history = read_json(config.output / "alphas.json")

    assert [record["epoch"] for record in history] == list(range(EPOCHS))


def test_alphas_weights_are_softmax(uninterrupted):
    config, _ = uninterrupted
    for record in read_json(config.output / "alphas.json"):
        weights = record["weights"]
        assert set(weights) == EDGE_LABELS
        for label, row in weights.items():
            assert sorted(row) == sorted(PRIMITIVES), label
            assert sum(row.values()) == pytest.approx(1.0, abs=1e-6), label
            assert all(0.0 < value < 1.0 for value in row.values()), label


def test_alphas_change_during_search(uninterrupted):
    config, _ = uninterrupted
    first, last = read_json(config.output / "alphas.json")

    assert first["weights"] != last["weights"]


def test_record_architecture_matches_weights(uninterrupted):
    config, _ = uninterrupted
    for record in read_json(config.output / "alphas.json"):
        genotype = genotype_from_probs(record["weights"], steps=4)

        assert parse_genotype(record["architecture"]) == genotype
        assert record["skip_counts"] == genotype.skip_counts()


def test_record_noise_scale_decays(uninterrupted):
    config, _ = uninterrupted
    scales = [record["noise_scale"] for record in read_json(config.output / "alphas.json")]

    assert scales == [pytest.approx(config.noise.scale_at(epoch), abs=1e-12) for epoch in range(EPOCHS)]
    assert scales[1] == pytest.approx(0.5, abs=1e-12)


def test_record_metrics_in_range(uninterrupted):
    config, _ = uninterrupted
    for record in read_json(config.output / "alphas.json"):
        for split in ("train", "val"):
            assert 0.0 <= record[f"search_{split}_acc"] <= 1.0
            assert record[f"search_{split}_loss"] > 0.0


def test_checkpoints_written(uninterrupted):
    config, _ = uninterrupted
    folder = config.output / "checkpoints"

    assert sorted(path.name for path in folder.iterdir()) == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
    for name, epoch in [("epoch000.ckpt", 0), ("epoch001.ckpt", 1), ("last.ckpt", 1)]:
        checkpoint = torch.load(folder / name, map_location="cpu", weights_only=False)
        assert checkpoint["epoch"] == epoch, name


@pytest.mark.parametrize("name", PLOTS)
def test_plot_is_png(uninterrupted, name):
    config, _ = uninterrupted
    path = config.output / "plots" / name

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= 200
        # A blank canvas would have a single colour.
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
        assert len(colours) > 10


def test_result_json(uninterrupted):
    config, result = uninterrupted
    stored = read_json(config.output / "result.json")

    assert stored == result
    assert stored["space"] == "darts"
    assert stored["epochs"] == EPOCHS
    assert stored["architecture_json"] == read_json(config.output / "genotype.json")
    assert stored["skip_counts"] == parse_genotype(stored["architecture"]).skip_counts()
    assert stored["noise"] == config.noise.to_dict()
    assert sorted(stored["plots"]) == sorted(f"plots/{name}" for name in PLOTS)


def test_config_stored(uninterrupted):
    config, _ = uninterrupted
    stored = read_json(config.output / "search_config.json")

    assert stored["epochs"] == EPOCHS
    assert stored["subset"] == 96
    assert stored["noise"] == config.noise.to_dict()


# --- resume ---------------------------------------------------------------------------------


def test_interrupted_run_state(interrupted):
    config, files = interrupted

    assert "checkpoints/epoch000.ckpt" in files
    assert "checkpoints/last.ckpt" in files
    assert "checkpoints/epoch001.ckpt" not in files
    assert "genotype.txt" not in files
    assert "result.json" not in files
    assert [record["epoch"] for record in read_json(config.output / "alphas.json")] == [0]


def test_resume_same_genotype(uninterrupted, resumed):
    (full_config, full_result), (resumed_config, resumed_result) = uninterrupted, resumed

    assert resumed_result["architecture"] == full_result["architecture"]
    assert (resumed_config.output / "genotype.txt").read_text() == (full_config.output / "genotype.txt").read_text()
    assert (resumed_config.output / "genotype.json").read_text() == (full_config.output / "genotype.json").read_text()


def test_resume_same_alphas_every_epoch(uninterrupted, resumed):
    full = read_json(uninterrupted[0].output / "alphas.json")
    continued = read_json(resumed[0].output / "alphas.json")

    assert [record["epoch"] for record in continued] == list(range(EPOCHS))
    for expected, actual in zip(full, continued):
        assert actual["weights"] == expected["weights"], f"epoch {expected['epoch']}"
        assert actual["noise_scale"] == expected["noise_scale"], f"epoch {expected['epoch']}"


def test_resume_same_records(uninterrupted, resumed):
    """Metrics and learning rates match too, so the weights saw the same batches, noise and schedule."""
    assert read_json(resumed[0].output / "alphas.json") == read_json(uninterrupted[0].output / "alphas.json")
    assert resumed[1] == uninterrupted[1]


def test_resume_writes_missing_checkpoint(resumed):
    config, _ = resumed

    assert (config.output / "checkpoints" / "epoch001.ckpt").is_file()
    assert torch.load(config.output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


# --- output folder guards -------------------------------------------------------------------


def test_existing_output_rejected(uninterrupted):
    config, _ = uninterrupted
    before = snapshot(config.output)

    with pytest.raises(ValueError, match="--resume"):
        run_search(dataclasses.replace(config, resume=False))

    assert snapshot(config.output) == before


def test_resume_empty_folder_rejected(cifar_root, tmp_path):
    config = dataclasses.replace(tiny_config(cifar_root, tmp_path / "empty"), resume=True)
    (tmp_path / "empty").mkdir()

    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        run_search(config)

    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_missing_folder_rejected(cifar_root, tmp_path):
    config = dataclasses.replace(tiny_config(cifar_root, tmp_path / "missing"), resume=True)

    with pytest.raises(FileNotFoundError):
        run_search(config)

    assert not (tmp_path / "missing").exists()


def test_resume_before_first_checkpoint(cifar_root, tmp_path, uninterrupted):
    """A search stopped before its first epoch ended resumes from the start and ends as an uninterrupted one."""
    config = tiny_config(cifar_root, tmp_path / "run")
    with pytest.raises(Interrupted):
        run_search(config, extra_callbacks=[InterruptAtEpoch(0)])
    assert (config.output / "search_config.json").is_file()
    assert not (config.output / "checkpoints" / "last.ckpt").exists()

    result = run_search(dataclasses.replace(config, resume=True))

    assert result["architecture"] == uninterrupted[1]["architecture"]
    assert read_json(config.output / "alphas.json")[-1]["weights"] == read_json(
        uninterrupted[0].output / "alphas.json")[-1]["weights"]


def test_resume_finished_search_keeps_files(uninterrupted, tmp_path):
    """Resuming a finished search trains nothing more and leaves its records and logs alone."""
    config, result = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(config.output, copy)
    before = snapshot(copy)

    again = run_search(dataclasses.replace(config, output=copy, resume=True))

    after = snapshot(copy)
    assert again["architecture"] == result["architecture"]
    assert again["search_val_acc"] == result["search_val_acc"]
    records_and_logs = [name for name in before if name.startswith(("checkpoints/", "logs/")) or name == "alphas.json"]
    assert records_and_logs
    for name in records_and_logs:
        assert after[name] == before[name], name
    assert set(after) == set(before)


def test_output_file_rejected(cifar_root, tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")

    with pytest.raises(ValueError, match="not a folder"):
        run_search(tiny_config(cifar_root, path))

    assert path.read_text() == "not a folder"


def test_subset_below_class_count_rejected(cifar_root, tmp_path):
    config = dataclasses.replace(tiny_config(cifar_root, tmp_path / "out"), subset=5)

    with pytest.raises(ValueError, match="--subset 5 is too small for 10 classes"):
        run_search(config)

    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_without_cuda_rejected(cifar_root, tmp_path):
    config = dataclasses.replace(tiny_config(cifar_root, tmp_path / "out"), device="gpu")

    with pytest.raises(ValueError, match="--device cpu"):
        run_search(config)

    assert not (tmp_path / "out").exists()


# --- command line ---------------------------------------------------------------------------


def run_cli(capsys, *args) -> tuple:
    code = main(["search", *args])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("noisydarts search: error:")]
    return code, errors


@pytest.mark.parametrize("args, shown", [
    (["--lam", "-1"], "-1.0"),
    (["--lam", "nan"], "nan"),
    (["--mu", "inf"], "inf"),
    (["--epochs", "0"], "got 0"),
    (["--batch-size", "0"], "got 0"),
    (["--subset", "1"], "got 1"),
    (["--noise-decay-epochs", "0"], "got 0"),
    (["--learning-rate", "-0.1"], "-0.1"),
])
def test_cli_bad_value(capsys, cifar_root, tmp_path, args, shown):
    code, errors = run_cli(capsys, "--data-root", str(cifar_root), "--output", str(tmp_path / "out"), *args)

    assert code != 0
    assert len(errors) == 1, errors
    assert shown in errors[0]
    assert not (tmp_path / "out").exists()


def test_cli_missing_data_root(capsys, tmp_path):
    missing = tmp_path / "no-such-folder"

    code, errors = run_cli(capsys, "--data-root", str(missing), "--output", str(tmp_path / "out"))

    assert code != 0
    assert len(errors) == 1, errors
    assert str(missing) in errors[0]


def test_cli_no_data_root(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NOISYDARTS_DATA", raising=False)

    code, errors = run_cli(capsys, "--output", str(tmp_path / "out"))

    assert code != 0
    assert len(errors) == 1, errors
    assert "--data-root" in errors[0]


def test_cli_resume_empty_folder(capsys, tmp_path):
    code, errors = run_cli(capsys, "--resume", "--output", str(tmp_path))

    assert code != 0
    assert len(errors) == 1, errors
    assert str(tmp_path) in errors[0]


def test_cli_download_accepts_new_folder(tmp_path):
    """With --download the data folder may not exist yet, and the flag reaches the search settings."""
    args = build_parser().parse_args(["search", "--download", "--data-root", str(tmp_path / "new"),
                                      "--output", str(tmp_path / "out")])

    config = config_from_args(args)

    assert config.download is True
    assert config.data_root == tmp_path / "new"


def test_cli_unknown_choice(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--noise", "laplace", "--output", str(tmp_path)])

    assert exit_info.value.code != 0
    assert "laplace" in capsys.readouterr().err


def test_cli_executable_exit_status(cifar_root, tmp_path):
    """The installed ``noisydarts`` script exits non-zero and prints one error line naming the value."""
    script = Path(sys.executable).with_name("noisydarts")
    if not script.is_file():
        pytest.skip(f"no noisydarts script next to {sys.executable}; install the package to run this test")

    completed = subprocess.run(
        [str(script), "search", "--lam", "-0.5", "--data-root", str(cifar_root), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )

    errors = [line for line in completed.stderr.splitlines() if line.startswith("noisydarts search: error:")]
    assert completed.returncode != 0
    assert len(errors) == 1, completed.stderr
    assert "-0.5" in errors[0]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("signal_number, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_cli_signal_keeps_epochs(cifar_root, tmp_path, signal_number, name):
    """SIGTERM or Ctrl-C ends a running search with status 128 + signal and keeps the finished epochs."""
    script = Path(sys.executable).with_name("noisydarts")
    if not script.is_file():
        pytest.skip(f"no noisydarts script next to {sys.executable}; install the package to run this test")
    output = tmp_path / "out"
    history_file = output / "alphas.json"
    last_checkpoint = output / "checkpoints" / "last.ckpt"

    process = subprocess.Popen(
        [str(script), "search", "--data-root", str(cifar_root), "--output", str(output), "--epochs", "200",
         "--batch-size", "8", "--width", "4", "--cells", "3", "--subset", "32", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell starts background jobs with SIGINT ignored, and Python keeps it ignored, as a
        # terminal user's search would not. Restore the default so that Ctrl-C reaches Python.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while not last_checkpoint.is_file():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no epoch finished within 240 s"
            time.sleep(0.2)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 128 + signal_number, stdout[-2000:] + stderr[-3000:]
    assert f"received {name}" in stderr
    assert "--resume" in stderr
    assert "Traceback" not in stderr
    assert not (output / "result.json").exists()

    # Ctrl-C can land after an epoch's record and before its checkpoint. Resume drops such a record.
    history = json.loads(history_file.read_text())
    last = torch.load(last_checkpoint, map_location="cpu", weights_only=False)
    assert 1 <= len(history) < 200
    assert last["epoch"] in (history[-1]["epoch"], history[-1]["epoch"] - 1)
    assert f"after {last['epoch'] + 1} of 200 epochs" in stderr
