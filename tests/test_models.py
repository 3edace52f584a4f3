"""Networks: shapes, parameter counts, and PyTorch checkpoint conversion against torch outputs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posedual_tf import config  # noqa: E402
from posedual_tf.models import builder, convert  # noqa: E402
from posedual_tf.models.hrnet import pose_hrnet  # noqa: E402
from posedual_tf.models.resnet import pose_resnet  # noqa: E402
from tests import torch_reference as tr  # noqa: E402


def _trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _compare(torch_model, keras_model, h, w, seed=0):
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(np.float32)
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    out = keras_model(x.transpose(0, 2, 3, 1), training=False).numpy()
    assert out.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, atol=1e-4 * scale, rtol=0)
    return ref


def test_resnet18_parameter_count_matches_reference():
    model = pose_resnet(18, (256, 192, 3), 24)
    assert _trainable(model) == 15_378_520
    assert model.output_shape == (None, 64, 48, 24)


@pytest.mark.parametrize("name,shape", [("coco1k_dual", (64, 48)), ("coco_wild_dual_hrnet_w48_384x288", (96, 72))])
def test_builder_output_shapes(name, shape):
    cfg = config.load(name, ["model.width_multiplier=0.125"])
    net = builder.build_network(cfg)
    assert net.output_shape[1:3] == shape


def test_resnet18_conversion_matches_torch(tmp_path):
    ref = tr.randomise(tr.PoseResNet(18, final_name="final_layer_1"), seed=1)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, path)
    net = pose_resnet(18, (128, 96, 3), 24)
    rep = convert.load_into([net], str(path), "resnet")[0]
    assert not rep.missing and not rep.unexpected
    out = _compare(ref, net, 128, 96)
    assert np.abs(out).max() > 1e-3  # non-trivial output


@pytest.mark.parametrize("kernel", [3, 2])
def test_deconv_padding_rules_match_torch(tmp_path, kernel):
    ref = tr.randomise(tr.PoseResNet(18, final_name="final_layer", deconv_kernel=kernel), seed=2)
    path = tmp_path / "r.pth"
    torch.save(ref.state_dict(), path)
    net = pose_resnet(18, (64, 64, 3), 24, deconv_kernels=(kernel,) * 3)
    convert.load_into([net], str(path), "resnet")
    _compare(ref, net, 64, 64)


def test_resnet50_conversion_matches_torch(tmp_path):
    ref = tr.randomise(tr.PoseResNet(50), seed=3)
    path = tmp_path / "r50.pth"
    torch.save(ref.state_dict(), path)
    net = pose_resnet(50, (64, 64, 3), 24)
    convert.load_into([net], str(path), "resnet")
    _compare(ref, net, 64, 64)


def test_hrnet_w32_conversion_matches_torch(tmp_path):
    ref = tr.randomise(tr.PoseHRNet(32), seed=4)
    path = tmp_path / "hr.pth"
    torch.save({"resnet." + k: v for k, v in ref.state_dict().items()}, path)
    net = pose_hrnet(32, (64, 64, 3), 24)
    rep = convert.load_into([net], str(path), "hrnet")[0]
    assert not rep.missing and not rep.unexpected
    _compare(ref, net, 64, 64)


def test_posedual_checkpoint_fills_both_nets_via_cli(tmp_path):
    """Without --checkpoint the config's official model (test.model_file, where the reference's model
    zoo puts it) is converted; when it is not there, one line names the setting and the path."""
    r1 = tr.randomise(tr.PoseResNet(18), seed=5)
    r2 = tr.randomise(tr.PoseResNet(18), seed=6)
    state = {**{"resnet." + k: v for k, v in r1.state_dict().items()},
             **{"resnet2." + k: v for k, v in r2.state_dict().items()}}
    ckpt = tmp_path / "pose_dual/COCO_subset/COCO1K_PoseDual.pth.tar"
    out = tmp_path / "converted"
    sets = ["--set=data.image_size=[96,128]", "--set=data.heatmap_size=[24,32]"]
    args = [sys.executable, "-m", "posedual_tf.convert_torch", "--config", "coco1k_dual", "--output", str(out), *sets]
    missing = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert missing.returncode != 0 and not out.exists()
    line = missing.stderr.strip().splitlines()[-1]
    assert "test.model_file" in line and str(ckpt) in line and "--checkpoint" in line, missing.stderr[-2000:]
    ckpt.parent.mkdir(parents=True)
    torch.save({"epoch": 3, "state_dict": state}, ckpt)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "official model" in proc.stdout
    summary = json.loads((out / "conversion.json").read_text())
    assert set(summary["networks"]) == {"net1", "net2"}
    cfg = config.load("coco1k_dual", [s.split("=", 1)[1] for s in sets])
    nets = builder.build_networks(cfg)
    for net, ref in zip(nets, (r1, r2)):
        net.load_weights(str(out / f"{net.name}.weights.h5"))
        _compare(ref, net, 128, 96)


def test_missing_key_and_wrong_shape_are_named(tmp_path):
    ref = tr.randomise(tr.PoseResNet(18), seed=7)
    state = dict(ref.state_dict())
    missing = dict(state)
    del missing["layer3.1.bn2.running_var"]
    torch.save(missing, tmp_path / "missing.pth")
    net = pose_resnet(18, (64, 64, 3), 24)
    with pytest.raises(convert.ConversionError, match=r"layer3\.1\.bn2\.running_var"):
        convert.load_into([net], str(tmp_path / "missing.pth"), "resnet")
    wrong = dict(state)
    wrong["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(convert.ConversionError, match=r"layer2\.0\.conv1\.weight: shape \(128, 64, 5, 5\)"):
        convert.load_into([net], str(tmp_path / "wrong.pth"), "resnet")


def test_imagenet_backbone_fills_both_nets_and_keeps_heads(tmp_path):
    ref = tr.randomise(tr.PoseResNet(18), seed=8)
    backbone = {k: v for k, v in ref.state_dict().items() if not k.startswith(("deconv", "final"))}
    backbone["fc.weight"] = torch.zeros(1000, 512)
    torch.save(backbone, tmp_path / "resnet18-imagenet.pth")
    nets = [pose_resnet(18, (64, 64, 3), 24, name=f"net{i}") for i in (1, 2)]
    head_before = nets[0].get_layer("final_layer").get_weights()[0].copy()
    reports = convert.load_into(nets, str(tmp_path / "resnet18-imagenet.pth"), "resnet")
    assert all(not r.unexpected for r in reports)
    for net in nets:
        np.testing.assert_array_equal(net.get_layer("conv1").get_weights()[0],
                                      ref.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(nets[0].get_layer("final_layer").get_weights()[0], head_before)


def test_train_mode_batchnorm_updates_running_stats_like_torch(tmp_path):
    ref = tr.randomise(tr.PoseResNet(18), seed=9)
    torch.save(ref.state_dict(), tmp_path / "r.pth")
    net = pose_resnet(18, (64, 64, 3), 24)
    convert.load_into([net], str(tmp_path / "r.pth"), "resnet")
    x = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    ref.train()
    with torch.no_grad():
        out_t = ref(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    out_k = net(x.transpose(0, 2, 3, 1), training=True).numpy()
    np.testing.assert_allclose(out_k, out_t, atol=2e-4 * max(1.0, np.abs(out_t).max()))
    for key, layer in (("bn1", "bn1"), ("layer4.1.bn2", "layer4__1__bn2"), ("deconv_layers.7", "deconv_layers__7")):
        gamma, beta, mean, var = net.get_layer(layer).get_weights()
        mod = dict(ref.named_modules())[key]
        np.testing.assert_allclose(mean, mod.running_mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(var, mod.running_var.numpy(), rtol=1e-5, atol=1e-5)  # unbiased, as PyTorch


def _gluon_style_posedual_file(path):
    """A state dict laid out as resnet18_5c_gluon_posedual.pth (reference lib/models/pose_resnet.py): two ImageNet
    backbones under ``resnet.`` and ``resnet2.``, no pose heads, classifier keys kept."""
    one = tr.randomise(tr.PoseResNet(18), seed=11)
    two = tr.randomise(tr.PoseResNet(18), seed=12)
    state = {}
    for prefix, model in (("resnet.", one), ("resnet2.", two)):
        for k, v in model.state_dict().items():
            if not k.startswith(("deconv", "final")):
                state[prefix + k] = v
        state[prefix + "fc.weight"] = torch.zeros(1000, 512)
    torch.save(state, path)
    return one, two


def test_gluon_style_posedual_file_fills_net1_and_net2_from_their_own_backbones(tmp_path):
    one, two = _gluon_style_posedual_file(tmp_path / "resnet18_5c_gluon_posedual.pth")
    nets = [pose_resnet(18, (64, 64, 3), 24, name=f"net{i}") for i in (1, 2)]
    heads = [net.get_layer("final_layer").get_weights()[0].copy() for net in nets]
    reports = convert.load_into(nets, str(tmp_path / "resnet18_5c_gluon_posedual.pth"), "resnet")
    assert [r.source for r in reports] == ["net1", "net2"] and all(not r.missing for r in reports)
    for net, ref in zip(nets, (one, two)):
        np.testing.assert_array_equal(net.get_layer("layer4__1__conv2").get_weights()[0],
                                      ref.layer4[1].conv2.weight.detach().numpy().transpose(2, 3, 1, 0))
    for net, before in zip(nets, heads):   # heads keep the reference's N(0, 0.001) init
        np.testing.assert_array_equal(net.get_layer("final_layer").get_weights()[0], before)
    # a single-network method (PoseCons) given the same file takes the resnet.* backbone, as the reference
    single = [pose_resnet(18, (64, 64, 3), 24, name="net1")]
    convert.load_into(single, str(tmp_path / "resnet18_5c_gluon_posedual.pth"), "resnet")
    np.testing.assert_array_equal(single[0].get_layer("conv1").get_weights()[0],
                                  one.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_training_build_loads_pretrained_into_both_nets_and_says_so(tmp_path, capsys):

    from posedual_tf.task import PoseTask

    one, two = _gluon_style_posedual_file(tmp_path / "resnet18_5c_gluon_posedual.pth")
    cfg = config.load("coco1k_dual", ["data.image_size=[64,64]", "data.heatmap_size=[16,16]",
                                      f"model.weights_dir={tmp_path}"])
    assert cfg.model.pretrained == f"{tmp_path}/resnet18_5c_gluon_posedual.pth"
    nets = PoseTask(cfg).build_model(steps_per_epoch=10, labelled_ids=range(24)).nets
    log = capsys.readouterr().out
    assert "resnet18_5c_gluon_posedual.pth" in log and "net1 " in log and "net2 " in log and "resnet2.*" in log
    for net, ref in zip(nets, (one, two)):
        np.testing.assert_array_equal(net.get_layer("conv1").get_weights()[0],
                                      ref.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    cfg = config.load("coco1k_dual", ["data.image_size=[64,64]", "data.heatmap_size=[16,16]", "model.pretrained=none"])
    PoseTask(cfg).build_model(steps_per_epoch=10, labelled_ids=range(24))
    assert "model.pretrained: none: net1, net2 start from random weights" in capsys.readouterr().out


def test_paper_train_command_without_the_weights_file_stops_at_once_naming_it(tmp_path):
    import time

    start = time.time()
    out = subprocess.run([sys.executable, "-m", "posedual_tf.train", "--config", "coco1k_dual",
                          f"--set=workdir={tmp_path}/run"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1          # no TensorFlow start-up lines, no traceback
    last = out.stderr.strip()
    assert last.startswith("error: model.pretrained: models/pytorch/imagenet/resnet18_5c_gluon_posedual.pth not found")
    assert "xierc/Semi_Human_Pose" in last and "--set model.pretrained=none" in last
    assert time.time() - start < 60
    assert not (tmp_path / "run").exists()          # stopped before any data or workdir work


def test_checkpoint_without_net2_names_the_flag_that_exists(tmp_path):
    ref = tr.randomise(tr.PoseResNet(18), seed=13)
    torch.save({"resnet." + k: v for k, v in ref.state_dict().items()}, tmp_path / "cons.pth")
    nets = [pose_resnet(18, (64, 64, 3), 24, name=f"net{i}") for i in (1, 2)]
    with pytest.raises(convert.ConversionError, match=r"pass --allow-missing to keep") as err:
        convert.load_into(nets, str(tmp_path / "cons.pth"), "resnet")
    flag = str(err.value).split("pass --")[1].split()[0]
    flag = "--" + flag.replace("-", "_")                          # the other spelling works too
    # the flag the message names is one convert_torch accepts, and it does what it says
    out = subprocess.run([sys.executable, "-m", "posedual_tf.convert_torch", "--config", "coco1k_dual",
                          "--set=data.image_size=[64,64]", "--set=data.heatmap_size=[16,16]", "--checkpoint",
                          str(tmp_path / "cons.pth"), "--output", str(tmp_path / "out"), flag],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "net2: 0 tensors matched, 1 missing" in out.stdout
