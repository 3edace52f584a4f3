"""A train step moves no weight while one of its passes may still read it.

Found as a flake of test_full_batches: PoseDual's teacher pass of net 1, which only net 2's target needs,
read some of net 1's weights already moved by the step's own update, in 5 runs of 20 of one filled
per_network step under TF_ENABLE_ONEDNN_OPTS=0 (TF 2.21) and once in CI with oneDNN. The traced graph
orders every read of a weight before its update (automatic control dependencies), but grappler's
dependency optimizer drops that order: with ``dependency_optimization`` off, 16 runs of 16 were equal.
So the order is checked here on the graph as grappler leaves it, where it does not depend on thread
timing: every update of a weight must have every read of a weight, and every op that computes with one,
among its ancestors.
"""
from __future__ import annotations

import keras
import pytest
import tensorflow as tf

from posedual_tf.data import full_batches
from tests.conftest import tiny_batch, tiny_method


def _grappler_graph(concrete):
    """The GraphDef of ``concrete`` after TensorFlow's default grappler passes, and its fetched nodes."""
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    graph = concrete.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetches = [t.op.name for t in graph.outputs] + [op.name for op in graph.control_outputs]
    collection = meta_graph_pb2.CollectionDef()
    collection.node_list.value.extend(fetches)
    meta.collection_def["train_op"].CopyFrom(collection)
    return tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta), fetches


def _late_uses(method, batch) -> dict:
    """Per update of a trainable weight in the optimised ``train_step``: the reads of weights, and the ops
    computing with them, that it does not wait for (ops nothing fetched needs do not run: left out)."""
    concrete = tf.function(method.train_step).get_concrete_function(batch)
    graph_def, fetches = _grappler_graph(concrete)
    nodes = {n.name: n for n in graph_def.node}
    parents = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph_def.node}

    def ancestors(names) -> set:
        seen, stack = set(), list(names)
        while stack:
            for p in parents[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    weights = {id(v.value.handle) for v in method.trainable_variables}
    handles = {inner.op.name for outer, inner in concrete.graph.captures if id(outer) in weights}
    assert len(handles) == len(method.trainable_variables)
    fetched = [f for f in fetches if f in nodes]
    live = ancestors(fetched) | set(fetched)
    reads = {n.name for n in graph_def.node if n.op == "ReadVariableOp" and parents[n.name][0] in handles}
    uses = {c for c, ps in parents.items() if c in live and any(p in reads for p in ps)}
    updates = [n.name for n in graph_def.node if n.op != "ReadVariableOp" and any(p in handles for p in parents[n.name])]
    assert len(updates) >= len(handles) and len(reads) >= len(handles) and len(uses) > len(reads)
    late = {}
    for update in updates:
        before = ancestors([update])
        missing = sorted(x for x in (reads | uses) if x not in before and x != update)
        if missing:
            late[update] = missing
    return late


@pytest.mark.parametrize("name, extra, filled", [
    ("coco1k_dual", ("train.pass_schedule=per_network", "method.mask_joint_num=0"), True),   # the flake's step
    ("coco1k_dual", ("train.pass_schedule=reference",), False),
    ("coco1k_dual_multiaugs", ("train.pass_schedule=fused",), False),
    ("coco1k_cons", (), True),
    ("coco1k_sup", (), False),
])
def test_every_weight_update_waits_for_every_use_of_the_weights(name, extra, filled):
    _, _, m = tiny_method(name, *extra)
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    m.optimizer.build(m.trainable_variables)
    lab, unl = tiny_batch(0, 3)
    parts = tuple({k: tf.constant(v) for k, v in part.items()} for part in (lab, unl))
    if filled:
        parts = full_batches.fill_batch(tuple(dict(p, person=tf.range(3)) for p in parts), 5)
    late = _late_uses(m, parts[0] if name.endswith("_sup") else parts)
    first = next(iter(late.items()), None)
    assert not late, f"{len(late)} weight updates run before some use of a weight, e.g. {first[0]}: {first[1][:4]}"
