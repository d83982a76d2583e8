"""The Ray executor: the stage's worker runs in long-lived Ray Data actors, one per GPU (or per CPU cores).

How a run flows:

* The driver reads the input through the data layer as the local executor does (`run_stage` hands us the
  shards lazily). A feeder thread puts each shard, serialised as JSON, on a bounded Ray queue, so at most
  a few shards per worker are ever held in memory, whatever the size of the input. A shard whose result
  is already stored travels as an empty marker, so that it comes back in turn without being computed.
* One Ray Data pipeline runs for the whole input: read tasks (no CPU) drain the queue, one block per shard,
  into `map_batches` over a fixed pool of actors (`ActorPoolStrategy(size=num_workers)`). Each actor calls
  `stage.load_worker()` once, then runs the same batched prefill engine on every shard it is given.
* Results come back in any order; `run_stage` saves each the moment it arrives (so a crashed driver
  resumes from the store) and writes them out in input order. A killed worker is restarted by Ray and its in-flight shard
  is retried (`max_restarts` / `max_task_retries`).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.runtime.shards import ShardResult, ShardTask
from deita.runtime.stage import Stage

log = logging.getLogger(__name__)

INSTALL_HINT = "--executor ray needs Ray: pip install -e '.[ray]'"
SHARDS_IN_FLIGHT_PER_WORKER = 4
"""Shards queued ahead of the workers (per worker): bounds the driver's memory and keeps workers busy."""
MAX_RESTARTS = 8
"""How often Ray restarts a dead worker actor over a run (each time its shard in flight is retried)."""
MAX_TASK_RETRIES = 4
"""How often one shard is retried after its worker died (a crash in the shard itself then stops the run)."""
_END = "__deita_end__"
_CONTEXT = {
    "enable_progress_bars": False,  # deita draws its own progress bar
    "print_on_execution_start": False,
    "raise_original_map_exception": True,  # a worker's own error, not a generic UserCodeException
    # Ray Data would otherwise gather the blocks a read task yields into one block of up to 128 MiB: all
    # shards would reach a single worker, at the end of the input. One shard per block instead.
    "target_max_block_size": 1,
}


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise DeitaError(INSTALL_HINT) from err
    return ray


# ---------------------------------------------------------------------------------------------------------
# Requests and results as plain data (JSON text in, .npy bytes out): no pickles of user data cross the wire.


def encode_requests(requests: list[Any]) -> str:
    """Turns as [instruction, response] pairs, texts as strings: the only requests stages make."""
    if all(isinstance(q, Turn) for q in requests):
        return json.dumps({"kind": "turns", "items": [[q.instruction, q.response] for q in requests]})
    if all(isinstance(q, str) for q in requests):
        return json.dumps({"kind": "texts", "items": list(requests)})
    kinds = sorted({type(q).__name__ for q in requests})
    raise DeitaError(f"the Ray executor sends Turn or str requests only, not {', '.join(kinds)}")


def decode_requests(text: str) -> list[Any]:
    payload = json.loads(text)
    if payload["kind"] == "turns":
        return [Turn(instruction, response) for instruction, response in payload["items"]]
    return list(payload["items"])


def array_to_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


# ---------------------------------------------------------------------------------------------------------
# What runs on the cluster.


class ShardWorker:
    """The Ray Data callable class: one per actor, loads the model once, then computes shard after shard."""

    def __init__(self, stage: Stage) -> None:
        self.worker = stage.load_worker()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"index": [], "values": [], "counts": [], "counters": [], "problems": []}
        for index, requests, counts in zip(batch["index"], batch["requests"], batch["counts"], strict=True):
            if not str(requests):  # a cached shard's marker: nothing to compute
                out["index"].append(int(index))
                out["values"].append(b"")
                out["counts"].append(str(counts))
                out["counters"].append("{}")
                out["problems"].append("{}")
                continue
            result = self.worker(decode_requests(str(requests)))
            out["index"].append(int(index))
            out["values"].append(array_to_bytes(result.values))
            out["counts"].append(str(counts))
            out["counters"].append(json.dumps({k: int(v) for k, v in result.counters.items()}))
            out["problems"].append(json.dumps(result.problems))
        return out


def _queue_datasource(queue: Any, readers: int):
    """A datasource of `readers` read tasks that each yield one block per shard taken from `queue`, until
    the end marker (which each puts back for the others)."""
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    def read() -> Iterator[Any]:
        while True:
            item = queue.get(block=True)
            if item == _END:
                queue.put(_END)
                return
            index, requests, counts = item
            yield pa.table({"index": pa.array([index], pa.int64()), "requests": pa.array([requests], pa.large_string()),
                            "counts": pa.array([counts], pa.string())})

    class QueueDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(read, metadata) for _ in range(readers)]

        def get_name(self) -> str:
            return "DeitaShards"

    return QueueDatasource()


# ---------------------------------------------------------------------------------------------------------
# The driver side.


