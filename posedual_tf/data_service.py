"""Run a tf.data service dispatcher or worker that makes training batches for ``train.data_service``.

    python -m posedual_tf.data_service dispatcher --port 5050
    python -m posedual_tf.data_service worker --dispatcher HOST:5050 [--port 5051]

Start one dispatcher and as many workers as the input needs (each worker uses every core of its
machine), then train with ``--set train.data_service=HOST:5050``. Workers read the run's records at the
paths the trainer opened them from (absolute paths: a shared filesystem across machines). The
commands serve until stopped (Ctrl-C). docs/data_service.md has a GPU host's and a cluster's set-ups.
"""
from __future__ import annotations

from absl import flags

from posedual_tf import cli

FLAGS = flags.FLAGS
ROLES = ("dispatcher", "worker")


def define_flags() -> None:
    """This command's flags; defined only when it runs (importing the module defines none)."""
    flags.DEFINE_integer("port", 0, "port to serve on (0: a free one, printed)", lower_bound=0, upper_bound=65535)
    flags.DEFINE_string("dispatcher", None, "worker: HOST:PORT of the dispatcher")
    flags.DEFINE_string("worker-address", None, "worker: HOST:PORT the dispatcher and trainers reach this "
                        "worker at (default: TensorFlow's, localhost:PORT; give it on a cluster)")
    flags.adopt_module_key_flags(cli)
    worker = lambda: cli.POSITIONAL == ["worker"]  # noqa: E731
    cli.only_when("dispatcher", worker, "only for the worker role (the dispatcher it serves)", example=("dispatcher",))
    cli.only_when("worker-address", worker, "only for the worker role (the address others reach it at)",
                  example=("dispatcher",))


def main(argv):
    role = argv[1] if len(argv) == 2 else None
    if role not in ROLES:
        raise cli.UsageError(f"give the role: python -m posedual_tf.data_service {{{'|'.join(ROLES)}}} [flags] "
                             f"(got {' '.join(argv[1:]) or 'nothing'})")
    import tensorflow as tf

    svc = tf.data.experimental.service
    if role == "dispatcher":
        server = svc.DispatchServer(svc.DispatcherConfig(port=FLAGS.port))
        print(f"tf.data service dispatcher at {server.target.split('://')[1]} "
              f"(train with --set train.data_service=HOST:{server.target.rsplit(':', 1)[1]})", flush=True)
    else:
        cli.required("dispatcher", hint="HOST:PORT of the dispatcher")
        from posedual_tf.data import service

        service.check_reachable(FLAGS.dispatcher, setting="--dispatcher")   # TensorFlow's worker would retry silently
        config = {"dispatcher_address": FLAGS.dispatcher, "port": FLAGS.port}
        if FLAGS["worker-address"].value:
            config["worker_address"] = FLAGS["worker-address"].value
        server = svc.WorkerServer(svc.WorkerConfig(**config))
        print(f"tf.data service worker serving dispatcher {FLAGS.dispatcher}", flush=True)
    server.join()


if __name__ == "__main__":
    cli.run(main, define_flags)
