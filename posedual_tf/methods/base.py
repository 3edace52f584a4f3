"""Shared pieces of the three training methods: loss, accuracy, RNG, optimiser step.

Every method is a ``keras.Model`` whose ``nets`` are the pose networks (1, or 2 for PoseDual)
and whose ``train_step`` follows the reference's ``PoseCons.forward`` / ``PoseCotrain.forward`` (lib/models/pose_cons.py, pose_dual.py) and lib/core/loss.py.
"""
from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from posedual_tf import aug_paths, codec
from posedual_tf.data import augment, full_batches, view_paths
from posedual_tf.methods.settings import StepSettings
from posedual_tf.models import bn_groups


def joints_mse(pred, target, weight, sharpen: bool = False, mask=None, people=None):
    """Reference JointsMSELoss: ``mean over B, J, pixels of 0.5 * (w * (P - T))^2`` (J = all channels).

    ``pred``/``target`` ``[B, h, w, J]``, ``weight`` ``[B, J]``; computed in float32. MultiAugs' options
    (MultiAugs lib/core/loss.py), in its order after the weight: ``sharpen`` = softmax over each map's pixels,
    ``mask [B, J]`` multiplies both. ``people``: a filled batch's real people (its first places, whose
    weights are the only non-zero ones): the mean is over them (None: over B).
    """
    with tf.name_scope("losses"):
        pred = tf.cast(pred, tf.float32)
        target = tf.cast(target, tf.float32)
        w = tf.cast(weight, tf.float32)[:, None, None, :]
        p, t = w * pred, w * target
        if sharpen:
            p, t = _spatial_softmax(p), _spatial_softmax(t)
        if mask is not None:
            m = tf.cast(mask, tf.float32)[:, None, None, :]
            p, t = p * m, t * m
        squares = tf.square(p - t)
        if people is None:
            return 0.5 * tf.reduce_mean(squares)
        per_person = tf.cast(tf.size(squares) // tf.shape(squares)[0], tf.float32)
        return 0.5 * tf.reduce_sum(squares) / (tf.cast(people, tf.float32) * per_person)


def _spatial_softmax(maps):
    shape = tf.shape(maps)
    flat = tf.reshape(tf.transpose(maps, [0, 3, 1, 2]), [shape[0], shape[3], -1])
    soft = tf.reshape(tf.nn.softmax(flat, axis=-1), [shape[0], shape[3], shape[1], shape[2]])
    return tf.transpose(soft, [0, 2, 3, 1])


def heatmap_accuracy(pred, target, threshold: float = 0.5):
    """The reference training accuracy (logs only; its (h/10, w/10) normaliser swap kept).

    Returns (average over joints with a valid target, number of such joints).
    """
    shape = tf.shape(pred)
    h, w = shape[1], shape[2]
    p, _ = codec.argmax_coords(pred)
    g, _ = codec.argmax_coords(target)
    norm = tf.cast(tf.stack([h, w]), tf.float32) / 10.0            # applied to (x, y): swapped as the reference
    valid = (g[..., 0] > 1) & (g[..., 1] > 1)
    dist = tf.norm((p - g) / norm, axis=-1)
    hit = tf.cast((dist < threshold) & valid, tf.float32)
    count = tf.reduce_sum(tf.cast(valid, tf.float32), axis=0)       # [J]
    acc_j = tf.math.divide_no_nan(tf.reduce_sum(hit, axis=0), count)
    has = tf.cast(count > 0, tf.float32)
    n = tf.reduce_sum(has)
    return tf.math.divide_no_nan(tf.reduce_sum(acc_j * has), n), n


def collapse_indicator(heatmaps, weight, threshold: float | None = None, people=None):
    """Mean over the supervised joints of each map's max response: near 0 means collapse. With a
    ``threshold``: the mean fraction of those peaks below it instead (near 1 means collapse).
    ``people``: as :func:`joints_mse`'s (the empty places have zero weights)."""
    peak = tf.reduce_max(tf.cast(heatmaps, tf.float32), axis=[1, 2])       # [B, J]
    if threshold is not None:
        peak = tf.cast(peak < threshold, tf.float32)
    w = tf.cast(weight, tf.float32)
    per_person = tf.math.divide_no_nan(tf.reduce_sum(peak * w, -1), tf.reduce_sum(w, -1))
    if people is None:
        return tf.reduce_mean(per_person)
    return tf.reduce_sum(per_person) / tf.cast(people, tf.float32)


def agree_on_finite(pairs):
    """``[(gradient, variable)]`` made non-finite on every replica when any replica's are (one all-reduce
    of a flag); unchanged otherwise and outside a multi-replica step."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return pairs
    grads = [g for g, _ in pairs if g is not None]
    bad = tf.cast(tf.logical_not(tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])), tf.float32)
    any_bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad) > 0
    poison = tf.where(any_bad, tf.constant(float("nan")), tf.constant(0.0))
    return [(None if g is None else g + tf.cast(poison, g.dtype), v) for g, v in pairs]


class PoseMethod(keras.Model):
    """Base: owns the networks, the metrics, the per-step RNG and the optimiser step.

    ``settings``: the step's values (:class:`~posedual_tf.methods.settings.StepSettings`); ``prepare``:
    the run's :class:`~posedual_tf.codec.TrainingInputs`. :func:`~posedual_tf.methods.build_method`
    makes both from a Config."""

    metric_names: tuple[str, ...] = ("loss", "loss_pose", "acc")

    def __init__(self, settings: StepSettings, nets: list[keras.Model], prepare: codec.TrainingInputs,
                 metric_names: tuple[str, ...] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.nets = nets
        #: uint8 crops -> network input, joints -> targets, in the step (on the device)
        self.prepare = prepare
        if metric_names is not None:
            self.metric_names = metric_names
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.metric_names}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Under a strategy Keras builds a model by calling it on the first raw batch, before
        :attr:`prepare` has made it network input (a ``data.crops_on=device`` batch has no ``image``;
        under MultiWorkerMirroredStrategy ``strategy.reduce`` fails on dict batches). Skipped where the
        optimiser is built before ``fit`` (``PoseTask.build_model`` builds it, after the networks), and
        always under MultiWorkerMirroredStrategy."""
        built = self.optimizer is not None and self.optimizer.built
        if built or isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        outs = [net(images, training=training) for net in self.nets]
        return outs[0] if len(outs) == 1 else outs

    def unwrap(self, data):
        """The batch, ready for the networks: ``train_on_batch`` hands ``(x, None, None)``, ``fit`` on our
        datasets ``x``; each stream's dict goes through :attr:`prepare` (normalised crops, targets)."""
        if isinstance(data, tuple) and len(data) == 3 and data[1] is None and data[2] is None:
            data = data[0]
        if isinstance(data, dict):
            return self.prepare(data)
        return type(data)(self.prepare(part) for part in data)

    @property
    def groups(self) -> int:
        """BatchNorm and draw groups in this replica's batch (``train.replica_batch``; 1 = the batch)."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return bn_groups.groups_per_replica(self.settings.batch_size, self.settings.replica_batch, replicas)

    @contextlib.contextmanager
    def group_context(self, batch: dict | None = None):
        """Context for a step's forward passes: BatchNorm per group of ``train.replica_batch`` people, and
        over a filled ``batch``'s people only (:mod:`posedual_tf.data.full_batches`)."""
        with bn_groups.replica_groups(self.groups, self.settings.replica_batch), \
                bn_groups.people_only(None if batch is None else batch.get("mask")):
            yield

    @staticmethod
    def batch_people(batch: dict):
        """The people of a stream's batch: the leading size, or a filled batch's real count."""
        people = full_batches.people(batch)
        return tf.shape(batch["image"])[0] if people is None else people

    def step_rng(self, group: int = 0) -> augment.StatelessRng:
        """Stateless RNG for this step and draw group: reproducible, and resumes with the optimizer.

        Each group of each replica draws its own (the global group index ``replica x groups + group``
        is folded into the step's seed; under MultiWorkerMirroredStrategy the replica id already counts
        the workers' replicas), as the reference's DDP ranks did; one draw for all with
        ``train.shared_draws``. So 4 replicas of one group draw as 1 replica of 4 groups."""
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        index = 0 if self.settings.shared_draws else tf.cast(replica, tf.int64) * self.groups + group
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return augment.StatelessRng(tf.stack([tf.constant(self.settings.seed, tf.int64),
                                              step * 1024 + tf.cast(index, tf.int64)]))

    def scale_loss(self, loss):
        """The loss to differentiate (call inside the tape): divided by the replicas (gradients are
        summed across them) and multiplied by the fp16 loss scale when there is one."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return self.optimizer.scale_loss(loss / replicas)

    def apply_loss(self, tape, scaled_loss):
        """Gradients of the scaled loss and the optimiser update."""
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        self.apply_pairs(list(zip(grads, variables)), scaled_loss)

    def apply_pairs(self, pairs, loss):
        """The optimiser update of ``[(gradient, variable)]``, once the step's ``loss`` and every gradient exist.

        So no weight moves while a pass of the step may still read it: every forward pass feeds
        ``loss``, every backward one a gradient. Left to itself a variable's update waits for its own
        gradient only, and a pass that no gradient of that network needs (PoseDual's teacher pass of
        net 1 feeds net 2's target alone) read some of net 1's weights already moved: 5 runs in 20 of
        one step, under TF_ENABLE_ONEDNN_OPTS=0 (TF 2.21), although the graph orders each read of a
        variable before its update (``tests/test_step_order.py``).

        With a loss scale (float16) the replicas first agree whether the step is finite: Keras'
        LossScaleOptimizer looks at the first replica's own gradients before they are summed, so an
        overflow on another replica alone would reach the weights as NaN. A step that is not finite on
        some replica becomes non-finite on every one, so every replica skips it and the scale drops
        (:class:`~posedual_tf.methods.optimizer.StepCountingLossScale` still counts it as a step)."""
        # on the gradients themselves, which carry the wait into the optimiser's merge_call
        with tf.control_dependencies([loss] + [g for g, _ in pairs if g is not None]):
            pairs = [(None if g is None else tf.identity(g), v) for g, v in pairs]
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            pairs = agree_on_finite(pairs)
        self.optimizer.apply_gradients(pairs)

    def record(self, batch_size, acc_count, **values) -> dict:
        """Update the running means as the reference's AverageMeters: every value weighted by the
        labelled batch size, the accuracy by its number of valid joints."""
        for name, v in values.items():
            weight = acc_count if name == "acc" else batch_size
            self.trackers[name].update_state(v, sample_weight=tf.cast(weight, tf.float32))
        logs = {name: t.result() for name, t in self.trackers.items()}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces logs with reduce("MEAN", v, axis=0) there, which needs a leading axis
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def teacher(self, net, images):
        """A teacher pass: no gradient; train-mode BN as the reference unless fixed (oddity 4)."""
        training = not self.settings.teacher_bn_inference
        return tf.stop_gradient(tf.cast(net(images, training=training), tf.float32))


class ConsistencyMethod(PoseMethod):
    """Shared ``train_step`` of PoseCons and PoseDual; subclasses set ``num_nets`` and :meth:`partner`.

    One hard view per network and path (``method.paths``; MultiAugs lib/models/pose_dual.py: ``PoseCotrain.forward``): each path has its own
    BatchNorm batch and its own consistency loss to the same warped teacher. Logged per network
    (``collapse_N``, mean over paths) and, with several paths, per path (``cons_<path>`` summed over the
    networks, ``collapse_<path>`` averaged over them).

    Three pass schedules with the same outputs, gradients and running statistics (``train.pass_schedule``):
    ``reference`` (every pass its own call, all under one tape: sup, teacher, then each network's paths);
    ``per_network`` (both teachers first with their BatchNorm updates deferred, then per network its sup
    and path passes with the running statistics updated in the reference's order, and its gradient
    taken before the next network runs, so only one network's activations are alive at a time);
    ``fused`` (as per_network, with ``[sup; path 1; ...; path P]`` as one call with per-group BatchNorm).
    """

    num_nets = 1

    def __init__(self, settings: StepSettings, nets, prepare: codec.TrainingInputs, views: view_paths.ViewSettings,
                 **kwargs):
        paths = aug_paths.method_paths(settings.method)
        labels = aug_paths.path_labels(paths)
        names = ["loss", "loss_pose", "loss_cons", "acc"] + [f"collapse_{i + 1}" for i in range(self.num_nets)]
        names += [f"low_peaks_{i + 1}" for i in range(self.num_nets)]
        if len(paths) > 1:
            names += [f"cons_{p}" for p in labels] + [f"collapse_{p}" for p in labels]
        super().__init__(settings, nets, prepare, metric_names=tuple(names), **kwargs)
        self.paths, self.path_labels = tuple(paths), tuple(labels)
        self.views = views

    def partner(self, n: int) -> int:
        """The network whose teacher places net ``n``'s cutouts and whose warped map net ``n`` learns."""
        return n

    @property
    def easy_teachers(self) -> bool:
        """Whether a step runs the teachers on the easy view: always for the reference's easy -> hard
        pair; for the study pairs only when the path places boxes with them (JC, JO)."""
        return (self.settings.method.consistency_pair == "easy_hard"
                or any(view_paths.path_places_boxes(p) for p in self.paths))

    def _views(self, rng, unl, teachers):
        """Every path's view per network and each network's target (its partner's teacher, in the
        view's frame): per draw group (:attr:`groups`), each group's views drawn from its own
        :meth:`step_rng` over its own people, as one reference GPU drew them. ``teachers``: each
        network's teacher maps on the easy view (None when :attr:`easy_teachers` is False)."""
        if not callable(rng):           # one generator handed in (tests): every group draws from it in turn
            rng = (lambda one: lambda g: one)(rng)
        groups = self.groups
        if groups == 1:
            return self._group_views(rng(0), unl, teachers)
        size = self.settings.replica_batch
        cut = lambda x: bn_groups.split_groups(x, groups, size)
        unl_parts = {k: cut(v) for k, v in unl.items()}
        teacher_parts = None if teachers is None else [cut(t) for t in teachers]
        outs = [self._group_views(rng(g), {k: v[g] for k, v in unl_parts.items()},
                                  None if teachers is None else [t[g] for t in teacher_parts]) for g in range(groups)]
        joined = lambda xs: tf.concat(xs, axis=0)
        views = [[joined([o[0][n][p] for o in outs]) for p in range(len(outs[0][0][n]))] for n in range(len(self.nets))]
        return views, [joined([o[1][n] for o in outs]) for n in range(len(self.nets))]

    def _group_views(self, rng, unl, teachers):
        """:meth:`_views` of one draw group. The study pairs run their teacher passes here."""
        n_nets = len(self.nets)
        partners = [self.partner(n) for n in range(n_nets)]
        cut = [teachers[p] for p in partners] if teachers is not None else [None] * n_nets
        if self.settings.method.consistency_pair != "easy_hard":
            pair = view_paths.build_pair_views(self.views, rng, unl, cut)
            targets = [pair.target(self.teacher(self.nets[p], pair.teacher[n])) for n, p in enumerate(partners)]
            return [[v] for v in pair.student], targets
        views, warped = view_paths.build_views(self.views, rng, unl, cut, teachers)
        return [[v[n] for v in views] for n in range(n_nets)], [warped[p] for p in partners]

    def _net_losses(self, sup, hard, target, lab, unl):
        """One network's terms: (pose MSE, consistency over its paths, per-path MSEs)."""
        pose = joints_mse(sup, lab["target"], lab["weight"], people=full_batches.people(lab))
        cons, per_path = self.consistency(hard, target, unl["weight"], full_batches.people(unl))
        return pose, cons, per_path

    def _combine(self, sup, hard, terms) -> dict:
        """The step's loss and logs from every network's (pose, cons, per_path) terms. Logged as the
        reference logs them: loss_pose as it enters the loss (0.5 (net 1 + net 2) for PoseDual),
        loss_cons the sum."""
        m = self.settings.method
        pose = tf.add_n([t[0] for t in terms])
        cons = tf.add_n([t[1] for t in terms])
        return {"loss": m.sup_weight * pose + m.cons_weight * cons, "loss_pose": m.sup_weight * pose,
                "loss_cons": cons, "cons_nets": [t[1] for t in terms], "sup": sup, "hard": hard,
                "cons_paths": [tf.add_n(list(p)) for p in zip(*[t[2] for t in terms])]}

    def compute_losses(self, tape, lab, unl, rng) -> dict:
        """The reference's schedule: every pass its own call (sup 1, sup 2, teacher 1, teacher 2, net 1's
        paths, net 2's paths) under ``tape``; a dict with loss, loss_pose, loss_cons, cons_nets,
        sup [maps per net], hard [per net, per path maps], cons_paths [per path, summed over nets]."""
        sup = [net(lab["image"], training=True) for net in self.nets]
        with tape.stop_recording():
            teachers = [self.teacher(net, unl["image"]) for net in self.nets] if self.easy_teachers else None
            views, targets = self._views(rng, unl, teachers)
        hard = [self.hard_passes(net, v) for net, v in zip(self.nets, views)]
        terms = [self._net_losses(s, h, t, lab, unl) for s, h, t in zip(sup, hard, targets)]
        return self._combine(sup, hard, terms)

    def per_network_gradients(self, lab, unl, rng, fuse: bool):
        """The per-network and fused schedules (class docstring): ``(out, [(gradient, variable)])``."""
        m = self.settings.method
        call = bn_groups.grouped_call if fuse else bn_groups.separate_calls
        teachers, recorded = [], []
        for net in self.nets:
            with bn_groups.deferred() as stats:
                teachers.append(self.teacher(net, unl["image"]))
            recorded.append(stats)
        views, targets = self._views(rng, unl, teachers)
        sup, hard, terms, pairs = [], [], [], []
        for net, v, target, stats in zip(self.nets, views, targets, recorded):
            inputs = [lab["image"]] + v
            if pairs:       # the graph may not start this network before the last one's gradient exists
                with tf.control_dependencies([g for g, _ in pairs if g is not None]):
                    inputs = [tf.identity(x) for x in inputs]
            with tf.GradientTape() as tape:
                maps = call(net, inputs, insert={1: stats})       # the teacher's statistics after sup's
                term = self._net_losses(maps[0], maps[1:], target, lab, unl)
                scaled = self.scale_loss(m.sup_weight * term[0] + m.cons_weight * term[1])
            variables = net.trainable_variables
            pairs += zip(tape.gradient(scaled, variables), variables)
            sup.append(maps[0])
            hard.append(maps[1:])
            terms.append(term)
        return self._combine(sup, hard, terms), pairs

    def gradients(self, lab, unl, rng):
        """Forward passes, losses and gradients of one step: ``(out, [(gradient, variable)])``. ``rng``:
        a generator, or group index -> generator (:meth:`step_rng`)."""
        schedule = self.settings.pass_schedule
        with self.group_context(unl):
            if schedule != "reference":
                return self.per_network_gradients(lab, unl, rng, fuse=schedule == "fused")
            with tf.GradientTape() as tape:
                out = self.compute_losses(tape, lab, unl, rng)
                scaled = self.scale_loss(out["loss"])
            variables = self.trainable_variables
            return out, list(zip(tape.gradient(scaled, variables), variables))

    def hard_passes(self, net, views):
        """One train-mode forward pass per path (each its own BatchNorm batch, as the reference)."""
        return [net(v, training=True) for v in views]

    def consistency(self, preds, target, weight, people=None):
        """A network's consistency loss over its path maps and the per-path MSEs (MultiAugs ``PoseCons.forward``, ``PoseCotrain.forward`` and lib/core/loss.py).

        Summed over paths (the reference), averaged under ``fixes.path_mean``; ``heat_fusion`` takes one
        MSE of the mean map; ``conf_masking`` and ``sharpen_pred`` change each MSE.
        """
        m = self.settings.method
        mask = None
        if m.conf_masking:
            mask = tf.cast(tf.reduce_max(target, axis=[1, 2]) > m.conf_thresh, tf.float32)
        mse = lambda p: joints_mse(p, target, weight, sharpen=m.sharpen_pred, mask=mask, people=people)
        per_path = [mse(p) for p in preds]
        if m.heat_fusion:
            total = mse(tf.add_n([tf.cast(p, tf.float32) for p in preds]) / len(preds))
        else:
            total = tf.add_n(per_path)
            if self.settings.path_mean:
                total = total / len(preds)
        return total, per_path

    def train_step(self, data):
        lab, unl = self.unwrap(data)
        out, pairs = self.gradients(lab, unl, self.step_rng)
        self.apply_pairs(pairs, out["loss"])
        acc, count = heatmap_accuracy(out["sup"][0], lab["target"])
        w, people = unl["weight"], full_batches.people(unl)
        per_net_path = [[collapse_indicator(h, w, people=people) for h in maps] for maps in out["hard"]]
        values = {f"collapse_{n + 1}": tf.add_n(c) / len(c) for n, c in enumerate(per_net_path)}
        threshold = self.settings.peak_threshold
        for n, maps in enumerate(out["hard"]):
            values[f"low_peaks_{n + 1}"] = tf.add_n([collapse_indicator(h, w, threshold, people) for h in maps]) / len(maps)
        if len(self.paths) > 1:
            for p, label in enumerate(self.path_labels):
                values[f"cons_{label}"] = out["cons_paths"][p]
                values[f"collapse_{label}"] = tf.add_n([c[p] for c in per_net_path]) / len(per_net_path)
        return self.record(self.batch_people(lab), count, loss=out["loss"], loss_pose=out["loss_pose"],
                           loss_cons=out["loss_cons"], acc=acc, **values)