class RayExecutor:
    """Runs a stage's worker in a pool of Ray Data actors; same protocol as `LocalExecutor`."""

    def __init__(self, address: str | None = None, num_workers: int | None = None) -> None:
        self.ray = import_ray()
        if num_workers is not None and num_workers < 1:
            raise DeitaError("--num-workers must be at least 1")
        self.address = address
        self.requested_workers = num_workers
        self._started_cluster = False

    # -- cluster -------------------------------------------------------------------------------------------

    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False,
                     logging_level=logging.WARNING, include_dashboard=False, configure_logging=True)
        except ConnectionError as err:
            where = self.address or "a new local cluster"
            raise DeitaError(f"cannot connect to the Ray cluster at {where}: {err}. Start one with `ray start "
                             "--head` (and `ray start --address=<head>:6379` on the other nodes), or leave "
                             "--ray-address out to start a local cluster") from err
        self._started_cluster = self.address is None
        # Ray Data logs every execution at INFO; deita prints its own progress and summary.
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def plan(self) -> tuple[int, dict[str, Any]]:
        """How many workers, and the resources of each: a GPU each when the cluster has GPUs, else CPU cores."""
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 1))
        if gpus:
            workers = self.requested_workers or gpus
            return workers, {"num_gpus": 1}
        workers = self.requested_workers or max(1, int(cpus) // 2)
        share = cpus / workers
        return workers, {"num_cpus": max(1, int(share)) if share >= 1 else share}

    # -- run -----------------------------------------------------------------------------------------------

    def run(self, stage: Stage, tasks: Iterator[ShardTask]) -> Iterator[tuple[ShardTask, ShardResult | None]]:
        tasks = iter(tasks)
        for first in tasks:  # cached shards before the first one to compute need no cluster
            if not first.cached:
                break
            yield first, None
        else:
            return
        self.connect()
        try:
            yield from self._run(stage, first, tasks)
        finally:
            if self._started_cluster:
                self.ray.shutdown()
                self._started_cluster = False

    def _run(self, stage: Stage, first: ShardTask, tasks: Iterator[ShardTask]
             ) -> Iterator[tuple[ShardTask, ShardResult | None]]:
        ray = self.ray
        from ray.data import DataContext
        from ray.util.queue import Full, Queue

        workers, resources = self.plan()
        log.info("ray executor: %d workers, %s each", workers, resources)

        queue = Queue(maxsize=SHARDS_IN_FLIGHT_PER_WORKER * workers, actor_options={"num_cpus": 0})
        stop = threading.Event()
        failure: list[BaseException] = []

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    queue.put(item, block=True, timeout=0.5)
                    return True
                except Full:
                    continue
            return False

        sent: dict[int, ShardTask] = {}

        def feed() -> None:
            try:
                for task in itertools.chain([first], tasks):
                    sent[task.index] = task
                    requests = "" if task.cached else encode_requests(task.requests)
                    item = (task.index, requests, json.dumps([int(c) for c in task.counts]))
                    if not put(item):
                        return
            except Exception as err:  # noqa: BLE001 (re-raised in the driver thread once the queue drains)
                failure.append(err)
            finally:
                put(_END)

        feeder = threading.Thread(target=feed, name="deita-ray-feeder", daemon=True)
        # The dataset keeps a copy of the context it was built under; the global one is left as it was.
        context = DataContext.get_current()
        saved = {key: getattr(context, key) for key in _CONTEXT}
        for key, value in _CONTEXT.items():
            setattr(context, key, value)
        try:
            dataset = self._dataset(stage, queue, workers, resources)
        finally:
            for key, value in saved.items():
                setattr(context, key, value)
        feeder.start()
        try:
            for row in dataset.iter_rows():
                task = sent.pop(int(row["index"]))
                if task.cached:
                    yield task, None
                    continue
                problems = {int(i): str(why) for i, why in json.loads(row["problems"]).items()}
                result = ShardResult(array_from_bytes(row["values"]), task.counts, json.loads(row["counters"]),
                                     problems)
                yield task, result
        except Exception as err:
            if isinstance(err, DeitaError):
                raise
            cause = _root_cause(err)
            if isinstance(cause, DeitaError):
                raise DeitaError(str(cause)) from err
            raise DeitaError(f"a Ray worker failed: {type(cause).__name__}: {cause}") from err
        finally:
            stop.set()
            feeder.join(timeout=5)
            ray.kill(queue.actor)
        if failure:
            raise failure[0]

    def _dataset(self, stage: Stage, queue: Any, workers: int, resources: dict[str, Any]):
        from ray.data import ActorPoolStrategy

        # Readers take no CPU: every core goes to the workers.
        dataset = self.ray.data.read_datasource(_queue_datasource(queue, workers), override_num_blocks=workers,
                                                num_cpus=0)
        map_args = dict(fn_constructor_kwargs={"stage": stage}, batch_size=1, batch_format="numpy",
                        compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2), **resources)
        with warnings.catch_warnings():
            # Ray Data already restarts actors and retries their tasks by default, without limit; we bound both
            # so that a shard that kills every worker (out of memory, say) ends the run instead of looping.
            # These are "ray_remote_args", deprecated in Ray 2.60 with no named replacement yet.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                dataset = dataset.map_batches(ShardWorker, max_restarts=MAX_RESTARTS,
                                              max_task_retries=MAX_TASK_RETRIES, **map_args)
            except TypeError:  # a Ray that no longer takes them: its defaults restart and retry
                dataset = dataset.map_batches(ShardWorker, **map_args)
        return dataset


def _root_cause(err: BaseException) -> BaseException:
    cause = getattr(err, "cause", None)  # RayTaskError
    if isinstance(cause, BaseException) and cause is not err:
        return _root_cause(cause)
    if err.__cause__ is not None and err.__cause__ is not err:
        return _root_cause(err.__cause__)
    return err
