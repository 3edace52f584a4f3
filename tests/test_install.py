"""#25: the wheel, installed into a fresh virtual environment outside the checkout, works from another folder:
the named configs are in it, and the Python API trains the demo."""
from __future__ import annotations

import os
import pathlib
import site
import subprocess
import sys
import sysconfig
import zipfile

from posedual_tf import config

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_the_wheel_installed_in_a_fresh_venv_loads_configs_and_trains_through_the_api(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("posedual_tf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {pathlib.PurePosixPath(n).stem for n in names if n.startswith("posedual_tf/configs/") and n.endswith(".yaml")}
    assert shipped == set(config.available()) and "demo_dual" in shipped
    licences = {pathlib.PurePosixPath(n).name: n for n in names if ".dist-info/" in n}
    assert {"LICENSE", "NOTICE"} <= set(licences), sorted(licences)          # what a legal review looks for
    text = zipfile.ZipFile(wheel).read(licences["LICENSE"]).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    notice = zipfile.ZipFile(wheel).read(licences["NOTICE"]).decode()
    assert "github.com/xierc/Semi_Human_Pose" in notice and "github.com/hnuzhy/MultiAugs" in notice
    # the sample photo ships with its box and its licence (README's snippet reads it from the package)
    assert {"posedual_tf/samples/coco_000000000785.jpg", "posedual_tf/samples/coco_000000000785.boxes.json",
            "posedual_tf/samples/ATTRIBUTION.md"} <= names
    assert "CC BY 2.0" in zipfile.ZipFile(wheel).read("posedual_tf/samples/ATTRIBUTION.md").decode()
    from posedual_tf import paper_tables

    assert {f"posedual_tf/tables/{t}.yaml" for t in paper_tables.names()} | {"posedual_tf/tables/step_costs.json"} \
        <= names

    # A fresh venv. Its dependencies (TensorFlow & co.) are this environment's, reached through a plain path
    # entry: the .pth files there are not run, so this checkout's editable posedual_tf is not importable.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    fresh_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    pathlib.Path(fresh_site, "dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                              fresh_site, str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args, timeout=120):
        return subprocess.run([str(python), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=timeout)

    where = run("-c", "import posedual_tf; print(posedual_tf.__file__)")
    assert where.returncode == 0 and where.stdout.strip().startswith(fresh_site), where.stdout + where.stderr[-2000:]
    shown = run("-m", "posedual_tf.config", "--config", "coco1k_dual")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "name: coco1k_dual" in shown.stdout and "batch_size: 32" in shown.stdout
    planned = run("-m", "posedual_tf.reproduce", "--table", "posedual_coco", "--dry-run")     # the tables ship
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "9. coco1k_dual_jointcut" in planned.stdout and "? TFLOP/step" not in planned.stdout
    code = ("import posedual_tf\n"
            "cfg = posedual_tf.load_config('demo_dual', ['workdir=run', 'train.epochs=1', 'train.steps_per_epoch=2',\n"
            "    'train.batch_size=4', 'data.synthetic.labelled_images=12', 'data.synthetic.unlabelled_images=12',\n"
            "    'data.synthetic.val_images=4', 'model.width_multiplier=0.125'])\n"
            "posedual_tf.prepare_demo_data(cfg)\n"
            "result = posedual_tf.fit(cfg, progress='none')\n"
            "print('final_step', result['final_step'], sorted(result['metrics']))\n"
            "poses = posedual_tf.predict('run', posedual_tf.samples.IMAGE, posedual_tf.samples.BOXES)\n"
            "print('people', len(poses), posedual_tf.samples.IMAGE.startswith(posedual_tf.__path__[0]))\n")
    trained = run("-c", code, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "final_step 2 ['_counts', 'ensemble', 'net1', 'net2']" in trained.stdout
    assert "people 1 True" in trained.stdout
    assert (elsewhere / "run" / "final").is_dir() and (elsewhere / "run" / "train_result.json").is_file()
