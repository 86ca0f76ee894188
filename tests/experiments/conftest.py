"""Fixtures of the experiment-tooling tests: a tiny config file and a fake training script
that honours train_net.py's contract (OUTPUT_DIR/last_checkpoint while training, then
OUTPUT_DIR/final_metrics.json) without training anything."""

import textwrap

import pytest

# The fake script's metrics, a function of the swept value and the seed that the tests
# recompute independently.
FAKE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time

    argv = sys.argv[1:]
    assert argv[0] == "--config-file" and os.path.isfile(argv[1]), argv
    resume = "--resume" in argv
    opts = argv[argv.index("--resume") + 1:]
    opts = dict(zip(opts[0::2], opts[1::2]))
    out, seed = opts["OUTPUT_DIR"], int(opts["SEED"])
    lam = float(opts.get("MODEL.IFR.LAMBDA_E", "0.3"))
    os.makedirs(out, exist_ok=True)
    had_checkpoint = os.path.isfile(os.path.join(out, "last_checkpoint"))
    with open(os.path.join(out, "calls.txt"), "a") as f:
        f.write(f"resume={resume} had_checkpoint={had_checkpoint}\\n")
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000009.pth")
    run = f"{lam}/{seed}"
    if run == os.environ.get("FAKE_CRASH_RUN"):
        print("fake crash in run", run, flush=True)
        sys.exit(3)
    if run == os.environ.get("FAKE_SLEEP_RUN"):
        # Renamed into place, so the test never reads a created but still empty file.
        with open(os.path.join(out, "sleeping.tmp"), "w") as f:
            f.write(str(os.getpid()))
        os.replace(os.path.join(out, "sleeping.tmp"), os.path.join(out, "sleeping"))
        time.sleep(60)
    metrics = {"AP": 40 + 10 * lam + seed, "AP50": 60 + lam - 0.5 * seed,
               "AP75": 45 + seed * seed, "AR1": 30.0, "AR10": 50 + lam * seed}
    if os.environ.get("FAKE_TRACKING"):
        metrics.update(IDF1=70 + seed, MOTA=45 - lam, IDP=80.0, IDR=60.0, IDs=50 + seed)
    with open(os.path.join(out, "final_metrics.json"), "w") as f:
        json.dump(metrics, f)
    """
)


def fake_metrics(lam: float, seed: int) -> dict:
    return {
        "AP": 40 + 10 * lam + seed,
        "AP50": 60 + lam - 0.5 * seed,
        "AP75": 45 + seed * seed,
        "AR1": 30.0,
        "AR10": 50 + lam * seed,
    }


@pytest.fixture(name="fake_metrics")
def fake_metrics_fixture():
    return fake_metrics


@pytest.fixture
def fake_train_script(tmp_path):
    path = tmp_path / "fake_train_net.py"
    path.write_text(FAKE_SCRIPT)
    return str(path)


@pytest.fixture
def yaml_fake_train_script(tmp_path):
    """The fake script reading lambda_e from the config file when no override sets it, for
    comparisons of configs that differ only in their yaml."""
    path = tmp_path / "fake_yaml_train_net.py"
    path.write_text(
        FAKE_SCRIPT.replace(
            'lam = float(opts.get("MODEL.IFR.LAMBDA_E", "0.3"))',
            "import yaml\n"
            'lam = float(opts.get("MODEL.IFR.LAMBDA_E", '
            'yaml.safe_load(open(argv[1]))["MODEL"]["IFR"]["LAMBDA_E"]))',
        )
    )
    return str(path)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("VERSION: 2\nMODEL:\n  IFR:\n    LAMBDA_E: 0.2\nSOLVER:\n  MAX_ITER: 10\n")
    return str(path)
