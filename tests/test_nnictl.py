"""NNI HPO trials: parameter parsing, one trial in NNI's standalone mode, and a real nnictl experiment."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from nni_noisydarts.cli import main
from nni_noisydarts.darts.genotype import parse_genotype
from nni_noisydarts.hpo import TRIAL_FILE, TrialReporter, TrialSettings, run_trial, settings_from_parameters
from nni_noisydarts.noise import NoiseConfig
from nni_noisydarts.search.config import preset
from nni_noisydarts.training import get_preset

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO_ROOT / "noisydarts.yml"

FINAL_KEYS = {"default", "search_val_acc", "search_train_acc", "genotype", "skips_normal", "skips_reduce"}
INTERMEDIATE_KEYS = {"default", "search_train_acc", "skips_normal", "skips_reduce", "epoch"}
TERMINAL_STATUSES = {"SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"}
EXPERIMENT_TIMEOUT_S = 15 * 60


# Parameter parsing.

def test_settings_from_choice_of_dicts():
    settings = settings_from_parameters(
        {"setting": {"name": "uniform", "lam": 0.1, "mu": 0.0, "noise_type": "uniform", "mixing": "additive"},
         "seed": 3})
    assert settings.name == "uniform"
    assert settings.seed == 3
    assert settings.noise == NoiseConfig(lam=0.1, mu=0.0, noise_type="uniform", mixing="additive")


def test_settings_from_nni_nested_choice():
    # NNI's nested-choice syntax names each branch with "_name".
    settings = settings_from_parameters({"noise": {"_name": "mult", "lam": 0.2, "mixing": "multiplicative"}})
    assert settings.name == "mult"
    assert settings.noise.mixing == "multiplicative"


def test_settings_defaults_fill_missing_keys():
    defaults = {"lam": 0.2, "mu": None, "noise_type": "gaussian", "mixing": "additive",
                "decay_epochs": 50, "seed": 7}
    settings = settings_from_parameters({"lam": 0.1}, defaults)
    assert settings.noise.lam == 0.1
    assert settings.noise.decay_epochs == 50
    assert settings.seed == 7


def test_settings_multiplicative_mean_defaults_to_one():
    defaults = {"mu": None, "mixing": "additive"}
    settings = settings_from_parameters({"mixing": "multiplicative", "lam": 0.1}, defaults)
    assert settings.noise.mu == 1.0


def test_settings_zero_lam_is_noiseless():
    settings = settings_from_parameters({"setting": {"name": "darts", "lam": 0.0, "mu": 0.0}})
    assert settings.noise.is_noiseless


def test_settings_integral_float_seed_accepted():
    # quniform and similar tuner distributions produce floats.
    settings = settings_from_parameters({"seed": 2.0, "decay_epochs": 50.0})
    assert settings.seed == 2
    assert settings.noise.decay_epochs == 50


@pytest.mark.parametrize("parameters, expected", [
    ({"lam": -0.1}, "lam"),
    ({"lam": "0.2"}, "lam"),
    ({"lam": float("nan")}, "lam"),
    ({"lam": True}, "lam"),
    ({"mu": "biased"}, "mu"),
    ({"noise_type": "laplace"}, "laplace"),
    ({"mixing": "convex"}, "convex"),
    ({"decay_epochs": 0}, "decay_epochs"),
    ({"seed": 1.5}, "seed"),
    ({"name": 3}, "name"),
    ({"lambda": 0.2}, "lambda"),
    ({"lam": 0.1, "setting": {"lam": 0.2}}, "given twice"),
])
def test_settings_invalid_raise(parameters, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        settings_from_parameters(parameters)


def test_settings_non_dict_raises():
    with pytest.raises(ValueError, match="must be a dict"):
        settings_from_parameters([0.2])


# The shipped experiment config.

def load_shipped_config() -> dict:
    with SHIPPED_CONFIG.open() as stream:
        return yaml.safe_load(stream)


def test_shipped_config_passes_nni_validation():
    from nni.experiment.config import ExperimentConfig

    config = ExperimentConfig.load(str(SHIPPED_CONFIG))
    config.validate()
    canonical = config.canonical_copy()
    assert canonical.training_service.platform == "local"
    assert canonical.training_service.use_active_gpu is False
    assert canonical.trial_concurrency == 1
    assert Path(canonical.trial_code_directory) == REPO_ROOT


def test_shipped_config_covers_paper_ablations():
    space = load_shipped_config()["searchSpace"]
    settings = [settings_from_parameters({"setting": value}) for value in space["setting"]["_value"]]
    combinations = {(s.noise.noise_type, s.noise.mixing, s.noise.mu, s.noise.lam) for s in settings}

    expected = {("gaussian", "additive", 0.0, 0.0)}
    expected |= {("gaussian", "additive", mu, lam) for mu in (0.0, 0.5, 1.0) for lam in (0.1, 0.2)}
    expected |= {("uniform", "additive", 0.0, lam) for lam in (0.1, 0.2)}
    expected |= {("gaussian", "multiplicative", 1.0, lam) for lam in (0.1, 0.2)}
    assert combinations == expected
    assert len(settings) == len(expected), "a setting is listed twice"
    assert len({s.name for s in settings}) == len(settings), "setting names must be unique"
    assert settings[0].noise.is_noiseless, "the first grid point should be the DARTS baseline"


def test_shipped_config_trial_command():
    config = load_shipped_config()
    command = config["trialCommand"]
    assert "noisydarts trial" in command
    assert "$NOISYDARTS_DATA" in command or "${NOISYDARTS_DATA" in command
    grid_size = len(config["searchSpace"]["setting"]["_value"]) * len(config["searchSpace"]["seed"]["_value"])
    assert config["maxTrialNumber"] == grid_size
    assert config["tuner"]["name"] in ("GridSearch", "Random")


# The trial in-process, with NNI's standalone trial command channel (no NNI manager).

def tiny_search_config(cifar_root: Path, epochs: int = 2):
    return preset("darts", "quick", data_root=cifar_root, epochs=epochs, subset=64, batch_size=16,
                  width=4, cells=3, device="cpu")


def tiny_train_config(cifar_root: Path):
    return get_preset("darts-quick", data_root=str(cifar_root), epochs=1, subset=64, test_subset=64,
                      batch_size=32, width=4, cells=3, device="cpu")


def nni_metric_records(caplog, message: str) -> list:
    """Metrics that NNI's standalone channel logged as ``message % metric`` on the ``nni`` logger."""
    metrics = []
    for record in caplog.records:
        if record.name == "nni" and record.msg == message:
            # logging stores a lone dict argument as ``args`` itself, not as a 1-tuple.
            metrics.append(record.args if isinstance(record.args, dict) else record.args[0])
    return metrics


