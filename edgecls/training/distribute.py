"""Training on more than one device: which tf.distribute strategy, who writes, which precision.

TensorFlow does all of the distributing (MirroredStrategy, MultiWorkerMirroredStrategy). This
module picks the strategy from the user's choice and the machine, checks TF_CONFIG before
TensorFlow reads it so that a mistake is one clear line, keeps every worker but the chief out of
the run folder, and scopes the Keras mixed-precision policy to one training run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgecls.config import STRATEGIES
from edgecls.errors import EdgeclsError, first_line
from edgecls.tf import keras, tf
from edgecls.training.pipeline import PREFETCH_BATCHES

TF_CONFIG = "TF_CONFIG"
TRAINING_ROLES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster TF_CONFIG describes."""

    role: str
    index: int
    cluster: dict

    @property
    def is_chief(self) -> bool:
        # TensorFlow's rule: the "chief" task when the cluster has one, otherwise worker 0.
        if "chief" in self.cluster:
            return self.role == "chief"
        return self.role == "worker" and self.index == 0

    @property
    def size(self) -> int:
        return sum(len(self.cluster.get(role, ())) for role in TRAINING_ROLES)

    def __str__(self) -> str:
        return f"{self.role} {self.index}"


_TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}')


def read_tf_config(text: str | None) -> ClusterTask:
    """Parse and check TF_CONFIG (https://www.tensorflow.org/guide/distributed_training#TF_CONFIG)."""
    if not text or not text.strip():
        raise EdgeclsError("--strategy multiworker needs the cluster in the TF_CONFIG environment variable, "
                           f"{_TF_CONFIG_EXAMPLE}")
    try:
        data = json.loads(text)
    except ValueError as err:
        raise EdgeclsError(f"TF_CONFIG is not valid JSON ({err}); {_TF_CONFIG_EXAMPLE}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict) or not isinstance(data.get("task"), dict):
        raise EdgeclsError(f"TF_CONFIG needs a 'cluster' and a 'task' mapping; {_TF_CONFIG_EXAMPLE}")
    cluster = data["cluster"]
    _check_cluster(cluster)
    role, index = data["task"].get("type"), data["task"].get("index", 0)
    _check_task(role, index, cluster)
    return ClusterTask(role, index, cluster)


def _check_cluster(cluster: dict) -> None:
    unsupported = sorted(set(cluster) - set(TRAINING_ROLES) - {"evaluator"})
    if unsupported:
        raise EdgeclsError(f"TF_CONFIG cluster has {', '.join(unsupported)} tasks; --strategy multiworker trains "
                           "with 'chief' and 'worker' tasks only (no parameter servers)")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise EdgeclsError(f"TF_CONFIG cluster.{role} must be a non-empty list of host:port addresses")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise EdgeclsError(f"TF_CONFIG cluster.{role} has '{address}', which is not host:port")
    if len(cluster.get("chief", ())) > 1:
        raise EdgeclsError("TF_CONFIG cluster.chief must list exactly one address")
    if "worker" not in cluster and "chief" not in cluster:
        raise EdgeclsError("TF_CONFIG cluster lists no 'worker' (or 'chief') task")


def _check_task(role, index, cluster: dict) -> None:
    if role not in TRAINING_ROLES:
        raise EdgeclsError(f"TF_CONFIG task.type is {role!r}; a training process is a 'chief' or a 'worker'")
    if role not in cluster:
        raise EdgeclsError(f"TF_CONFIG task.type is '{role}' but cluster has no '{role}' list")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[role]):
        raise EdgeclsError(f"TF_CONFIG task.index {index!r} is not an index into cluster.{role} "
                           f"({len(cluster[role])} address(es))")


