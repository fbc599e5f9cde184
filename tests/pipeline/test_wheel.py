"""The built wheel, installed into a fresh virtual environment, imports and runs the CLI."""

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_installs_into_fresh_venv_and_runs_cli(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("gristmill-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top_level == {"gristmill", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    # Dependencies come from the test environment's site-packages (installing torch again would take
    # minutes); gristmill itself must come from the wheel inside the fresh venv.
    deps = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": deps, "PATH": f"{env_dir / 'bin'}"}
    where = subprocess.run(
        [python, "-c", "import gristmill.pipeline, gristmill.kernels; print(gristmill.pipeline.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    assert where.startswith(str(env_dir)), where
    cli = subprocess.run([env_dir / "bin" / "gristmill", "--help"], env=env, capture_output=True, text=True)
    assert cli.returncode == 0 and "run" in cli.stdout, cli.stderr