@pytest.fixture
def standalone_nni(monkeypatch):
    """Make sure the trial command channel is NNI's standalone one, as for a trial run outside NNI."""
    for name in ("NNI_PLATFORM", "NNI_TRIAL_COMMAND_CHANNEL", "NNI_OUTPUT_DIR", "NNI_TRIAL_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    from nni.runtime.trial_command_channel import get_default_trial_command_channel
    from nni.runtime.trial_command_channel.standalone import StandaloneTrialCommandChannel

    channel = get_default_trial_command_channel()
    assert isinstance(channel, StandaloneTrialCommandChannel)
    return channel


def test_trial_reports_standalone(cifar_root, tmp_path, caplog, standalone_nni):
    parameters = {"setting": {"name": "biased", "lam": 0.2, "mu": 0.5, "noise_type": "gaussian",
                              "mixing": "additive"}, "seed": 1}
    settings = settings_from_parameters(parameters)
    reporter = TrialReporter()
    caplog.set_level(logging.INFO, logger="nni")

    final = run_trial(tiny_search_config(cifar_root), tiny_train_config(cifar_root), settings, tmp_path / "trial",
                      reporter, parameters=parameters)

    assert FINAL_KEYS | {"test_accuracy"} == set(final)
    assert final["default"] == final["test_accuracy"]
    assert 0.0 <= final["test_accuracy"] <= 1.0
    assert 0.0 <= final["search_val_acc"] <= 1.0
    genotype = parse_genotype(final["genotype"])
    assert final["skips_normal"] == sum(op == "skip_connect" for op, _ in genotype.normal)
    assert final["skips_reduce"] == sum(op == "skip_connect" for op, _ in genotype.reduce)

    intermediates = nni_metric_records(caplog, "Intermediate result: %s  (Index %s)")
    assert [metric["epoch"] for metric in intermediates] == [1, 2]
    for metric in intermediates:
        assert set(metric) == INTERMEDIATE_KEYS
    assert intermediates[-1]["default"] == final["search_val_acc"]
    finals = nni_metric_records(caplog, "Final result: %s")
    assert finals == [final]

    summary = json.loads((tmp_path / "trial" / TRIAL_FILE).read_text())
    assert summary["parameters"] == parameters
    assert summary["settings"]["noise"]["mu"] == 0.5
    assert summary["final_metric"] == final
    assert (tmp_path / "trial" / "search" / "genotype.txt").read_text().strip() == final["genotype"]
    assert (tmp_path / "trial" / "train" / "results.json").is_file()


def test_trial_without_training_reports_search_accuracy(cifar_root, tmp_path, caplog, standalone_nni):
    reporter = TrialReporter()
    caplog.set_level(logging.INFO, logger="nni")

    final = run_trial(tiny_search_config(cifar_root, epochs=1), None, TrialSettings(seed=2), tmp_path / "trial",
                      reporter)

    assert set(final) == FINAL_KEYS
    assert final["default"] == final["search_val_acc"]
    assert nni_metric_records(caplog, "Final result: %s") == [final]
    assert not (tmp_path / "trial" / "train").exists()


def test_trial_rejects_used_output_root(cifar_root, tmp_path, standalone_nni):
    (tmp_path / "trial" / "search").mkdir(parents=True)
    (tmp_path / "trial" / "search" / "result.json").write_text("{}")
    with pytest.raises(ValueError, match="already contains results"):
        run_trial(tiny_search_config(cifar_root), None, TrialSettings(), tmp_path / "trial", TrialReporter())


def test_cli_trial_invalid_lam_exits_nonzero(tmp_path, capsys, standalone_nni):
    output_root = tmp_path / "trial"
    code = main(["trial", "--parameters", '{"lam": -0.1}', "--data-root", str(tmp_path),
                 "--output-root", str(output_root)])
    assert code != 0
    error = capsys.readouterr().err
    assert "lam" in error
    assert "-0.1" in error
    assert not output_root.exists()


def test_cli_trial_invalid_json_exits_nonzero(tmp_path, capsys, standalone_nni):
    code = main(["trial", "--parameters", "{lam: 0.1", "--data-root", str(tmp_path),
                 "--output-root", str(tmp_path / "trial")])
    assert code != 0
    assert "--parameters" in capsys.readouterr().err


# A real NNI experiment: nnictl, the NNI manager (Node.js) and three trial processes.

def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_nnictl() -> str:
    candidate = Path(sys.executable).parent / "nnictl"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("nnictl")
    if found is None:
        pytest.fail("nnictl not found next to the Python interpreter or on PATH; install nni==3.0")
    return found


def rest_get(port: int, route: str):
    url = f"http://127.0.0.1:{port}/api/v1/nni/{route}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read().decode())


def decode_metric(data):
    """Decode a metric value of NNI's REST API: JSON text, which may itself encode a JSON string."""
    value = json.loads(data) if isinstance(data, str) else data
    return json.loads(value) if isinstance(value, str) else value


def tail(path: Path, limit: int = 4000) -> str:
    if not path.is_file():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace")
    return text[-limit:]


def trial_folder(experiment_dir: Path, trial_id: str) -> Path:
    """The trial's working folder: environments/<env>/trials/<id> for NNI 3.0's local training
    service, trials/<id> for the legacy one. It is also the trial's NNI_OUTPUT_DIR."""
    found = sorted(experiment_dir.glob(f"**/trials/{trial_id}"))
    assert found, f"no folder of trial {trial_id} under {experiment_dir}"
    return found[0]


def experiment_report(experiment_dir: Path, trials: list) -> str:
    """Text for assertion messages: every trial's status and stderr, and the NNI manager log."""
    parts = []
    for trial in trials:
        found = sorted(experiment_dir.glob(f"**/trials/{trial['trialJobId']}/*stderr"))
        stderr = tail(found[0]) if found else "(no stderr file)"
        parts.append(f"--- trial {trial['trialJobId']}: {trial['status']}, stderr:\n{stderr}")
    parts.append(f"--- nnimanager.log:\n{tail(experiment_dir / 'log' / 'nnimanager.log')}")
    parts.append(f"--- dispatcher.log:\n{tail(experiment_dir / 'log' / 'dispatcher.log', 2000)}")
    return "\n".join(parts)


def experiment_processes(experiment_id: str) -> list:
    """Process ids whose command line or environment names the experiment (NNI manager and trials)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if experiment_id.encode() in cmdline or f"NNI_EXP_ID={experiment_id}".encode() in environ.split(b"\0"):
            pids.append(int(proc.name))
    return pids


def port_accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


#: Prepended to the shipped grid: a trial whose settings are invalid must fail, not fall back.
INVALID_SETTING = {"name": "invalid-negative-lam", "lam": -0.1, "mu": 0.0, "noise_type": "gaussian",
                   "mixing": "additive"}


def write_experiment_config(tmp_path: Path) -> Path:
    """Write the shipped config with a 3-trial grid: the invalid setting, then the first two shipped ones."""
    config = load_shipped_config()
    config["searchSpace"]["setting"]["_value"].insert(0, INVALID_SETTING)
    config["maxTrialNumber"] = 3
    config["trialCodeDirectory"] = str(REPO_ROOT)
    config["experimentWorkingDirectory"] = str(tmp_path / "experiments")
    config["experimentName"] = "noisydarts-test"
    path = tmp_path / "noisydarts-test.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_for_trials(port: int, experiment_dir: Path, count: int) -> list:
    """Poll the REST API until ``count`` trials have ended; return the trial list."""
    deadline = time.monotonic() + EXPERIMENT_TIMEOUT_S
    while True:
        trials = rest_get(port, "trial-jobs")
        status = rest_get(port, "check-status")
        if sum(trial["status"] in TERMINAL_STATUSES for trial in trials) >= count:
            return trials
        assert status["status"] != "ERROR", \
            f"experiment failed: {status}\n{experiment_report(experiment_dir, trials)}"
        assert time.monotonic() < deadline, \
            f"trials did not end within {EXPERIMENT_TIMEOUT_S} s\n{experiment_report(experiment_dir, trials)}"
        time.sleep(5)


def check_succeeded_trial(trial: dict, metrics: list, experiment_dir: Path, epochs: int, report: str) -> None:
    trial_id = trial["trialJobId"]
    record = json.loads(trial["hyperParameters"][0])

    finals = [m for m in metrics if m["trialJobId"] == trial_id and m["type"] == "FINAL"]
    assert len(finals) == 1, f"trial {trial_id}: {finals}\n{report}"
    final = decode_metric(finals[0]["data"])
    assert FINAL_KEYS | {"test_accuracy"} == set(final), report
    assert final["default"] == final["test_accuracy"]
    assert final["genotype"].startswith("Genotype(")
    # The metric must carry this trial's parameter id, or the tuner pairs it with other parameters.
    assert str(finals[0]["parameterId"]) == str(record["parameter_id"]), report

    intermediates = [decode_metric(m["data"]) for m in metrics
                     if m["trialJobId"] == trial_id and m["type"] == "PERIODICAL"]
    assert [metric["epoch"] for metric in intermediates] == list(range(1, epochs + 1)), report
    for metric in intermediates:
        assert set(metric) == INTERMEDIATE_KEYS

    summary = json.loads((trial_folder(experiment_dir, trial_id) / TRIAL_FILE).read_text())
    assert summary["final_metric"] == final
    assert summary["parameter_id"] == record["parameter_id"]


@pytest.mark.slow
def test_nnictl_experiment_runs_trials(data_root, tmp_path):
    port = free_local_port()
    config_path = write_experiment_config(tmp_path)
    epochs = int(re.search(r"--epochs (\d+)", load_shipped_config()["trialCommand"]).group(1))

    # HOME keeps NNI's experiment registry (~/nni-experiments/.experiment) inside tmp_path. PATH
    # lets the trial command find `noisydarts` of this interpreter wherever its environment lies.
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), NOISYDARTS_DATA=str(data_root),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    for name in [name for name in env if name.startswith("NNI_")]:
        del env[name]
    nnictl = find_nnictl()

    experiment_id = None
    try:
        created = subprocess.run([nnictl, "create", "--config", str(config_path), "--port", str(port)],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert created.returncode == 0, f"nnictl create failed:\n{created.stdout}\n{created.stderr}"
        experiment_id = rest_get(port, "experiment")["id"]
        experiment_dir = tmp_path / "experiments" / experiment_id
        if Path("/proc").is_dir():
            # The leftover check after nnictl stop relies on finding the NNI manager this way.
            assert experiment_processes(experiment_id), "the NNI manager process was not found in /proc"

        trials = wait_for_trials(port, experiment_dir, 3)
        report = experiment_report(experiment_dir, trials)
        assert len(trials) == 3, report
        by_setting = {json.loads(trial["hyperParameters"][0])["parameters"]["setting"]["name"]: trial
                      for trial in trials}
        assert len(by_setting) == 3, f"trials repeated a setting: {sorted(by_setting)}"

        failed = by_setting.pop(INVALID_SETTING["name"])
        assert failed["status"] == "FAILED", report
        failed_stderr = "".join(path.read_text(errors="replace") for path in
                                trial_folder(experiment_dir, failed["trialJobId"]).glob("*stderr"))
        assert "lam" in failed_stderr, report
        assert "-0.1" in failed_stderr, report

        metrics = rest_get(port, "metric-data")
        assert not [m for m in metrics if m["trialJobId"] == failed["trialJobId"]], report
        for trial in by_setting.values():
            assert trial["status"] == "SUCCEEDED", report
            check_succeeded_trial(trial, metrics, experiment_dir, epochs, report)

        listing = subprocess.run([nnictl, "trial", "ls", experiment_id], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert listing.returncode == 0, listing.stderr
        for trial in trials:
            assert trial["trialJobId"] in listing.stdout
    finally:
        stop_command = [nnictl, "stop", experiment_id] if experiment_id else [nnictl, "stop", "--port", str(port)]
        stopped = subprocess.run(stop_command, env=env, capture_output=True, text=True, timeout=120)
        leftovers = []
        if experiment_id is not None and Path("/proc").is_dir():
            deadline = time.monotonic() + 60
            while experiment_processes(experiment_id) and time.monotonic() < deadline:
                time.sleep(1)
            leftovers = experiment_processes(experiment_id)
            for pid in leftovers:
                # Only processes of the experiment this test created reach this point.
                os.kill(pid, signal.SIGKILL)

    assert stopped.returncode == 0, f"nnictl stop failed:\n{stopped.stdout}\n{stopped.stderr}"
    assert not leftovers, f"processes of experiment {experiment_id} still ran after nnictl stop: {leftovers}"
    assert not port_accepts_connections(port), f"the NNI web server still listens on port {port} after nnictl stop"
