"""The process grid of a hybrid run: P pipeline stages x T tensor-parallel ranks x D data-parallel replicas.

    grid = Grid(pp=2, tp=2, dp=2)          # 8 ranks
    print(grid.layout())                   # which global rank is which (dp, pp, tp) coordinate
    grid.check(model, batch_size=64, microbatches=4)   # a bad grid fails here, before any process starts

**Rank layout.** ``rank = (dp * P + pp) * T + tp``: the tensor-parallel rank varies fastest, then the stage, then the
replica. Tensor parallelism sits innermost because it talks the most (two all-reduces per block per micro-batch, on
the critical path): Megatron-LM puts it there so that a tensor-parallel group falls on neighbouring GPUs of one node,
joined by the fastest links. Megatron's default order goes on with data parallelism and puts the pipeline outermost
(its point-to-point messages are the smallest, so they may cross nodes); here the replica is outermost instead, so
that ranks 0 .. P*T-1 are exactly the PP x TP run without data parallelism and the 3-D grid just adds replicas. On
one machine the order changes no measurement.

**Groups, with torch's own tool.** Inside a rank, ``Place`` builds the groups with
``torch.distributed.device_mesh.init_device_mesh(device, (D, P, T), mesh_dim_names=("dp", "pp", "tp"))``: one call
names the whole grid with the same row-major layout as above, creates one process group per row of each dimension
(it calls ``new_group`` for us, on every rank, in the same order, which ``new_group`` requires), and is the mesh that
torch's own tensor parallelism (``ColwiseParallel``...) takes, so our layers and torch's are tested on the same one.
The pipeline needs no group: each tensor-parallel rank t of stage s sends to rank t of stage s+1 in its own replica,
by global rank, with the runtime's ordinary point-to-point messages.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models.toy import ModelError
from ..schedules import ScheduleError
from ..parallel import tensor as tensor_parallel
from ..parallel.data import all_reduce_gradients


class GridError(ModelError):
    """A grid that cannot run: the message says what to change."""


@dataclass(frozen=True)
class Grid:
    pp: int
    tp: int = 1
    dp: int = 1

    @property
    def size(self) -> int:
        return self.pp * self.tp * self.dp

    def rank_of(self, dp: int, pp: int, tp: int) -> int:
        return (dp * self.pp + pp) * self.tp + tp

    def coordinates(self, rank: int) -> tuple[int, int, int]:
        """(dp, pp, tp) of a global rank."""
        rest, tp = divmod(rank, self.tp)
        dp, pp = divmod(rest, self.pp)
        return dp, pp, tp

    def layout(self) -> str:
        """One line per replica and stage: the global ranks of its tensor-parallel group."""
        lines = [f"grid PP={self.pp} x TP={self.tp} x DP={self.dp} = {self.size} ranks; rank = (dp*{self.pp} + pp)"
                 f"*{self.tp} + tp"]
        for dp in range(self.dp):
            for pp in range(self.pp):
                ranks = " ".join(str(self.rank_of(dp, pp, tp)) for tp in range(self.tp))
                lines.append(f"  replica {dp}, stage {pp}: ranks {ranks}")
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"pp": self.pp, "tp": self.tp, "dp": self.dp, "ranks": self.size,
                "coordinates": [list(self.coordinates(r)) for r in range(self.size)]}

    def check(self, model, batch_size: int, microbatches: int, world_size: int | None = None) -> None:
        """Raise GridError, saying what to change, for a grid that cannot run this model and batch."""
        for name, value in (("pipeline stages P", self.pp), ("tensor-parallel ranks T (--tp)", self.tp),
                            ("data-parallel replicas D (--dp)", self.dp)):
            if not isinstance(value, int) or value < 1:
                raise GridError(f"the number of {name} must be a whole number >= 1, got {value!r}")
        if world_size is not None and world_size != self.size:
            raise GridError(f"the grid needs P*T*D = {self.pp}*{self.tp}*{self.dp} = {self.size} ranks but "
                            f"{world_size} were started: start {self.size} (torchrun --nproc-per-node {self.size}) "
                            f"or choose P, T, D whose product is {world_size}")
        if self.tp > 1:
            if not isinstance(model, tensor_parallel.MLPModel):
                raise GridError(f"tensor parallelism splits MLP blocks (Linear h->4h, GELU, Linear 4h->h); "
                                f"{type(model).__name__} has none: use labs.parallel.tensor.MLPModel or T=1")
            if model.hidden % self.tp:
                raise GridError(f"the MLP's hidden size 4h = {model.hidden} (width h = {model.width}) does not split "
                                f"into T={self.tp} equal shards: choose T dividing {model.hidden} or a width h with "
                                f"4h divisible by {self.tp}")
        if batch_size % (self.dp * microbatches):
            raise GridError(f"a batch of {batch_size} samples does not split into D={self.dp} replicas x "
                            f"M={microbatches} micro-batches: choose D*M dividing {batch_size} or change the batch "
                            f"size (e.g. {self.dp * microbatches * max(1, batch_size // (self.dp * microbatches))})")

    def gather(self, results: list) -> tuple[list[dict], float]:
        """Each replica's full gradients (its ranks' shards joined), and the loss of the whole batch.

        After the data-parallel all-reduce every replica must hold the whole batch's gradients, so each is checked.
        """
        replicas = []
        for dp in range(self.dp):
            grads = {}
            for pp in range(self.pp):
                shards = [results[self.rank_of(dp, pp, tp)].grads for tp in range(self.tp)]
                grads.update(shards[0] if self.tp == 1 else tensor_parallel.gather_shards(shards))
            replicas.append(grads)
        loss = sum(v for dp in range(self.dp) for pp in range(self.pp)
                   for v in results[self.rank_of(dp, pp, 0)].losses.values()) / self.dp
        return replicas, loss


class Place:
    """One rank's place in the grid, inside a worker: its coordinates, groups and share of the work.

    Without a grid (``grid=None``) it is the plain pipeline: the rank is the pipeline rank, and every method below
    returns what the runtime did before grids existed.
    """

    def __init__(self, rank: int, pipeline_ranks: int, grid: Grid | None, device: str = "cpu"):
        import torch.distributed as dist
        self.grid = grid or Grid(pp=pipeline_ranks)
        if self.grid.pp != pipeline_ranks:
            raise ScheduleError(f"the schedule has {pipeline_ranks} ranks but the grid has P={self.grid.pp} stages")
        if dist.get_world_size() != self.grid.size:
            what = "the schedule has" if grid is None else "the grid (P*T*D) has"
            raise ScheduleError(f"{what} {self.grid.size} ranks but {dist.get_world_size()} were launched")
        self.rank = rank
        self.dp, self.pp, self.tp = self.grid.coordinates(rank)
        self.tp_group = self.dp_group = None
        self.log: list = []
        if self.grid.tp * self.grid.dp > 1:
            from torch.distributed.device_mesh import init_device_mesh
            mesh = init_device_mesh("cuda" if dist.get_backend() == "nccl" else "cpu",
                                    (self.grid.dp, self.grid.pp, self.grid.tp), mesh_dim_names=("dp", "pp", "tp"))
            assert tuple(mesh.get_coordinate()) == (self.dp, self.pp, self.tp), "mesh layout differs from Grid's"
            self.tp_group, self.dp_group = mesh.get_group("tp"), mesh.get_group("dp")

    def layers(self, model) -> list:
        """All layers of the model as this rank holds them: whole, or its tensor-parallel shards."""
        if self.grid.tp == 1:
            return model.layers()
        return model.layers(tp_rank=self.tp, tp_size=self.grid.tp, group=self.tp_group)

    def pace(self, pace):
        """Per-layer pacing: a layer split T ways takes 1/T of the time on each rank (its all-reduces included)."""
        return None if pace is None else tuple(t / self.grid.tp for t in pace)

    def share(self, batch):
        """This replica's share of a (inputs, targets) batch."""
        return tuple(t.chunk(self.grid.dp)[self.dp] for t in batch)

    def peers(self, owners: dict) -> dict:
        """Stage -> the global rank this rank exchanges with there: same replica, same tensor-parallel rank."""
        return {stage: self.grid.rank_of(self.dp, owner, self.tp) for stage, owner in owners.items()}

    def start_step(self) -> None:
        """Record this step's all-reduces (``tensor_parallel.all_reduce`` appends to the list)."""
        self.log = []
        tensor_parallel.RECORDER = self.log

    def finish_step(self, stages: dict, trace, clock_zero: float) -> None:
        """Data parallel: average the gradients over the replicas; then put the step's all-reduces in the trace."""
        if self.dp_group is not None and self.grid.dp > 1:
            all_reduce_gradients([p for s in stages.values() for p in s.layers.parameters()], self.dp_group,
                                 self.grid.dp)
        tensor_parallel.RECORDER = None
        trace.collectives = [(kind, start - clock_zero, end - clock_zero, nbytes)
                             for kind, start, end, nbytes in self.log]
