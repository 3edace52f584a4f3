"""Configs (every named experiment validates; overrides; named errors) and joint sets."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from posedual_tf import config, joints

PAPER = ["coco1k_sup", "coco1k_cons", "coco1k_dual", "coco1k_dual_jointcut", "coco1k_dual_randaug", "coco5k_sup",
         "coco5k_dual", "coco10k_sup", "coco10k_dual", "coco_wild_dual_res50", "coco_wild_dual_res101",
         "coco_wild_dual_res152", "coco_wild_dual_hrnet_w48_384x288", "coco_sup_res50", "coco_sup_hrnet_w48",
         "mpii_aic_dual_res18"]


@pytest.mark.parametrize("name", config.available())
def test_every_config_loads(name):
    cfg = config.load(name)
    assert cfg.name == name
    assert cfg.model.num_joints == 24
    assert cfg.data.image_size[0] * cfg.data.heatmap_size[1] == cfg.data.image_size[1] * cfg.data.heatmap_size[0]


def test_paper_configs_exist_and_reproduce_reference_table():
    assert set(PAPER) <= set(config.available())
    c = config.load("coco1k_dual_jointcut")
    assert (c.method.name, c.method.mask_joint_num, c.train.epochs, c.train.lr_step) == ("dual", 5, 70, [50, 60])
    assert c.data.labelled.max_instances == 1000 and c.method.sup_weight == 0.5
    r = config.load("coco1k_dual_randaug")
    assert r.method.rand_aug and r.method.rand_magnitude == 20
    h = config.load("coco_wild_dual_hrnet_w48_384x288")
    assert (h.model.backbone, h.model.hrnet_width, h.data.image_size, h.data.heatmap_size, h.data.sigma,
            h.train.batch_size, h.train.epochs, h.train.lr_step) == ("hrnet", 48, [288, 384], [72, 96], 3.0, 8, 300, [220, 260])
    m = config.load("mpii_aic_dual_res18")
    assert (m.data.labelled.source, m.data.unlabelled.source, m.data.image_size, m.train.lr_step) == \
        ("mpii", "aic", [256, 256], [50, 70])
    for name in PAPER:  # paper configs reproduce the reference: no oddity fixed
        assert not any(vars(config.load(name).fixes).values()), name


#: MODEL.PRETRAINED of every reference yaml (reference experiments/ yamls), and the published baselines' files.
PRETRAINED = {
    "coco1k_cons": "resnet18-5c106cde.pth", "coco1k_dual": "resnet18_5c_gluon_posedual.pth",
    "coco1k_dual_jointcut": "resnet18_5c_gluon_posedual.pth", "coco1k_dual_randaug": "resnet18_5c_gluon_posedual.pth",
    "coco5k_dual": "resnet18_5c_gluon_posedual.pth", "coco10k_dual": "resnet18_5c_gluon_posedual.pth",
    "coco_wild_dual_res50": "resnet50-19c8e357.pth", "coco_wild_dual_res101": "resnet101-5d3b4d8f.pth",
    "coco_wild_dual_res152": "resnet152-b121ed2d.pth", "coco_wild_dual_hrnet_w48_384x288": "hrnet_w48-8ef0771d.pth",
    "mpii_aic_dual_res18": "resnet18-5c106cde.pth", "coco1k_sup": "resnet18-5c106cde.pth",
    "coco5k_sup": "resnet18-5c106cde.pth", "coco10k_sup": "resnet18-5c106cde.pth",
    "coco_sup_res50": "resnet50-19c8e357.pth", "coco_sup_hrnet_w48": "hrnet_w48-8ef0771d.pth",
}


def test_every_paper_config_starts_from_the_reference_weights_file():
    assert set(PRETRAINED) == set(PAPER) | {"coco1k_sup", "coco5k_sup", "coco10k_sup", "coco_sup_res50",
                                            "coco_sup_hrnet_w48"}
    for name, file in PRETRAINED.items():
        assert config.load(name).model.pretrained == f"models/pytorch/imagenet/{file}", name
    moved = config.load("coco1k_dual", ["model.weights_dir=/w/"])
    assert moved.model.pretrained == "/w/resnet18_5c_gluon_posedual.pth"
    for name in ("demo_sup", "demo_cons", "demo_dual"):
        assert config.load(name).model.pretrained == "none"


def test_supervised_baselines_are_like_for_like():
    for n, dual in (("1", "coco1k_dual"), ("5", "coco5k_dual"), ("10", "coco10k_dual")):
        sup, d = config.load(f"coco{n}k_sup"), config.load(dual)
        assert sup.train.steps_per_epoch == 4682 == -(-149813 // 32)
        assert sup.data.labelled_sampling == "replacement"          # as PoseDual's supervised branch draws
        assert (sup.train.epochs, sup.train.lr_step, sup.train.batch_size) == (d.train.epochs, d.train.lr_step, 32)
        assert sup.data.labelled.max_instances == d.data.labelled.max_instances
        assert (sup.data.rot_factor, sup.data.scale_factor) == (d.data.rot_factor, d.data.scale_factor)
    assert config.load("coco1k_cons").train.steps_per_epoch == 0
    r50 = config.load("coco_sup_res50")        # SimpleBaseline 256x192_d256x3_adam_lr1e-3
    assert (r50.data.rot_factor, r50.data.scale_factor, r50.data.prob_half_body, r50.data.color_rgb,
            r50.train.batch_size, r50.train.epochs, r50.train.lr_step) == (40.0, 0.3, 0.0, False, 128, 140, [90, 120])
    hr = config.load("coco_sup_hrnet_w48")     # HRNet w48_384x288_adam_lr1e-3
    assert (hr.data.rot_factor, hr.data.scale_factor, hr.data.prob_half_body, hr.data.num_joints_half_body,
            hr.data.color_rgb, hr.data.sigma, hr.train.batch_size, hr.train.epochs, hr.train.lr_step) == \
        (45.0, 0.35, 0.3, 8, True, 3.0, 96, 210, [170, 200])


def test_inheritance_states_only_differences():
    base, child = config.load("coco1k_dual"), config.load("coco5k_dual")
    assert child.data.labelled.max_instances == 5000
    assert child.data.unlabelled.records == base.data.unlabelled.records


@pytest.mark.parametrize("text,key,value", [
    ("train.batch_size=8", ("train", "batch_size"), 8),
    ("train.lr=5e-4", ("train", "lr"), 5e-4),
    ("test.flip_test=true", ("test", "flip_test"), True),
    ("train.lr_step=[3, 4]", ("train", "lr_step"), [3, 4]),
    ("data.sigma=3", ("data", "sigma"), 3.0),
    ("test.post_process=dark", ("test", "post_process"), "dark"),
])
def test_overrides_parse(text, key, value):
    cfg = config.load("coco1k_dual", [text])
    got = getattr(getattr(cfg, key[0]), key[1])
    assert got == value and type(got) is type(value)


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("base: coco1k_dual\ntrain:\n  batchsize: 3\n")
    with pytest.raises(config.ConfigError, match=r"bad\.yaml: unknown key 'train\.batchsize'"):
        config.load(str(p))
    with pytest.raises(config.ConfigError, match=r"--set model\.colour=1: unknown key 'model\.colour'"):
        config.load("coco1k_dual", ["model.colour=1"])


def test_wrong_type_and_bad_value_are_named(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("train:\n  epochs: ten\n")
    with pytest.raises(config.ConfigError, match=r"typo\.yaml: train\.epochs: expected int, got 'ten'"):
        config.load(str(p))
    with pytest.raises(config.ConfigError, match=r"method\.name: expected one of"):
        config.load("coco1k_dual", ["method.name=triple"])
    with pytest.raises(config.ConfigError, match=r"data\.heatmap_size: expected the same aspect"):
        config.load("coco1k_dual", ["data.heatmap_size=[48,48]"])
    assert "\n" not in str(pytest.raises(config.ConfigError, config.load, "nope_such_config").value)


def test_config_cli_prints_resolved(capsys):
    config.main(["--config", "coco1k_dual", "--set", "train.epochs=2"])
    out = capsys.readouterr().out
    assert "epochs: 2" in out and "name: coco1k_dual" in out


# ---------------------------------------------------------------------------------- joints

def test_coco_union_round_trip_is_identity():
    k = np.random.default_rng(0).normal(size=(5, 17, 3))
    np.testing.assert_array_equal(joints.COCO.from_union_array(joints.COCO.to_union_array(k)), k)


@pytest.mark.parametrize("jset", [joints.COCO, joints.MPII, joints.AIC, joints.UNION])
def test_flip_pairs_are_an_involution(jset):
    perm = np.arange(jset.num_joints)
    for a, b in jset.flip_pairs:
        perm[a], perm[b] = b, a
    np.testing.assert_array_equal(perm[perm], np.arange(jset.num_joints))
    for a, b in jset.flip_pairs:  # a pair swaps left and right names
        na, nb = jset.names[a], jset.names[b]
        assert na[0] in "lr" and nb[0] in "lr" and na[0] != nb[0] and na[1:] == nb[1:]


def test_mappings_agree_with_reference():
    assert joints.COCO.to_union == (11, 21, 20, 23, 22, 14, 17, 15, 18, 16, 19, 4, 1, 5, 2, 6, 3)
    assert joints.MPII.to_union == (3, 2, 1, 4, 5, 6, 0, 8, 10, 13, 19, 18, 17, 14, 15, 16)
    assert joints.AIC.to_union == (17, 18, 19, 14, 15, 16, 1, 2, 3, 4, 5, 6, 13, 9)
    u2a = [-1, 12, 14, 16, 11, 13, 15, -1, -1, -1, -1, 0, -1, -1, 5, 7, 9, 6, 8, 10, 2, 1, 4, 3]
    assert list(joints.COCO.from_union) == u2a
    assert sorted(joints.UNION_FLIP_PAIRS) == [(1, 4), (2, 5), (3, 6), (14, 17), (15, 18), (16, 19), (20, 21), (22, 23)]
    assert not {7, 12} & set(joints.COCO.to_union + joints.MPII.to_union + joints.AIC.to_union)
    assert joints.COCO_SIGMAS[0] == pytest.approx(0.026) and joints.AIC_DELTAS[0] == pytest.approx(0.02776304)


def test_coco_sigmas_are_pycocotools_own():
    """Every COCO OKS sigma equals the one pycocotools scores keypoints with (its Params default), not only
    the first."""
    from pycocotools.cocoeval import Params

    np.testing.assert_allclose(joints.COCO_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas, rtol=0, atol=1e-12)


def test_non_finite_values_yaml_syntax_and_set_errors_are_named(tmp_path):
    with pytest.raises(config.ConfigError, match=r"^--set train.lr=.inf: train.lr: expected a finite float, got inf$"):
        config.load("coco1k_dual", ["train.lr=.inf"])
    with pytest.raises(config.ConfigError, match=r"^--set data.sigma=.nan: data.sigma: expected a finite float"):
        config.load("coco1k_dual", ["data.sigma=.nan"])
    # a cross-field check blames the --set that broke it, not the file
    with pytest.raises(config.ConfigError, match=r"^--set data.heatmap_size=\[10,10\]: data.heatmap_size: expected "
                                                 r"the same aspect ratio"):
        config.load("coco1k_dual", ["data.heatmap_size=[10,10]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: coco1k_dual\ntrain:\n  lr_step: [20, 25\n  epochs: 3\n")
    with pytest.raises(config.ConfigError, match=rf"^{bad}: line 4, column \d+: not valid YAML: "):
        config.load(str(bad))


def test_xla_jit_compile_takes_yaml_booleans(tmp_path):
    """``train.jit_compile: true`` (a YAML boolean) is the string setting, in a file and in --set."""
    assert config.load("demo_dual", ["train.jit_compile=true"]).train.jit_compile == "true"
    assert config.load("demo_dual", ["train.jit_compile=false"]).train.jit_compile == "false"
    path = tmp_path / "x.yaml"
    path.write_text("base: demo_dual\ntrain:\n  jit_compile: true\n")
    assert config.load(str(path)).train.jit_compile == "true"
    with pytest.raises(config.ConfigError, match="train.jit_compile: expected one of 'auto', 'true', 'false'"):
        config.load("demo_dual", ["train.jit_compile=1"])
    # a boolean never passes for a setting whose choices are not true/false
    with pytest.raises(config.ConfigError, match="train.strategy"):
        config.load("demo_dual", ["train.strategy=true"])


#: overrides that bring a rule of config.RELEVANCE to the state no packaged config is in
_TOGGLE = {"test.oks_thre": ["test.nms=none"], "method.conf_thresh": ["method.conf_masking=true"],
           "data.num_joints_half_body": ["data.prob_half_body=0.3"], "train.lr_factor": ["train.lr_step=[]"]}


def test_every_setting_that_other_settings_make_meaningless_is_one_line_when_set():
    """#41 rule 3 for settings: every rule of ``config.RELEVANCE``, in every packaged config (and with the
    overrides of _TOGGLE): setting the key to the value it already has is one line naming the rule
    where the rule says it does not apply, and loads where it does; each rule is seen both ways."""
    import json

    def value(cfg, key):
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        return node

    seen: dict[str, set] = {}
    for rule, applies, why in config.RELEVANCE:
        for name in config.available():
            for extra in ([], _TOGGLE.get(rule, [])):
                try:
                    base = config.load(name, extra)
                except config.ConfigError:          # the toggle itself means nothing here (a supervised config)
                    continue
                key = rule if not dataclasses.is_dataclass(value(base, rule)) else rule + ".records"
                text = f"{key}={json.dumps(value(base, key))}"
                if applies(base):
                    config.load(name, extra + [text])
                else:
                    with pytest.raises(config.ConfigError) as e:
                        config.load(name, extra + [text])
                    assert str(e.value) == f"--set {text}: {rule}: {why}; nothing was done"
                seen.setdefault(rule, set()).add(applies(base))
    assert all(states == {True, False} for states in seen.values()), seen


@pytest.mark.parametrize("name, sets, rule", [
    ("coco1k_sup", ["data.unlabelled.records=data/coco/unlabeled2017"], "data.unlabelled"),
    ("coco1k_dual", ["method.rand_magnitude=20"], "method.rand_magnitude"),
    ("coco_sup_hrnet_w48", ["model.depth=50"], "model.depth"),
])
def test_the_overrides_users_tried_are_refused(name, sets, rule):
    with pytest.raises(config.ConfigError, match=f"^--set {sets[0]}: {rule}: only "):
        config.load(name, sets)


def test_assigning_a_loaded_config_checks_as_an_override_does():
    """#42 (8): ``cfg.train.lr = 'fast'`` is the same one-line error as ``--set train.lr=fast``; the config is
    left as it was; a good value is taken (coerced as YAML's would be)."""
    import dataclasses

    from posedual_tf import config

    cfg = config.load("coco1k_dual")
    cases = [("train", "lr", "fast", "cfg.train.lr = 'fast': train.lr: expected float, got 'fast'"),
             ("train", "batch_size", -3, "cfg.train.batch_size = -3: train.batch_size: expected a positive int up to "
                                         "65536"),
             ("method", "name", "x", "cfg.method.name = 'x': method.name: expected one of 'supervised', 'cons', "
                                     "'dual', got 'x'"),
             ("data", "sigma", 0.0, "cfg.data.sigma = 0.0: data.sigma: expected a positive float"),
             ("test", "flip_test", "yes", "cfg.test.flip_test = 'yes': test.flip_test: expected bool, got 'yes'")]
    for section, name, value, message in cases:
        before = getattr(getattr(cfg, section), name)
        with pytest.raises(config.ConfigError) as e:
            setattr(getattr(cfg, section), name, value)
        assert str(e.value) == message
        assert getattr(getattr(cfg, section), name) == before
    with pytest.raises(config.ConfigError) as e:            # the same value as an override: the same words
        config.load("coco1k_dual", ["train.lr=fast"])
    assert str(e.value).split(": ", 1)[1] == message_of(cases, "lr")
    with pytest.raises(config.ConfigError, match=r"^cfg.train.lrr: unknown key 'train.lrr'; expected one of "):
        cfg.train.lrr = 0.1
    with pytest.raises(config.ConfigError, match=r"^cfg.train = <TrainConfig>: train.epochs: expected a positive int$"):
        cfg.train = dataclasses.replace(cfg.train, epochs=0)
    cfg.train.lr = 2
    assert cfg.train.lr == 2.0 and isinstance(cfg.train.lr, float)
    cfg.train = dataclasses.replace(cfg.train, epochs=3)
    assert cfg.train.epochs == 3
    with pytest.raises(config.ConfigError):                   # the new section checks its assignments too
        cfg.train.epochs = 0
    # a key checked with another waits for it (an assignment checks its own key); the task checks all
    cfg.data.image_size = [64, 96]
    with pytest.raises(config.ConfigError, match=r"^coco1k_dual: data.heatmap_size: expected the same aspect ratio"):
        config.check(cfg)
    cfg.data.heatmap_size = [16, 24]
    config.check(cfg)


def message_of(cases, name):
    return next(m for _, n, _, m in cases if n == name).split(": ", 1)[1]