@dataclasses.dataclass
class Distribution:
    strategy: object
    kind: str  # default | mirrored | multiworker
    task: ClusterTask | None = None

    @property
    def is_chief(self) -> bool:
        return self.task is None or self.task.is_chief

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def scope(self):
        return self.strategy.scope()

    def per_replica_batch(self, global_batch: int) -> int:
        """``--batch-size`` is the global batch: TensorFlow splits each batch across the replicas."""
        if global_batch < self.replicas or global_batch % self.replicas:
            raise EdgeclsError(f"--batch-size {global_batch} is the global batch and must be a multiple of the "
                               f"{self.replicas} replicas (e.g. {self.replicas * max(1, global_batch // self.replicas)})")
        return global_batch // self.replicas

    def load_weights(self, model, path) -> None:
        if self.kind == "default":
            model.load_weights(path)
            return
        # Keras' .h5 reader hands h5py datasets straight to assign(), which BatchNorm's
        # synchronised-on-read statistics reject under a multi-worker strategy ("unsupported
        # operand type(s) for /: 'Dataset' and 'int'"); a plain copy of the model reads the file.
        plain = keras.models.clone_model(model)
        plain.load_weights(path)
        model.set_weights(plain.get_weights())

    def train_pipeline(self, dataset, count: int, global_batch: int):
        """The training batches (full ones: the pipeline drops the last partial batch)."""
        if self.replicas > 1 and count < global_batch:
            # One partial batch would leave some replica with no image (see validation_pipeline).
            raise EdgeclsError(f"the training split has {count} images, fewer than the global batch "
                               f"{global_batch}; lower --batch-size")
        return self._sharded(dataset)

    def validation_pipeline(self, dataset, count: int, global_batch: int):
        """The validation batches, padded to full batches when there is more than one replica.

        A partial last batch is split replica by replica, so some replicas get zero images, and
        TensorFlow's CPU convolutions fail on an empty batch ("input depth must be evenly
        divisible by filter depth"). The padding images carry weight 0 and the real ones
        padded/count, so val_accuracy and val_loss (a mean over padded batches) stay exact.
        """
        if self.replicas > 1 and count % global_batch:
            padded = -(-count // global_batch) * global_batch
            real_weight = tf.constant(padded / count, tf.float32)
            images = dataset.unbatch()
            real = images.map(lambda x, y: (x, y, real_weight))
            filler = images.repeat().take(padded - count).map(lambda x, y: (x, y, tf.constant(0.0)))
            dataset = real.concatenate(filler).batch(global_batch, drop_remainder=True).prefetch(PREFETCH_BATCHES)
        return self._sharded(dataset)

    def _sharded(self, dataset):
        if self.kind != "multiworker":
            return dataset
        # The pipelines start from Dataset.range over in-memory indices, not from files, so FILE
        # sharding has nothing to split. DATA keeps this worker's share of every global batch;
        # the shuffle is seeded, so all workers agree on the order and the shares are disjoint.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def describe(self, global_batch: int) -> str:
        where = f"{self.task} of {self.task.size} ({'chief' if self.is_chief else 'not chief'}), " if self.task else ""
        return (f"strategy {self.kind}: {where}{self.replicas} replica(s) in sync; global batch {global_batch} = "
                f"{self.per_replica_batch(global_batch)} per replica")


def make_distribution(name: str) -> Distribution:
    """The strategy for ``--strategy NAME``. Call it before any other TensorFlow work.

    MultiWorkerMirroredStrategy configures TensorFlow's collective ops, which is only possible
    before the runtime starts; the other strategies do not mind.
    """
    name = strategy_name(name)
    if name == "multiworker":
        task = read_tf_config(os.environ.get(TF_CONFIG))
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            raise EdgeclsError(f"cannot start {task} of the TF_CONFIG cluster: {first_line(err)}") from None
        return Distribution(strategy, "multiworker", task)

    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if os.environ.get(TF_CONFIG):
            _note("TF_CONFIG is set but --strategy is auto: this process trains alone "
                  "(use --strategy multiworker to join the cluster)")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return Distribution(tf.distribute.get_strategy(), "default")
    if not gpus:
        _note("no GPU visible: --strategy mirrored runs one replica on the CPU")
    return Distribution(tf.distribute.MirroredStrategy(), "mirrored")


def strategy_name(name: str | None) -> str:
    name = str(name or "auto").lower()
    if name not in STRATEGIES:
        raise EdgeclsError(f"unknown strategy '{name}'; choose {', '.join(STRATEGIES)}")
    return name


def writes_run_folder(strategy: str | None) -> bool:
    """Whether this process writes the run folder, known from TF_CONFIG before TensorFlow starts."""
    if strategy_name(strategy) != "multiworker":
        return True
    return read_tf_config(os.environ.get(TF_CONFIG)).is_chief


@contextlib.contextmanager
def writable_run_dir(out: Path, dist: Distribution):
    """The folder this process writes: the run folder for the chief, a temporary one for others.

    Every worker still saves its checkpoints: reading BatchNorm statistics under
    MultiWorkerMirroredStrategy is an all-reduce that needs every worker, so saving only on
    the chief would hang it. The other workers' copies go to a folder removed at the end.
    """
    if dist.is_chief:
        yield Path(out)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"edgecls-{dist.task.role}{dist.task.index}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def adopt_chief_files(out: Path, scratch: Path, names) -> None:
    """Copy the chief's resume files into a worker's scratch folder, so all replicas restart alike."""
    from edgecls.fsutil import atomic_path

    for name in names:
        source = Path(out) / name
        if not source.is_file():
            raise EdgeclsError(f"cannot resume {out} on this worker: {source} is not visible here; with "
                               "--strategy multiworker, --out must be on storage every worker can read")
        with atomic_path(Path(scratch) / name) as tmp:
            shutil.copyfile(source, tmp)


@contextlib.contextmanager
def precision_policy(precision: str):
    """Set the Keras global dtype policy for one run and put the previous one back afterwards.

    The policy is process-wide; leaving mixed_float16 set would silently change every model
    built later in the same process (tests, notebooks, `edgecls demo` after a run).
    """
    previous = keras.mixed_precision.global_policy()
    if precision != "float32" and not tf.config.list_logical_devices("GPU"):
        _cpu_precision_note(precision)
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _cpu_precision_note(precision: str) -> None:
    if precision == "mixed_float16":
        _note("mixed_float16 without a GPU trains correctly but usually slower than float32 (it is the GPU fast path)")
    elif not _cpu_has_bfloat16():
        _note("this CPU has no bfloat16 instructions (AVX512_BF16/AMX): mixed_bfloat16 will be slower than float32")


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # not Linux: no cheap way to tell, so no warning
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _note(message: str) -> None:
    print(f"note: {message}")
