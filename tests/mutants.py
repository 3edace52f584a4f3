"""Seeded bugs that the suite must catch: ``python tests/mutants.py`` applies each mutation in a temporary
copy of the repository, runs the tests named for it there and prints killed / survived.

Not part of the suite (each mutant starts TensorFlow again: about 20-40 s each on 2 cores, some minutes
for the ones that train). Its last output is in docs/testing.md, which also says how to add a mutant.

    python tests/mutants.py                  # every mutant
    python tests/mutants.py --only nms_kept_area,jc_without_replacement
    python tests/mutants.py --list

A mutant is (name, file, original text, mutated text, tests). The original text must occur exactly once
in the file; the tests are pytest node ids run with ``-x``. Killed = the tests fail (pytest exit 1);
survived = they pass; anything else (the text is gone, a collection error) is reported as an error,
since it says nothing about the tests. The exit status is 0 only when every mutant is killed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
#: left out of the copy: at the repository's root, and anywhere
SKIP_ROOT = {".git", ".venv", ".venv-ci", "runs", "build", "data", "exported", ".whl", ".gl"}
SKIP_ANY = {"__pycache__", ".pytest_cache"}


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    what: str


def m(name, file, original, mutated, tests, what):
    return Mutant(name, file, original, mutated, tuple([tests] if isinstance(tests, str) else tests), what)


TT, HV, FX, EV = "tests/test_training.py", "tests/test_hard_views.py", "tests/test_fixes.py", "tests/test_evaluation.py"
DT, NL = "tests/test_distribution.py", "tests/test_nothing_lost.py"
OW, RS = "tests/test_ownership.py", "tests/test_resume.py"
RA, RG, MO = "tests/test_randaugment.py", "tests/test_replica_groups.py", "tests/test_monitoring.py"
DS, FB = "tests/test_data_service.py", "tests/test_full_batches.py"
AM = "tests/test_any_machine.py"
DR, HD, RST = "tests/test_draws.py", "tests/test_heads.py", "tests/test_resume_state.py"
OWR, ERN = "tests/test_one_writer.py", "tests/test_errors_named.py"
PW = "tests/test_peer_waits.py"
PA = "tests/test_predict_api.py"

MUTANTS = [
    # ---- the eight that survived the suite before (issue list, in its order)
    m("consistency_all_joints", "posedual_tf/methods/base.py",
      "mse = lambda p: joints_mse(p, target, weight,", "mse = lambda p: joints_mse(p, target, tf.ones_like(weight),",
      f"{TT}::test_one_step_loss_equals_hand_computation",
      "the consistency MSE weighs every union joint (supervises the 7 never-labelled ids)"),
    m("warp_other_align_corners", "posedual_tf/data/view_paths.py",
      "augment.affine_grid_warp(x, theta, views.method.align_corners)",
      "augment.affine_grid_warp(x, theta, not views.method.align_corners)",
      f"{HV}::test_views_and_targets_are_warped_as_torch_grid_sample_on_a_non_square_crop",
      "the batch warp of views and targets uses the other align_corners"),
    m("hole_axes_ignored", "posedual_tf/data/view_paths.py", "swap_axes=not f.hole_axes", "swap_axes=True",
      f"{FX}::test_fixes_hole_axes_draws_rows_with_the_height", "apply_op ignores fixes.hole_axes"),
    m("cutout_axes_ignored", "posedual_tf/data/view_paths.py", "swap_axes=not f.cutout_axes", "swap_axes=True",
      f"{FX}::test_fixes_cutout_axes_clamps_rows_to_the_height", "apply_op ignores fixes.cutout_axes"),
    m("jc_without_replacement", "posedual_tf/data/hard_views.py",
      "choice = gen.uniform([b, num_boxes], 0, j, dtype=tf.int32)",
      "choice = tf.argsort(gen.uniform([b, j]), axis=-1)[:, :num_boxes]",
      f"{HV}::test_joint_cutout_reference_draws_from_all_channels_with_replacement",
      "joint cutout draws its reference joints without replacement"),
    m("ap_labels_swapped", "posedual_tf/evaluation/coco.py", '"AP .5", "AP .75"', '"AP .75", "AP .5"',
      f"{EV}::test_stat_names_match_pycocotools_printed_summary", '"AP .5" and "AP .75" labels swapped'),
    m("nms_kept_area", "posedual_tf/evaluation/coco.py",
      "ovr = oks_iou(kps[i], kps[rest], areas[i], np.asarray(areas)[rest], sigmas)",
      "ovr = oks_iou(kps[i], kps[rest], areas[i], np.full(len(rest), areas[i]), sigmas)",
      f"{EV}::test_oks_nms_with_unequal_areas_uses_the_mean_area_of_the_pair",
      "OKS-NMS uses only the kept instance's area"),
    m("evaluation_drops_box_score", "posedual_tf/evaluation/runner.py",
      '"box_score": float(meta["score"][b])', '"box_score": 1.0',
      f"{EV}::test_evaluation_carries_each_records_detection_score_into_rescoring",
      "rescoring in evaluation drops each person's box score"),
    # ---- train step
    m("teacher_gradient", "posedual_tf/methods/base.py",
      "return tf.stop_gradient(tf.cast(net(images, training=training), tf.float32))",
      "return tf.cast(net(images, training=training), tf.float32)",
      f"{TT}::test_teachers_get_no_gradient", "the teacher pass lets gradients through"),
    m("dual_learns_itself", "posedual_tf/methods/dual.py", "return 1 - n", "return n",
      "tests/test_multiaugs.py::test_multi_path_dual_loss_equals_hand_computation",
      "PoseDual's net n is cut and taught by its own teacher instead of the other net's"),
    m("paths_averaged", "posedual_tf/methods/base.py", "total = tf.add_n(per_path)\n",
      "total = tf.add_n(per_path) / len(per_path)\n",
      "tests/test_multiaugs.py::test_repeated_plain_paths_multiply_the_consistency_and_log_per_path",
      "the consistency loss is averaged over paths (the reference sums)"),
    m("teacher_bn_fix_ignored", "posedual_tf/methods/base.py",
      "training = not self.settings.teacher_bn_inference", "training = True",
      f"{FX}::test_fixes_teacher_bn_inference_uses_and_keeps_the_running_statistics",
      "fixes.teacher_bn_inference no longer reaches the teacher pass"),
    m("adam_keras_epsilon", "posedual_tf/methods/optimizer.py", "self.epsilon * root2", "self.epsilon",
      f"{TT}::test_adam_matches_torch_for_100_steps_including_tiny_gradients",
      "Adam adds epsilon before the bias correction (Keras') instead of after (torch)"),
    m("lr_milestone_late", "posedual_tf/methods/optimizer.py", "tf.cast(epoch >= m, tf.float32)",
      "tf.cast(epoch > m, tf.float32)",
      f"{TT}::test_learning_rate_steps_at_the_start_of_each_milestone_epoch",
      "the learning rate drops one epoch after each milestone"),
    m("fp16_replicas_disagree", "posedual_tf/methods/base.py", "pairs = agree_on_finite(pairs)", "pass",
      f"{DT}::test_float16_overflow_on_one_replica_skips_the_step_on_both",
      "float16: the replicas do not agree on a non-finite step (Keras checks the first replica only)"),
    m("fp16_skip_not_counted", "posedual_tf/methods/optimizer.py",
      "        self.inner_optimizer.iterations.assign_add(1)", "        pass",
      f"{DT}::test_float16_overflow_on_one_replica_skips_the_step_on_both",
      "float16: a skipped step is not counted in the global step"),
    # ---- hard views
    m("mixup_half_beta", "posedual_tf/data/hard_views.py", "(g[0] / (g[0] + g[1])) / 4.0",
      "(g[0] / (g[0] + g[1])) / 2.0", f"{HV}::test_mixup_weight_is_one_minus_a_quarter_beta",
      "MixUp's lambda is 1 - Beta/2 instead of 1 - Beta/4"),
    m("cutmix_no_partner", "posedual_tf/data/hard_views.py",
      "return tf.where(_holes_mask(images, draws)[..., None], tf.gather(images, draws.perm), images)",
      "return tf.where(_holes_mask(images, draws)[..., None], images, images)",
      f"{HV}::test_cutmix_copies_the_same_region_of_the_permuted_sample",
      "CutMix fills its holes from the sample itself"),
    m("jo_axes_ignored", "posedual_tf/data/view_paths.py", "transposed=not f.jo_axes", "transposed=True",
      f"{FX}::test_fixes_jo_axes_puts_the_box_at_the_joint", "apply_op ignores fixes.jo_axes"),
    # ---- codec
    m("target_floor_always", "posedual_tf/codec.py",
      "tf.cast(tf.floor(v), tf.int32) if floor_rounding else tf.cast(v, tf.int32)",
      "tf.cast(tf.floor(v), tf.int32)", f"{FX}::test_fixes_target_rounding_floors_negative_centres",
      "heatmap centres are always floored (the reference truncates)"),
    m("shift_bound_ignored", "posedual_tf/codec.py", "lo = 0 if wide_bound else 1", "lo = 1",
      f"{FX}::test_fixes_shift_bound_refines_a_peak_at_column_1", "fixes.shift_bound no longer widens the bound"),
    m("flip_back_no_swap", "posedual_tf/codec.py", "    if perm is not None:\n        flipped = tf.gather(",
      "    if False:\n        flipped = tf.gather(", "tests/test_geometry_codec.py::test_flip_back_maps_each_joint_to_its_partner",
      "flip test does not swap left and right joints"),
    # ---- data
    m("crop_joints_not_flipped", "posedual_tf/data/pipeline.py", "joints = tf.where(flip, fj, joints)",
      "joints = joints", "tests/test_pipeline.py::test_labelled_targets_peak_at_crop_joints",
      "a flipped crop keeps the unflipped joints (targets off the mirrored person)"),
    # ---- evaluation
    m("rescore_without_box_score", "posedual_tf/evaluation/coco.py",
      'score=float(kpt_score * inst.get("box_score", 1.0))', "score=float(kpt_score)",
      f"{EV}::test_rescoring_is_box_score_times_mean_confident_joint_score", "rescoring ignores the box score"),
    m("pckh_threshold", "posedual_tf/evaluation/mpii.py", "THRESHOLD = 0.5", "THRESHOLD = 0.6",
      f"{EV}::test_pckh_hand_built", "PCKh at 0.6 of the head size instead of 0.5"),
    m("pckh_fix_ignored", "posedual_tf/evaluation/runner.py", "at_0_1=0.1 if t.pckh_at_0_1 else 0.11",
      "at_0_1=0.11", f"{FX}::test_fixes_pckh_at_0_1_reports_mean_at_0_10",
      "fixes.pckh_at_0_1 no longer reaches PCKh"),
    # ---- resume
    m("resume_restarts_the_stream", "posedual_tf/training.py", "ds = task.build_inputs(strategy, counter, start_step,\n                               full=bool(model.method.jit_compile) and task.cfg.train.fill_short_batches)",
      "ds = task.build_inputs(strategy, counter, 0,\n                               full=bool(model.method.jit_compile) and task.cfg.train.fill_short_batches)",
      f"{TT}::test_kill_at_a_mid_epoch_step_resumes_to_the_same_weights",
      "a run resumed mid-epoch reads its input from the epoch's start again"),
    # ---- XLA
    m("rng_auto_select", "posedual_tf/data/augment.py", 'ALG = "philox"', 'ALG = "auto_select"',
      "tests/test_xla.py::test_xla_hard_views_equal_the_views_without_xla",
      "stateless draws leave the algorithm to the device: XLA draws other hard views"),
    m("gamma_without_boost", "posedual_tf/data/augment.py", "        if a < 1.0:\n            g = g * tf.exp(",
      "        if False:\n            g = g * tf.exp(",
      "tests/test_hard_views.py::test_xla_gamma_draws_follow_the_gamma_distribution_and_compile",
      "Gamma draws for alpha < 1 skip the U^(1/alpha) boost (MixUp's Beta(0.2, 0.2) becomes Beta(1.2, 1.2))"),
    m("warp_gather_off_by_one", "posedual_tf/geometry.py", "top = (1.0 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1.0)",
      "top = (1.0 - fx) * tap(y0, x0) + fx * tap(y0, x0)",
      "tests/test_geometry_codec.py::test_xla_gather_warp_equals_the_projective_transform_and_compiles",
      "the gather warp reads the wrong right-hand neighbour"),
    # ---- clusters
    m("auto_ignores_chief", "posedual_tf/distribution.py", 'TRAINING_ROLES = ("chief", "worker")',
      'TRAINING_ROLES = ("worker",)', f"{DT}::test_chief_and_worker_train_together_and_only_the_chief_writes",
      "train.strategy=auto counts only TF_CONFIG's workers: a chief and a worker each train alone"),
    m("every_worker_writes", "posedual_tf/training.py", "    if distribution.is_chief(strategy):\n", "    if True:\n",
      f"{DT}::test_multi_worker_two_processes_on_localhost",
      "every worker of a cluster writes the workdir"),
    # ---- converters
    m("visibility_unchecked", "posedual_tf/conversion/annotations.py", "if not np.isin(k[2::3], visibility).all():",
      "if False:", "tests/test_converter_strictness.py::test_coco_malformed_annotation_is_skipped_and_listed",
      "converters accept keypoint visibilities outside {0, 1, 2}"),
    m("coco_visibility_kept", "posedual_tf/conversion/coco.py", "kp[:, 2] = np.minimum(kp[:, 2], 1.0)", "pass",
      "tests/test_tfrecords.py::test_coco_records_match_annotations",
      "the COCO converter keeps visibility 2 instead of min(v, 1)"),
    # ---- nothing lost, part 2 (the ownership rule, the path rule, CRC, EXIF, lock, resume, sigmas)
    m("own_replaces_unlisted", "posedual_tf/files.py", "        if os.path.lexists(os.path.join(folder, name)):\n            raise NotOursError",
      "        if False:\n            raise NotOursError", f"{OW}::test_case04_evaluate_output_keeps_user_files",
      "a name not on a folder's ownership list is replaced"),
    m("claim_takes_a_users_folder", "posedual_tf/files.py", "        if names:\n", "        if False:\n",
      f"{OW}::test_case06_train_refuses_a_users_folder_as_workdir",
      "a folder holding files and no ownership list is written into"),
    m("shards_by_name_pattern", "posedual_tf/conversion/writer.py",
      "if os.path.lexists(path) and os.path.basename(path) not in owned:", "if False:",
      f"{OW}::test_case02_converter_keeps_another_tools_shards", "a converter overwrites another tool's shard"),
    m("file_names_leave_images", "posedual_tf/files.py", 'if any(p in ("", ".", "..") for p in parts):',
      "if False:", f"{OW}::test_case08_coco_file_names_are_read_only_inside_images",
      "a file name with '..' is read from outside --images"),
    m("crc_unchecked", "posedual_tf/data/record_index.py", "if masked_crc(payload) != crc:", "if False:",
      f"{NL}::test_case09_a_damaged_byte_range_inside_a_record_is_detected",
      "records read by offset skip their CRC"),
    m("exif_ignored", "posedual_tf/inference.py", "    if orientation != 1:", "    if False:",
      "tests/test_export.py::test_case12_exif_orientation_is_applied_by_predict_and_ignored_by_records",
      "predict feeds a sideways phone photo to the model"),
    m("lock_shared", "posedual_tf/files.py", "fcntl.LOCK_EX | fcntl.LOCK_NB", "fcntl.LOCK_SH | fcntl.LOCK_NB",
      "tests/test_one_writer.py", "two trainings share a workdir"),
    m("resume_takes_any_setting", "posedual_tf/resume.py",
      'if key.split(".")[0] in ("model", "data", "method", "fixes") or key in RESUME_FIXED_TRAIN:',
      'if key.split(".")[0] in ("model", "data"):',
      f"{RS}::test_case17_resume_states_changed_settings_refuses_meaning_changes_and_follows_a_moved_workdir",
      "a resumed run silently takes another batch size or epoch length"),
    m("custom_set_coco_sigmas", "posedual_tf/evaluation/runner.py",
      "return coco.evaluate_coco(results, ann, sigmas=sigmas), results", "return coco.evaluate_coco(results, ann), results",
      f"{NL}::test_case14b_crowdpose_style_set_converts_trains_and_evaluates_with_its_own_sigmas",
      "a custom joint set is scored with COCO's 17 sigmas"),
    # ---- #26: RandAugment / TrivialAugment equal to Pillow, chain-mode hole counts
    m("ra_factor_in_float32", "posedual_tf/data/augment.py",
      "fac = tf.where(negative, tf.constant(1 - v, tf.float32), tf.constant(1 + v, tf.float32))",
      "fac = 1.0 + tf.where(negative, -tf.constant(v, tf.float32), tf.constant(v, tf.float32))",
      f"{RA}::test_every_rand_augment_op_magnitude_and_sign_equals_pillow",
      "the RA enhancer factor 1 - v computed in float32 (0.39999998 for 0.4), not as Pillow's double"),
    m("autocontrast_rounds", "posedual_tf/data/augment.py",
      "out = tf.clip_by_value(tf.floor(x * scale + (-lo * scale)), 0.0, 255.0)",
      "out = tf.clip_by_value(tf.floor((x - lo) * scale + 0.5), 0.0, 255.0)",
      f"{RA}::test_every_trivial_augment_op_and_level_equals_pillow",
      "AutoContrast rounds where Pillow truncates"),
    m("grey_in_float", "posedual_tf/data/augment.py",
      "luma = i[..., 0] * 19595 + i[..., 1] * 38470 + i[..., 2] * 7471 + 0x8000",
      "luma = tf.cast(tf.floor((0.299 * tf.cast(i[..., 0], tf.float32) + 0.587 * tf.cast(i[..., 1], tf.float32) "
      "+ 0.114 * tf.cast(i[..., 2], tf.float32) + 0.5) * 65536.0), tf.int32)",
      f"{RA}::test_every_trivial_augment_op_and_level_equals_pillow",
      "the grey of Color/Contrast in float weights instead of Pillow's 16-bit fixed point"),
    m("smooth_rounded_conv", "posedual_tf/data/augment.py",
      "ss = 0.5 + row(img[2:], _SMOOTH_SIDE)", "ss = 0.5 + row(img[:-2], _SMOOTH_SIDE) * 1.0000001",
      f"{RA}::test_every_trivial_augment_op_and_level_equals_pillow",
      "Sharpness' smoothed image summed in another order (one float32 rounding apart)"),
    m("chain_co_default_holes", "posedual_tf/data/view_paths.py",
      "if not f.hole_counts and dual and multi:", "if not f.hole_counts and dual:",
      f"{HV}::test_hole_counts_follow_the_reference_table",
      "a dual chain-mode CO path takes random_cutout's 4 holes instead of MASK_HOLES_NUM_CO"),
    m("groups_one_bn_batch", "posedual_tf/models/bn_groups.py",
      'parts = getattr(_LOCAL, "groups", None)', "parts = None",
      (f"{RG}::test_group_batch_norm_normalises_each_group_and_keeps_the_first_groups_statistics",
       f"{RG}::test_one_device_with_four_groups_equals_four_replicas_of_one_group"),
      "train.replica_batch leaves BatchNorm over the whole replica batch"),
    m("groups_last_group_stats", "posedual_tf/models/bn_groups.py",
      "mean, var = pieces[0][1], pieces[0][2]", "mean, var = pieces[-1][1], pieces[-1][2]",
      (f"{RG}::test_group_batch_norm_normalises_each_group_and_keeps_the_first_groups_statistics",
       f"{RG}::test_one_device_with_four_groups_equals_four_replicas_of_one_group"),
      "the running statistics follow the last group, not DDP's rank 0"),
    m("groups_share_draws", "posedual_tf/methods/base.py",
      "index = 0 if self.settings.shared_draws else tf.cast(replica, tf.int64) * self.groups + group",
      "index = 0 if self.settings.shared_draws else tf.cast(replica, tf.int64) * self.groups",
      (f"{RG}::test_one_device_groups_draw_independently_unless_shared",
       f"{RG}::test_one_device_with_four_groups_equals_four_replicas_of_one_group"),
      "the groups of one device draw alike"),
    m("groups_views_over_the_batch", "posedual_tf/methods/base.py",
      "        if groups == 1:\n            return self._group_views(rng(0), unl, teachers)",
      "        if groups >= 1:\n            return self._group_views(rng(0), unl, teachers)",
      f"{RG}::test_one_device_with_four_groups_equals_four_replicas_of_one_group",
      "CutMix/MixUp/JO permute over the whole device batch, not within each reference GPU's group"),
    m("replicas_share_draws", "posedual_tf/methods/base.py",
      "replica = ctx.replica_id_in_sync_group if ctx is not None else 0", "replica = 0",
      f"{RG}::test_two_replicas_draw_independently_unless_shared",
      "every replica draws the same augmentation (the old M13 claim)"),
    # ---- #27: what TensorBoard and the console show
    m("eval_on_epoch_axis", "posedual_tf/callbacks.py",
      'monitoring.write_eval(self.heads, step, "val"', 'monitoring.write_eval(self.heads, epoch + 1, "val"',
      f"{MO}::test_every_scalar_has_a_name_a_description_and_the_global_step",
      "validation scalars on the epoch axis while training scalars use the global step"),
    m("scalar_without_description", "posedual_tf/monitoring.py",
      "tf.summary.scalar(tag, float(v), description=description)", "tf.summary.scalar(tag, float(v))",
      f"{MO}::test_every_scalar_has_a_name_a_description_and_the_global_step",
      "training scalars without a description"),
    m("progress_line_every_metric", "posedual_tf/monitoring.py",
      "        return text[:79]", "        return text + ' ' + ' '.join(f'{k} {float(v):.4g}' for k, v in (logs or {}).items())",
      f"{MO}::test_console_fits_80_columns_and_has_no_tensorflow_warnings",
      "the console progress line carries every metric (200 columns)"),
    m("step_count_drifts", "posedual_tf/monitoring.py", "        return self._epoch_start + batch + 1\n",
      "        return self._epoch_start + batch + 2\n",
      f"{MO}::test_every_scalar_has_a_name_a_description_and_the_global_step",
      "the callbacks' counted step drifts from the optimizer's (scalars off the global step)"),
    m("eval_traces_every_time", "posedual_tf/evaluation/runner.py", "    if key not in cached:", "    if True:",
      f"{MO}::test_console_fits_80_columns_and_has_no_tensorflow_warnings",
      "every validation compiles its heatmap function anew (TensorFlow's retracing warning on the console)"),
    m("gather_nd_batch_dims", "posedual_tf/codec.py",
      "    return tf.gather(tf.reshape(maps_bjhw, [-1]), rows * (h * w) + y * w + x)",
      "    return tf.gather_nd(maps_bjhw, tf.stack([y, x], axis=-1), batch_dims=2)",
      f"{MO}::test_console_fits_80_columns_and_has_no_tensorflow_warnings",
      "the shift refinement's gather_nd, whose int32 index op prints oneDNN's error line at every evaluation"),
    # ---- #29 in part: serving
    m("export_private_modes", "posedual_tf/files.py", "        fill(tmp)\n        readable_by_others(tmp)\n",
      "        fill(tmp)\n", "tests/test_export.py::test_export_folders_are_readable_by_others_and_tf_serving_layout",
      "export folders keep mkdtemp's 0700: TF Serving running as another user cannot read them"),
    m("detector_any_class", "posedual_tf/detector.py", "if c == self.person_class and s >= self.min_score:",
      "if s >= self.min_score:", "tests/test_export.py::test_detector_of_the_od_api_signature_finds_the_boxes_it_returns",
      "--detector takes every class as a person (the car box too)"),
    m("tflite_float16_is_int8", "posedual_tf/tflite.py",
      "        converter.target_spec.supported_types = [tf.float16]", "        pass",
      "tests/test_tflite.py::test_tflite_float32_and_float16_match_the_saved_model_on_real_crops",
      "--precision float16 writes int8 weights (the converter's dynamic-range default)"),
    m("tflite_int8_decodes_in_int8", "posedual_tf/tflite.py",
      "QuantizationDebugOptions(denylisted_nodes=decode + outputs)", "QuantizationDebugOptions(denylisted_nodes=[])",
      "tests/test_tflite.py::test_tflite_int8_needs_calibration_and_keeps_the_keypoints_on_real_crops",
      "--precision int8 quantises the decoding too (coordinates and scores share one int8 scale)"),
    m("tflite_int8_output_in_int8", "posedual_tf/tflite.py",
      "denylisted_nodes=decode + outputs)", "denylisted_nodes=decode)",
      "tests/test_tflite.py::test_tflite_int8_needs_calibration_and_keeps_the_keypoints_on_real_crops",
      "--precision int8 quantises the output's last concatenation (the keypoints to 1/255 of the crop)"),
    m("workers_share_draws", "posedual_tf/methods/base.py",
      "replica = ctx.replica_id_in_sync_group if ctx is not None else 0",
      "replica = ctx.replica_id_in_sync_group % 1 if ctx is not None else 0",
      "tests/test_distribution.py::test_two_workers_draw_independently",
      "the workers of a cluster draw alike"),
    # ---- #25: the task, the codec, the package API
    m("sources_reopened", "posedual_tf/data/sources.py", "        if role not in self._open:\n",
      "        if True:\n", "tests/test_task.py::test_one_training_run_with_validation_opens_each_source_once_per_role",
      "every use of a role opens its source again (manifest read, shards scanned)"),
    m("task_codec_not_shared", "posedual_tf/task.py", "method = build_method(cfg, nets, ids, heatmaps=self.heatmaps)",
      "method = build_method(cfg, nets, ids)",
      "tests/test_task.py::test_the_task_shares_one_codec_with_its_pipeline_and_validation",
      "the training step encodes targets with its own codec from the config instead of the task's"),
    m("codec_ignores_target_rounding", "posedual_tf/codec.py", "floor_rounding=f.target_rounding,",
      "floor_rounding=False,", f"{FX}::test_fixes_target_rounding_floors_negative_centres",
      "the codec built from a config drops fixes.target_rounding"),
    m("run_keeps_its_precision", "posedual_tf/models/builder.py",
      "        keras.mixed_precision.set_global_policy(before)\n", "        pass\n",
      "tests/test_task.py::test_one_training_run_with_validation_opens_each_source_once_per_role",
      "training.run (and export) leave their dtype policy set for the rest of the process"),
    m("package_imports_tensorflow", "posedual_tf/__init__.py", '__version__ = "0.1.0"\n',
      'import tensorflow  # noqa: F401\n__version__ = "0.1.0"\n',
      "tests/test_docstrings.py::test_the_package_exports_the_api_lazily_and_each_name_has_an_example",
      "import posedual_tf imports TensorFlow (before a command could quiet its start-up lines)"),
    m("demo_imports_the_tools", "posedual_tf/demo.py",
      "    from posedual_tf.conversion import coco, detections, synthetic, writer",
      "    from tfrecords_tools import coco, detections, synthetic, writer",
      "tests/test_layering.py::test_posedual_tf_never_imports_tfrecords_tools",
      "posedual_tf reaches into the converters' command-line package again"),
    m("pipeline_reads_the_config", "posedual_tf/data/pipeline.py",
      "    global_batch = batch_size or settings.batch_size\n    epoch_set",
      "    cfg = settings\n    global_batch = batch_size or cfg.batch_size\n    epoch_set",
      "tests/test_layering.py::test_methods_and_pipelines_take_values_not_the_config",
      "the input pipeline is handed the whole Config again"),
    m("official_model_not_default", "posedual_tf/convert_torch.py",
      "    if checkpoint:\n        return checkpoint\n    if not cfg.test.model_file:",
      "    if True:\n        return checkpoint\n    if not cfg.test.model_file:",
      "tests/test_models.py::test_posedual_checkpoint_fills_both_nets_via_cli",
      "convert_torch without --checkpoint ignores the config's official model (test.model_file)"),
    # ---- #23: filled batches (one compiled shape), XLA's draws
    m("filled_batch_norm_counts_empty_places", "posedual_tf/models/bn_groups.py",
      "    m = tf.cast(mask, tf.float32)[:, None, None, None]\n",
      "    m = tf.ones_like(tf.cast(mask, tf.float32))[:, None, None, None]\n", f"{FB}::test_filled_batch_equals_the_short_batch",
      "BatchNorm of a filled batch takes its statistics over the empty places too"),
    m("filled_groups_share_the_mask", "posedual_tf/models/bn_groups.py",
      "split_groups(mask, *parts) if parts else [mask]",
      "[tf.ones_like(p[:, 0, 0, 0]) for p in xs] if parts else [mask]",
      f"{FB}::test_filled_batch_in_replica_groups_equals_the_short_batch",
      "under train.replica_batch groups, a filled batch's groups take their BatchNorm over every place"),
    m("fill_switch_ignored", "posedual_tf/training.py",
      "full=bool(model.method.jit_compile) and task.cfg.train.fill_short_batches)",
      "full=bool(model.method.jit_compile))",
      f"{FB}::test_training_fills_batches_for_a_compiled_step_unless_told_not_to",
      "train.fill_short_batches=false still fills the batches of a compiled step"),
    m("filled_loss_over_places", "posedual_tf/methods/base.py",
      "        if people is None:\n            return 0.5 * tf.reduce_mean(squares)",
      "        if True:\n            return 0.5 * tf.reduce_mean(squares)",
      f"{FB}::test_filled_batch_equals_the_short_batch",
      "the losses of a filled batch average over its places, not its people"),
    m("filled_partners_among_places", "posedual_tf/data/hard_views.py",
      "    if people is not None:\n        keys = tf.where(", "    if False:\n        keys = tf.where(",
      f"{FB}::test_filled_batches_draw_partners_among_the_people",
      "CutMix and MixUp of a filled batch take empty places as partners"),
    m("task_never_fills", "posedual_tf/task.py", "        if full:\n", "        if False:\n",
      f"{FB}::test_the_task_fills_the_short_last_batch_of_an_epoch",
      "the task hands a compiled step the short last batch of an epoch (a new shape, a new compile)"),
    m("xla_float_draws", "posedual_tf/data/augment.py",
      "        unit = tf.reshape(self._unit(self._words(tf.reduce_prod(shape))), shape)\n",
      "        return tf.random.stateless_uniform(shape, self._next(), minval, 1.0 if maxval is None else maxval, "
      "alg=self.ALG)\n", "tests/test_xla.py::test_xla_draws_equal_the_draws_without_xla_for_a_seed_known_at_run_time",
      "float draws by TensorFlow's kernels, which XLA compiles into other floats for a run-time seed"),
    # ---- #28: the input served by tf.data service workers
    m("service_draws_differ", "posedual_tf/data/pipeline.py",
      "seeds = _element_seeds(tf.constant(size, tf.int64), s.seed + 7, epoch)",
      "seeds = _element_seeds(tf.constant(size, tf.int64), s.seed + 8, epoch)",
      f"{DS}::test_data_service_batches_and_training_equal_the_local_pipeline",
      "the workers' step batches draw other augmentations than the local pipeline"),
    m("service_arrival_order", "posedual_tf/data/service.py", "            waiting[int(step)] = (dropped, batch)\n",
      "            waiting[want + len(waiting)] = (dropped, batch)\n",
      f"{DS}::test_data_service_batches_and_training_equal_the_local_pipeline",
      "the served batches are taken in the order the workers finish them, not in step order"),
    m("service_drop_uncounted", "posedual_tf/data/service.py", "                        counter.report_count(name, int(n))\n",
      "                        pass\n",
      f"{DS}::test_data_service_step_batches_leave_out_a_damaged_person_and_count_it",
      "people the workers dropped are not counted by the run"),
    m("normalise_by_formula_in_the_step", "posedual_tf/codec.py", "        if tf.as_dtype(pixels.dtype) == tf.uint8:\n",
      "        if False:\n", "tests/test_pipeline.py::test_the_step_prepares_bit_for_bit_what_the_pipeline_used_to_ship",
      "uint8 crops are normalised by arithmetic that the compiled step rearranges (not the pipeline's values)"),
    m("crop_channels_in_rgb", "posedual_tf/codec.py", "tf.constant(np.eye(3, dtype=np.float32)[::-1])",
      "tf.constant(np.eye(3, dtype=np.float32))",
      ["tests/test_pipeline.py::test_flip_crop_equals_crop_of_mirrored_image",
       "tests/test_geometry_codec.py::test_grey_levels_are_put_in_the_network_order_by_the_permutation_as_by_a_reverse"],
      "the crop's grey levels are left in RGB where the network reads BGR (the permutation matmul)"),
    m("pixels_truncated", "posedual_tf/data/pipeline.py", "    return tf.cast(crop, tf.uint8)\n",
      "    return tf.cast(crop * 0.999, tf.uint8)\n",
      "tests/test_pipeline.py::test_the_step_prepares_bit_for_bit_what_the_pipeline_used_to_ship",
      "the uint8 crops the pipeline ships lose grey levels"),
    m("no_device_prefetch", "posedual_tf/task.py",
      "return ds.apply(tf.data.experimental.prefetch_to_device(device, buffer_size=2)) if device else ds",
      "return ds", "tests/test_task.py::test_one_replica_batches_wait_on_the_device",
      "one replica's batches stay on the host until the step copies them"),
    # ---- #39: the suite and the library on the machines users have
    m("strided_pointwise_kernel", "posedual_tf/models/layers.py",
      'if (sh, sw) == (1, 1) or tf.config.list_logical_devices("GPU"):', 'if True:',
      AM + "::test_no_strided_1x1_backward_filter_runs_on_the_cpu",
      "a strided 1x1 conv runs oneDNN's strided backward-filter kernel on the CPU (heap corruption on AVX-512)"),
    m("pointwise_subsample_offset", "posedual_tf/models/layers.py", "inputs = inputs[:, ::sh, ::sw, :]",
      "inputs = inputs[:, 1::sh, 1::sw, :]", AM + "::test_strided_pointwise_conv_equals_the_strided_conv_written_in_numpy",
      "the subsampled 1x1 conv reads every second row and column from the second, not the first"),
    m("crash_not_reported", "tests/isolation.py", "            if i.nodeid == crashed:", "            if False:",
      AM + "::test_a_native_crash_is_one_failed_test_naming_the_signal_and_the_suite_goes_on",
      "a test whose child process dies is not reported as failing with its signal"),
    m("crash_ends_the_module", "tests/isolation.py", "                pending.remove(i)\n                break",
      "                pending.clear()\n                break",
      AM + "::test_a_native_crash_is_one_failed_test_naming_the_signal_and_the_suite_goes_on",
      "after a native crash the module's remaining tests are not run in a new child"),
    m("bf16_cap_unchecked", "posedual_tf/distribution.py",
      'if policy != "mixed_bfloat16" or cap not in CAPS_WITHOUT_BF16 or not onednn:', "if True:",
      AM + "::test_bfloat16_under_a_cap_below_its_kernels_is_one_line_and_other_settings_pass",
      "mixed_bfloat16 under a oneDNN cap below its bfloat16 kernels reaches TensorFlow's raw AbortedError"),
    m("cpu_extra_one_tensorflow", "setup.cfg",
      'cpu =\n    tensorflow-cpu==2.21.*; platform_machine == "x86_64" or platform_machine == "AMD64"\n'
      '    tensorflow==2.21.*; platform_machine != "x86_64" and platform_machine != "AMD64"\ngpu =',
      "cpu =\n    tensorflow-cpu==2.21.*\ngpu =",
      AM + "::test_each_extra_resolves_on_each_platform_with_its_tensorflow",
      "the cpu extra pins tensorflow-cpu on every platform (no wheel on macOS arm64 or Linux aarch64)"),
    # ---- #40: draws by their statistics, expected values written in the tests, heads apart, resumed state
    m("hard_rot_coin_inverted", "posedual_tf/data/augment.py",
      "r = tf.where(gen.uniform([batch_size]) <= rot_prob, r, 0.0)", "r = tf.where(gen.uniform([batch_size]) > rot_prob, r, 0.0)",
      DR + "::test_hard_view_affine_follows_method_unsup_rot_prob_and_the_data_ranges",
      "the hard view's rotation coin inverted: 20 % of views rotated at unsup_rot_prob 0.8 (issue #40)"),
    m("crop_always_rotated", "posedual_tf/data/pipeline.py", "rot = tf.where(rng.uniform([]) <= d.rot_prob, rot, 0.0)",
      "rot = tf.where(rng.uniform([]) <= 1.0, rot, 0.0)",
      DR + "::test_crop_rotation_scale_and_flip_follow_the_data_settings",
      "every labelled crop and easy view rotated, whatever data.rot_prob (issue #40)"),
    m("ensemble_is_net1", "posedual_tf/evaluation/runner.py", "0.5 * (hms[0] + hms[1])", "0.5 * (hms[0] + hms[0])",
      HD + "::test_evaluation_decodes_each_net_and_the_mean_of_both",
      "the evaluated ensemble is net 1 (issue #40)"),
    m("flip_coin_biased", "posedual_tf/data/pipeline.py", "flip = (rng.uniform([]) <= 0.5) & d.flip",
      "flip = (rng.uniform([]) <= 0.25) & d.flip", DR + "::test_crop_rotation_scale_and_flip_follow_the_data_settings",
      "crops flipped a quarter of the time, not half"),
    m("crop_scale_lopsided", "posedual_tf/data/pipeline.py",
      "scale = tf.clip_by_value(rng.normal([]) * sf + 1.0, 1.0 - sf, 1.0 + sf)",
      "scale = tf.clip_by_value(rng.normal([]) * sf + 1.0, 1.0 - sf, 1.0 + 2 * sf)",
      DR + "::test_crop_rotation_scale_and_flip_follow_the_data_settings",
      "the crop scale clipped at 1 + 2 scale_factor above"),
    m("crop_rotation_clipped_at_one_sd", "posedual_tf/data/pipeline.py",
      "rot = tf.clip_by_value(rng.normal([]) * rf, -2.0 * rf, 2.0 * rf)", "rot = tf.clip_by_value(rng.normal([]) * rf, -rf, rf)",
      DR + "::test_crop_rotation_scale_and_flip_follow_the_data_settings",
      "the crop rotation clipped at one rot_factor instead of two"),
    m("half_body_coin_inverted", "posedual_tf/data/pipeline.py", "(rng.uniform([]) < d.prob_half_body)",
      "(rng.uniform([]) >= d.prob_half_body)", DR + "::test_half_body_fires_with_its_probability",
      "the half-body crop fires with probability 1 - prob_half_body"),
    m("half_body_threshold_ignored", "posedual_tf/data/pipeline.py", "(tf.reduce_sum(visible) > d.num_joints_half_body)",
      "(tf.reduce_sum(visible) > 0)", DR + "::test_half_body_fires_with_its_probability",
      "the half-body crop ignores data.num_joints_half_body"),
    m("labelled_sampling_always_permutation", "posedual_tf/data/settings.py",
      'return "replacement" if self.mixed else "permutation"', 'return "permutation"',
      DR + "::test_labelled_people_of_a_mixed_epoch_are_drawn_as_data_labelled_sampling_says",
      "labelled people beside unlabelled ones drawn as permutations (the reference draws with replacement)"),
    m("half_body_always_upper", "posedual_tf/data/pipeline.py", "pick_upper = ((rng.normal([]) < 0.5)",
      "pick_upper = ((rng.normal([]) < 9.0)", DR + "::test_half_body_fires_with_its_probability",
      "the half-body crop always takes the upper body (the reference: when N(0, 1) < 0.5)"),
    m("yoco_always_columns", "posedual_tf/data/augment.py", "return tf.where(tf.where(u > 0.5, rows, cols), b, a)",
      "return tf.where(tf.where(u > 1.0, rows, cols), b, a)", DR + "::test_yoco_stitches_rows_or_columns_with_even_odds",
      "YOCO always stitches columns"),
    m("hard_scale_narrow", "posedual_tf/data/augment.py",
      "s = tf.clip_by_value(gen.normal([batch_size]) * scale_factor + 1.0,",
      "s = tf.clip_by_value(gen.normal([batch_size]) * scale_factor * 0.5 + 1.0,",
      DR + "::test_hard_view_affine_follows_method_unsup_rot_prob_and_the_data_ranges",
      "the hard view's scale drawn with half the standard deviation"),
    m("hard_rot_prob_ignored", "posedual_tf/data/view_paths.py", "views.rot_factor, m.unsup_rot_prob)",
      "views.rot_factor, 1.0)", DR + "::test_hard_view_affine_follows_method_unsup_rot_prob_and_the_data_ranges",
      "method.unsup_rot_prob never reaches the hard view (always rotated)"),
    m("cutmix_takes_co_holes", "posedual_tf/data/view_paths.py",
      'return m.co_holes if op == "CO" else m.cm_holes', 'return m.co_holes if op == "CO" else m.co_holes',
      DR + "::test_cutout_and_cutmix_cut_as_many_holes_as_set_with_the_reference_sizes",
      "CutMix cuts method.co_holes holes, not cm_holes"),
    m("hole_half_size_short", "posedual_tf/data/hard_views.py",
      "half = rng.uniform([batch_size, holes, 2], half_size[0], half_size[1] + 1, dtype=tf.int32)",
      "half = rng.uniform([batch_size, holes, 2], half_size[0], half_size[1], dtype=tf.int32)",
      DR + "::test_cutout_and_cutmix_cut_as_many_holes_as_set_with_the_reference_sizes",
      "CO/CM half-sizes drawn from 10..18, not 10..19"),
    m("jc_one_box_fewer", "posedual_tf/data/hard_views.py", "choice = gen.uniform([b, num_boxes], 0, j, dtype=tf.int32)",
      "choice = gen.uniform([b, max(1, num_boxes - 1)], 0, j, dtype=tf.int32)",
      DR + "::test_joint_cutout_cuts_mask_joint_num_draws_of_the_24_joints",
      "joint cutout cuts one box fewer than mask_joint_num (and one at 0)"),
    m("jo_one_patch", "posedual_tf/data/hard_views.py", "for k in range(int(draws.dest.shape[1])):",
      "for k in range(min(1, int(draws.dest.shape[1]))):", DR + "::test_joint_cut_occlusion_pastes_jo_joint_num_patches",
      "JO pastes one patch, whatever jo_joint_num"),
    m("ra_never_cutout", "posedual_tf/data/augment.py", "op = gen.uniform([], 0, len(RAND_AUG_OPS), dtype=tf.int32)",
      "op = gen.uniform([], 0, len(RAND_AUG_OPS) - 1, dtype=tf.int32)",
      DR + "::test_rand_augment_draws_each_of_its_11_ops_and_both_signs_evenly",
      "RandAugment never draws its 11th op (CutoutAbs)"),
    m("ta_level_short", "posedual_tf/data/augment.py", "level = gen.uniform([], 0, max_level + 1, dtype=tf.int32)",
      "level = gen.uniform([], 0, max_level, dtype=tf.int32)",
      DR + "::test_trivial_augment_draws_each_of_its_9_ops_and_31_levels_evenly",
      "TrivialAugment's level drawn from 0..29, never 30"),
    m("flip_pairs_without_eyes", "posedual_tf/joints.py", "(16, 19), (20, 21), (22, 23))", "(16, 19), (22, 23))",
      ["tests/test_geometry_codec.py::test_flip_back_maps_each_joint_to_its_partner",
       "tests/test_pipeline.py::test_labelled_targets_peak_at_crop_joints"],
      "the eyes left out of the union flip pairs (the tests' pairs are written by name, not taken from joints.py)"),
    m("coco_ankle_sigma", "posedual_tf/joints.py", "1.07, 1.07, .87, .87, .89, .89))", "1.07, 1.07, .87, .87, .89, .99))",
      "tests/test_config.py::test_coco_sigmas_are_pycocotools_own",
      "a COCO OKS sigma other than pycocotools' (the right ankle's; the tests checked only the first)"),
    m("eval_area_square", "posedual_tf/data/pipeline.py",
      "area = (scale[0] * geometry.PIXEL_STD) * (scale[1] * geometry.PIXEL_STD)",
      "area = (scale[0] * geometry.PIXEL_STD) * (scale[0] * geometry.PIXEL_STD)",
      "tests/test_pipeline.py::test_eval_crops_carry_the_area_of_their_non_square_box",
      "an evaluation person's area is its box's width squared"),
    m("clip_boxes_axes_swapped", "posedual_tf/export.py",
      "x1, y1 = tf.clip_by_value(x, 0.0, width), tf.clip_by_value(y, 0.0, height)",
      "x1, y1 = tf.clip_by_value(x, 0.0, height), tf.clip_by_value(y, 0.0, width)",
      HD + "::test_each_head_of_a_checkpoint_reaches_evaluation_export_predict_and_tflite",
      "predict_image cuts a box's left edge to the image height and its top to the width"),
    m("flip_test_ignored", "posedual_tf/codec.py", "return 0.5 * (hm + flip_back(flipped, shift_heatmap))",
      "return hm", HD + "::test_flip_test_averages_each_network_with_its_mirrored_pass",
      "test.flip_test runs the mirrored pass and drops it"),
    m("export_mean_halved", "posedual_tf/export.py",
      "return tf.add_n([heatmaps.network_heatmaps(n, images) for n in nets]) / float(len(nets))",
      "return tf.add_n([heatmaps.network_heatmaps(n, images) for n in nets]) / 2.0",
      HD + "::test_serving_and_tflite_functions_decode_the_networks_they_are_given",
      "a SavedModel of one network halves its heatmaps (the ensemble's division)"),
    m("tflite_first_net_only", "posedual_tf/tflite.py",
      "hm = tf.add_n([tf.cast(n(x, training=False), tf.float32) for n in nets]) / float(len(nets))",
      "hm = tf.cast(nets[0](x, training=False), tf.float32)",
      HD + "::test_serving_and_tflite_functions_decode_the_networks_they_are_given",
      "the TFLite ensemble is net 1 alone"),
    m("export_net_index_ignored", "posedual_tf/checkpoints.py", "[nets[int(chosen) - 1]]", "[nets[0]]",
      HD + "::test_each_head_of_a_checkpoint_reaches_evaluation_export_predict_and_tflite",
      "export --net 2 writes net 1"),
    m("best_score_forgotten", "posedual_tf/callbacks.py", "        if os.path.exists(best_file):\n",
      "        if False:\n", RST + "::test_the_best_score_and_the_validation_history_go_on_after_a_resume",
      "a resumed run forgets the best score: a worse validation replaces best/"),
    m("history_not_checkpointed", "posedual_tf/callbacks.py", 'return {"history": self.history}', 'return {"history": []}',
      RST + "::test_the_best_score_and_the_validation_history_go_on_after_a_resume",
      "the validation history is not kept in the checkpoint (a resumed run reports only its own)"),
    m("unfinished_validation_skipped", "posedual_tf/callbacks.py",
      "if epoch and not within and self._due(epoch) and", "if False and not within and self._due(epoch) and",
      RST + "::test_the_best_score_and_the_validation_history_go_on_after_a_resume",
      "an epoch whose validation a kill interrupted is never validated"),
    m("corrupt_counts_restart", "posedual_tf/data/corrupt.py",
      'self.by_stream = collections.Counter(state.get("by_stream", {}))', "self.by_stream = collections.Counter()",
      RST + "::test_corrupt_record_counts_and_the_stop_rule_go_on_after_a_resume",
      "a resumed run counts corrupt records from zero (the stop rule divides them by every person read)"),
    m("run_state_not_restored", "posedual_tf/training.py", "if not checkpoints.restore_run_state(state, latest):",
      "if not False:", RST + "::test_a_run_stopped_after_two_epochs_and_resumed_equals_the_run_that_never_stopped",
      "training never restores the callbacks' state of its checkpoint"),
    m("optimizer_not_checkpointed", "posedual_tf/checkpoints.py", '        parts["optimizer"] = optimizer\n', "        pass\n",
      RST + "::test_a_training_checkpoint_restores_the_optimizer_the_loss_scale_and_the_draws",
      "the training checkpoint leaves out the optimizer (step, Adam's moments, the loss scale)"),
    # ---- #41, rule 1: decodability decided by decoding
    m("converter_decides_by_markers", "posedual_tf/conversion/writer.py", "    size = records.decoded_size(data)\n",
      '    size = records.decoded_size(data) if data.endswith((b"\\xff\\xd9", b"\\xaeB`\\x82")) else None\n',
      NL + "::test_decodability_is_decided_by_the_decoder_training_uses",
      "the converters refuse a JPEG or PNG with bytes after its end marker (as before #41)"),
    m("predict_decides_by_opencv", "posedual_tf/inference.py",
      "    if records.decoded_size(data) is None:", "    if False:",
      NL + "::test_decodability_is_decided_by_the_decoder_training_uses",
      "predict leaves decodability to OpenCV (a cut JPEG is filled with grey, or named in other words)"),
    # ---- #41, rule 4 in part: the Python API checks its arguments
    m("api_fit_takes_a_name", "posedual_tf/api.py", '    _expect_config(cfg)\n    _expect("progress", progress',
      '    _expect("progress", progress', "tests/test_api_arguments.py",
      "fit('demo_dual') reaches the trainer (AttributeError: 'str' object has no attribute 'train')"),
    m("api_overrides_as_a_string", "posedual_tf/api.py", '_expect("overrides", overrides, (list, tuple),',
      '_expect("overrides", overrides, (list, tuple, str),', "tests/test_api_arguments.py",
      "load_config(name, 'train.epochs=1') splits the string into one-letter overrides"),
    # ---- #41, rule 3 in part: every flag checked for its domain and its relevance
    m("float_flags_take_nan", "posedual_tf/cli.py", "        define_flags()\n    _finite_floats()\n",
      "        define_flags()\n", "tests/test_cli_flags.py",
      "float flags take nan and inf (absl's bounds let nan through)"),
    m("relevance_unchecked", "posedual_tf/cli.py", "if FLAGS[rule.flag].present and not rule.applies():", "if False:",
      "tests/test_cli_flags.py", "a flag that the other flags make meaningless is ignored without a word"),
    m("flag_errors_in_two_lines", "posedual_tf/cli.py", "            check_flags(argv)\n", "",
      "tests/test_cli_flags.py", "a bad flag value is absl's two lines, after TensorFlow's start-up"),
    m("detector_threshold_unbounded", "posedual_tf/predict.py",
      '"--detector: keep people scoring at least this",\n                       lower_bound=0.0, upper_bound=1.0)',
      '"--detector: keep people scoring at least this")', "tests/test_cli_flags.py",
      "predict --detector-threshold 2 finds nobody and exits 0"),
    # ---- the step's order: no weight moves while a pass of the step may still read it
    m("update_waits_for_own_gradient_only", "posedual_tf/methods/base.py",
      "with tf.control_dependencies([loss] + [g for g, _ in pairs if g is not None]):",
      "with tf.control_dependencies([]):", "tests/test_step_order.py",
      "a weight's update waits for its own gradient only (PoseDual's teacher of net 1 read moved weights)"),
    # ---- #41, rule 2: one writer per output
    m("lock_never_held", "posedual_tf/files.py", "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
      "            pass\n", OWR, "two processes write one folder at once"),
    m("lock_not_reentrant", "posedual_tf/files.py", "    if key in _HELD:\n", "    if False:\n", OWR,
      "a command that calls another writer of its folder (train's validation, its data preparation) refuses itself"),
    m("stale_lock_taken_silently", "posedual_tf/files.py", "        if pid:\n", "        if False:\n", OWR,
      "a lock left by a killed command is taken over without a word"),
    m("released_lock_names_its_holder", "posedual_tf/files.py",
      "            os.ftruncate(fd, 0)         # released by its holder: nothing to take over\n", "            pass\n", OWR,
      "a lock released properly still names its holder: the next command reports a takeover"),
    m("predict_unlocked", "posedual_tf/predict.py",
      '    with files.writing(output, "predict", setting="--output"):',
      '    for _ in [files.claim(output, "predict", setting="--output")]:', OWR,
      "two predict runs write one --output at once (the last writer's results.json wins)"),
    m("tflite_unlocked", "posedual_tf/tflite.py", '    with files.writing(output, "export", setting="--output"):',
      '    for _ in [files.claim(output, "export", setting="--output")]:', OWR,
      "two TFLite exports update one folder's ownership list at once"),
    m("export_unlocked", "posedual_tf/export.py", '    with files.lock(output, "export", beside=True):',
      "    if True:", OWR, "two exports swap in one SavedModel folder at once"),
    m("served_export_unlocked", "posedual_tf/export.py",
      '        with files.writing(output, "export", setting="--output"):',
      '        for _ in [files.claim(output, "export", setting="--output")]:', OWR,
      "two exports write versions of one TF Serving base path at once"),
    m("converter_unlocked", "posedual_tf/conversion/writer.py",
      '            held.enter_context(files.writing(parts_dir, "convert", setting="--output"))',
      '            files.claim(parts_dir, "convert", setting="--output")', OWR,
      "two converters write one prefix at once (each removes the other's temporary shards)"),
    m("demo_data_unlocked", "posedual_tf/demo.py",
      '            held.enter_context(files.writing(cfg.workdir, "train", accepts=("evaluate",), setting="workdir"))',
      '            files.claim(cfg.workdir, "train", accepts=("evaluate",), setting="workdir")', OWR,
      "train's data preparation runs outside the workdir's lock (two fresh runs race before it)"),
    m("inspect_draw_unlocked", "tfrecords_tools/inspect.py",
      'files.writing(args.draw, "inspect", setting="--draw", what="inspect --draw")',
      'contextlib.nullcontext(files.claim(args.draw, "inspect", setting="--draw"))', OWR,
      "two inspect --draw runs draw into one folder at once"),
    m("beside_lock_left", "posedual_tf/files.py", "                os.unlink(path)\n", "                pass\n",
      "tests/test_export.py::test_export_never_replaces_what_it_did_not_write",
      "an export leaves NAME.posedual_tf.lock beside its SavedModel (also when it was refused)"),
    # ---- #41, rule 4: every error names the file, the model or the folder, and what was expected
    m("json_error_unnamed", "posedual_tf/files.py", "    except json.JSONDecodeError as e:\n        raise BadFileError(",
      "    except KeyError as e:\n        raise BadFileError(", ERN,
      "a JSON file that is not JSON is Python's 'Expecting value: line 1 column 1 (char 0)', naming no file"),
    m("manifest_of_another_shape", "posedual_tf/data/records.py", "    if not isinstance(manifest, dict):\n",
      "    if False:\n", ERN, "a manifest holding a JSON list is a raw TypeError"),
    m("best_json_unchecked", "posedual_tf/callbacks.py",
      'if not (isinstance(best, dict) and isinstance(best.get("perf"), (int, float))):', "if False:", ERN,
      "a best/best.json of another shape is a raw KeyError or a string compared with scores"),
    m("detector_nan_boxes_pass", "posedual_tf/detector.py", "        if bad:\n", "        if False:\n", ERN,
      "a detector's NaN boxes reach the model: every image 'could not read it (Graph execution error:)'"),
    m("ckpt_link_called_damaged", "posedual_tf/resume.py",
      "    if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)) or (",
      "    if False and os.path.islink(folder) or False and (os.path.lexists(folder) and not os.path.isdir(folder)) or False and (",
      ERN, "a ckpt/ that is a link to the user's folder is called a damaged state file"),
    m("calibration_blames_the_config", "posedual_tf/tflite.py",
      "        records.read_manifest(prefix)\n    except FileNotFoundError:", "        pass\n    except FileNotFoundError:",
      ERN, "--calibration naming no dataset is blamed on data.val.records, with demo advice"),
    m("tf_file_error_raw", "posedual_tf/cli.py", "        if os.sep in path and \" \" not in path.strip(os.sep)",
      "        if False and os.sep in path and \" \" not in path.strip(os.sep)", ERN,
      "a shard that cannot be written is 'OutOfRangeError: PATH.tmp-PID; File too large (run with --debug ...)'"),
    m("write_error_names_no_file", "posedual_tf/files.py",
      "        if isinstance(e, OSError) and e.strerror and not e.filename:", "        if False:", ERN,
      "a JSON file that cannot be written is 'File too large', naming no file"),
    m("temporary_name_shown", "posedual_tf/cli.py", '    target, n = _TEMPORARY.subn("", path)',
      "    target, n = path, 0", ERN, "a failed write names the temporary file, not the one it was to become"),
    m("checkpoint_temporary_name_shown", "posedual_tf/cli.py",
      '_TEMPORARY = re.compile(r"(\\.tmp-\\d+|\\.tempstate\\d+|_temp/.*)$")',
      '_TEMPORARY = re.compile(r"(\\.tmp-\\d+)$")', ERN,
      "a checkpoint that cannot be written is named by TensorFlow's temporary part file"),
    m("op_frame_kept", "posedual_tf/cli.py", "        s = _OP_FRAME.sub(\"\", line).strip()", "        s = line.strip()",
      ERN, "an eager op's error keeps '{{function_node ...}}' and '[Op:NAME]' around its cause"),
    m("oom_raw", "posedual_tf/cli.py",
      '        if "OOM when allocating" in first or type(e).__name__ == "ResourceExhaustedError":',
      "        if False:", ERN, "out of memory is TensorFlow's ResourceExhaustedError text, naming no setting"),
    m("setting_relevance_unchecked", "posedual_tf/config.py", "    _check_relevance(cfg, set_keys)\n", "", "tests/test_config.py",
      "--set method.rand_magnitude=20 on a config without RandAugment changes nothing, silently"),
    m("service_role_flags_anywhere", "posedual_tf/data_service.py",
      '    worker = lambda: cli.POSITIONAL == ["worker"]  # noqa: E731', "    worker = lambda: True  # noqa: E731",
      "tests/test_cli_flags.py::test_every_flag_that_other_flags_make_meaningless_is_one_line",
      "data_service dispatcher --dispatcher H:P starts a dispatcher and ignores the flag"),
    # ---- #42 in part: predict_image takes numpy arrays, PIL images, paths and bytes
    m("array_channels_as_given", "posedual_tf/inference.py", 'cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))',
      'cv2.imencode(".png", np.ascontiguousarray(rgb))', "tests/test_predict_inputs.py",
      "an RGB array is encoded as if it were OpenCV's BGR: red and blue swapped"),
    m("float_pixels_taken", "posedual_tf/inference.py", "    if image.dtype != np.uint8:\n", "    if False:\n",
      "tests/test_predict_inputs.py", "float pixels in [0, 1] are encoded as they are (all black), without a word"),
    m("absl_warnings_shown", "posedual_tf/cli.py",
      "absl_logging.set_verbosity(absl_logging.INFO if FLAGS.verbose else absl_logging.ERROR)",
      "absl_logging.set_verbosity(absl_logging.INFO)",
      "tests/test_cli.py::test_tflite_export_prints_no_tensorflow_warning_unless_verbose",
      "export --format tflite prints TFLite's 'W... lite.py:2203] Please consider providing the trackable_obj'"),
    # ---- #42: predict for every model kind, the export rule, configs checked when assigned, Serving's JSON
    m("tflite_keypoints_left_in_the_crop", "posedual_tf/inference.py",
      'xy = np.einsum("nij,nkj->nki", inv.numpy().astype(np.float64), crop_xy1)', "xy = crop_xy1[..., :2]",
      PA + "::test_same_keypoints_from_every_image_form_and_model_kind",
      "predict with a .tflite file returns crop pixels, not image pixels"),
    m("alpha_taken_for_a_colour", "posedual_tf/inference.py", "    return np.ascontiguousarray(image[..., :3])",
      "    return np.ascontiguousarray(image[..., -3:])", PA + "::test_same_keypoints_from_every_image_form_and_model_kind",
      "an RGBA array is read as GBA"),
    m("box_score_dropped", "posedual_tf/inference.py", "float(s) * bs, bs)", "float(s), bs)",
      PA + "::test_without_boxes_a_detector_finds_the_people", "a detector's box score does not reach the person's score"),
    m("worse_network_exported", "posedual_tf/best_net.py", "    best = max(nets, key=lambda h: scores[h])",
      "    best = min(nets, key=lambda h: scores[h])", PA + "::test_the_export_rule",
      "the default export writes the worse network"),
    m("export_rule_unread", "posedual_tf/best_net.py", '    return chosen["net"], str(chosen.get("why", ""))',
      '    return "1", str(chosen.get("why", ""))', PA + "::test_every_export_path_follows_the_rule_and_prints_it",
      "export ignores the best_network train_result.json records"),
    m("predict_module_not_callable", "posedual_tf/predict.py", "sys.modules[__name__].__class__ = _CallableModule",
      "pass", PA + "::test_the_module_and_the_function_are_one",
      "after python -m posedual_tf.predict (or any import of it), posedual_tf.predict(...) is a TypeError"),
    m("batched_signature_rows_mixed", "posedual_tf/export.py",
      "lambda pair: predict_image(pair[0], pair[1])", "lambda pair: predict_image(pair[0], boxes[0])",
      PA + "::test_tf_serving_rest_json_maps_onto_the_batched_signature",
      "TF Serving's batched requests get the first image's boxes for every image"),
    m("tflite_converter_warns", "posedual_tf/tflite.py",
      "        absl_logging.set_verbosity(absl_logging.ERROR)    # the converter's", "        pass    # the converter's",
      PA + "::test_tflite_conversion_logs_no_absl_warning",
      "export_tflite from Python logs TFLite's 'consider providing the trackable_obj' warning"),
    m("assignment_unchecked", "posedual_tf/config_schema.py", '        if root is None or name.startswith("_"):',
      "        if True:", "tests/test_config.py::test_assigning_a_loaded_config_checks_as_an_override_does",
      "cfg.train.lr = 'fast' is taken without a word"),
    m("assignment_not_restored", "posedual_tf/config.py", "        object.__setattr__(section, name, old)\n", "",
      "tests/test_config.py::test_assigning_a_loaded_config_checks_as_an_override_does",
      "a refused assignment leaves the bad value in the config"),
    m("head_runs_merged", "posedual_tf/monitoring.py",
      'tf.summary.create_file_writer(f"{self.run_dir}/{head}")', "tf.summary.create_file_writer(self.run_dir)",
      "tests/test_monitoring.py::test_every_scalar_has_a_name_a_description_and_the_global_step",
      "net1, net2 and the ensemble share one run: TensorBoard draws them in one colour"),
    m("runner_reloaded_every_call", "posedual_tf/inference.py", "    if key not in _RUNNERS:\n", "    if True:\n",
      PA + "::test_a_model_given_by_path_is_loaded_once_until_it_changes",
      "predict image by image loads the SavedModel again for every image"),
    m("runner_kept_after_a_new_export", "posedual_tf/inference.py",
      "    key = (path, net, tuple(os.stat(p).st_mtime_ns for p in read if os.path.exists(p)))",
      "    key = (path, net)", PA + "::test_a_model_given_by_path_is_loaded_once_until_it_changes",
      "predict keeps using the old model after a new export to the same folder"),
    m("pair_grid_untitled", "posedual_tf/monitoring.py", "        rows = [self.titles(size[0] * self.scale)]",
      "        rows = []", "tests/test_monitoring.py::test_pair_grids_are_large_side_by_side_and_coloured",
      "the pair grid's columns carry no titles"),
    m("export_lines_wide", "posedual_tf/best_net.py", '    first, _, rest = why.partition("; ")',
      '    first, rest = why, ""', PA + "::test_the_export_rule",
      "an export prints its choice on one line of over 80 columns"),
    # ---- #41, rule 5: every wait on a peer is bounded and explained
    m("service_wait_unbounded", "posedual_tf/data/service.py",
      "        return arrived.get(timeout=min(notice_s, timeout_s))", "        return arrived.get()", PW,
      "a tf.data service without workers: the run waits without end (TensorFlow's client does)"),
    m("service_lost_step_at_end_silent", "posedual_tf/data/service.py",
      "            if element is end:\n                if waiting:\n",
      "            if element is end:\n                if False:\n", PW,
      "a step lost by a worker: the stream ends early and the run trains on without it, silently"),
    m("service_lost_step_piles_up", "posedual_tf/data/service.py", "            if len(waiting) > MAX_AHEAD:",
      "            if False:", PW, "a lost step: every later batch is held in memory while the run waits for it"),
    m("service_error_raw_in_training", "posedual_tf/training.py",
      "            raise peers.from_tf_error(e, cluster, task.cfg.train.peer_timeout_s, own) or e",
      "            raise e", PW, "the service's line reaches the user inside TensorFlow's UnknownError and traceback"),
    m("cluster_start_unwatched", "posedual_tf/distribution.py",
      "    with peers.bounded(peer_timeout_s, notice, give_up, cluster, own):", "    if True:", PW,
      "a cluster task that never starts: the others wait without end in TensorFlow's start-up"),
    m("watcher_gives_up_silently", "posedual_tf/peers.py",
      "    sys.stderr.write(f\"error: {spec['give_up'].replace('{missing}', missing)}\\n\")", "    pass", PW,
      "a wait given up ends the process without a word"),
    m("service_worker_waits_silently", "posedual_tf/data_service.py",
      '        service.check_reachable(FLAGS.dispatcher, setting="--dispatcher")', "        pass",
      "tests/test_data_service.py::test_data_service_command_serves_a_dispatcher_and_a_worker",
      "a worker whose --dispatcher does not answer starts and retries without a word"),
    m("collective_unbounded", "posedual_tf/distribution.py",
      "CommunicationOptions(timeout_seconds=peer_timeout_s)", "CommunicationOptions()", PW,
      "a task lost mid-run: the others wait for TensorFlow's health check (30-60 s, not configurable)"),
]


def copy_repo(dest: pathlib.Path) -> None:
    def ignore(folder, names):
        root = pathlib.Path(folder) == REPO
        return [n for n in names if n in SKIP_ANY or n.endswith(".egg-info") or (root and n in SKIP_ROOT)]

    shutil.copytree(REPO, dest, ignore=ignore)


def run_mutant(mutant: Mutant, python: str, timeout: int) -> tuple[str, float, str]:
    """(outcome, seconds, last lines of the test output) of one mutant."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = pathlib.Path(tmp) / "repo"
        copy_repo(root)
        path = root / mutant.file
        text = path.read_text()
        if mutant.original and text.count(mutant.original) != 1:
            return f"error (original text found {text.count(mutant.original)} times)", 0.0, ""
        path.write_text(text.replace(mutant.original, mutant.mutated))
        # the real samples stay where the checkout has them (tests find them relative to the repository)
        shared = os.environ.get("POSEDUAL_SHARED_DATA", str(REPO.parent / "shared" / "data"))
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1", POSEDUAL_SHARED_DATA=shared)
        where = subprocess.run([python, "-c", "import posedual_tf, tfrecords_tools; print(posedual_tf.__file__, "
                                "tfrecords_tools.__file__)"], cwd=root, env=env, capture_output=True, text=True)
        if str(root) not in where.stdout or where.stdout.count(str(root)) != 2:
            return f"error (the copy is not what is imported: {where.stdout.strip()} {where.stderr[-300:]})", 0.0, ""
        start = time.time()
        try:
            out = subprocess.run([python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
                                 cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "error (timed out)", time.time() - start, ""
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-3:])
        outcome = {0: "survived", 1: "killed"}.get(out.returncode, f"error (pytest exit {out.returncode})")
        if outcome == "survived" and " skipped" in out.stdout:
            outcome = "error (tests skipped)"
        return outcome, time.time() - start, tail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant's tests")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with the test extras")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the first run of every chosen test on the unmutated copy (they must pass there)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {mu.name for mu in MUTANTS}
    if unknown:
        parser.error(f"--only: no mutant named {', '.join(sorted(unknown))}")
    chosen = [mu for mu in MUTANTS if not names or mu.name in names]
    if args.list:
        for mu in chosen:
            print(f"{mu.name:28s} {mu.file:36s} {mu.what}")
        return 0
    if not args.no_baseline:
        tests = sorted({t for mu in chosen for t in mu.tests})
        outcome, seconds, tail = run_mutant(Mutant("baseline", "README.md", "", "", tuple(tests), ""), args.python,
                                            args.timeout * 3)
        print(f"baseline: the {len(tests)} tests on the unmutated copy: "
              f"{'pass' if outcome == 'survived' else outcome} ({seconds:.0f}s)", flush=True)
        if outcome != "survived":
            print("    " + tail.replace("\n", "\n    "))
            return 2
    results = []
    for i, mu in enumerate(chosen, 1):
        outcome, seconds, tail = run_mutant(mu, args.python, args.timeout)
        results.append((mu, outcome, seconds))
        print(f"[{i}/{len(chosen)}] {outcome:9s} {seconds:6.1f}s  {mu.name}: {mu.what}", flush=True)
        if outcome != "killed" and tail:
            print("    " + tail.replace("\n", "\n    "), flush=True)
    killed = sum(o == "killed" for _, o, _ in results)
    print(f"{killed} of {len(results)} mutants killed" + ("" if killed == len(results) else
          f"; not killed: {', '.join(mu.name for mu, o, _ in results if o != 'killed')}"))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
