"""The process grid of a hybrid run: P pipeline ranks x T tensor-parallel ranks x D data-parallel replicas.

    grid = Grid(P=2, T=2, D=2)             # 8 ranks
    print(grid.layout())                   # which global rank is which (replica, pipeline rank, tp rank)
    grid.check(model, batch_size=64, M=4)  # a bad grid fails here, before any process starts

**Rank layout.** ``rank = (d * P + p) * T + t`` for replica d, pipeline rank p and tensor-parallel rank t: the
tensor-parallel rank varies fastest, then the pipeline rank, then the replica. Tensor parallelism sits innermost
because it talks the most (two all-reduces per block per micro-batch, on the critical path): Megatron-LM (arXiv
1909.08053, 2104.04473) puts it there so that a tensor-parallel group falls on neighbouring GPUs of one node, joined
by the fastest links. Megatron's default order goes on with data parallelism and puts the pipeline outermost (its
point-to-point messages are the smallest, so they may cross nodes); here the replica is outermost instead, so that
ranks 0 .. P*T-1 are exactly the P x T run without data parallelism and the 3-D grid just adds replicas. On one
machine the order changes no measurement.

**Groups, with torch's own tool.** Inside a rank, ``Place`` builds the groups with
``torch.distributed.device_mesh.init_device_mesh(device, (D, P, T), mesh_dim_names=("dp", "pp", "tp"))``: one call
names the whole grid with the same row-major layout as above, creates one process group per row of each dimension
(it calls ``new_group`` for us, on every rank, in the same order, which ``new_group`` requires), and is the mesh that
torch's own tensor parallelism (``ColwiseParallel``...) takes, so our layers and torch's are tested on the same one.
The pipeline needs no group: each tensor-parallel rank t of pipeline rank p sends to rank t of pipeline rank p+1 in
its own replica, by global rank, with the runtime's ordinary point-to-point messages.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import GridError, ScheduleError
from . import tensor
from .data import all_reduce_gradients

__all__ = ["Grid", "GridError", "Place"]


@dataclass(frozen=True)
class Grid:
    """P pipeline ranks x T tensor-parallel ranks x D data-parallel replicas: P*T*D processes."""

    P: int
    T: int = 1
    D: int = 1

    @property
    def size(self) -> int:
        return self.P * self.T * self.D

    def rank_of(self, replica: int, pipeline_rank: int, tp_rank: int) -> int:
        """The global rank at these coordinates: (replica * P + pipeline_rank) * T + tp_rank."""
        return (replica * self.P + pipeline_rank) * self.T + tp_rank

    def coordinates(self, rank: int) -> tuple[int, int, int]:
        """(replica, pipeline rank, tensor-parallel rank) of a global rank."""
        rest, tp_rank = divmod(rank, self.T)
        replica, pipeline_rank = divmod(rest, self.P)
        return replica, pipeline_rank, tp_rank

    def layout(self) -> str:
        """One line per replica and pipeline rank: the global ranks of its tensor-parallel group."""
        lines = [f"grid P={self.P} x T={self.T} x D={self.D} = {self.size} ranks; rank = (replica*{self.P} + "
                 f"pipeline rank)*{self.T} + tp rank"]
        for replica in range(self.D):
            for pipeline_rank in range(self.P):
                ranks = " ".join(str(self.rank_of(replica, pipeline_rank, t)) for t in range(self.T))
                lines.append(f"  replica {replica}, pipeline rank {pipeline_rank}: ranks {ranks}")
        return "\n".join(lines)

    def summary(self) -> dict:
        """{"P", "T", "D", "ranks", "coordinates": [[replica, pipeline rank, tp rank] per global rank]}."""
        return {"P": self.P, "T": self.T, "D": self.D, "ranks": self.size,
                "coordinates": [list(self.coordinates(r)) for r in range(self.size)]}

    def check(self, model, batch_size: int, M: int, world_size: int | None = None) -> None:
        """Raise GridError, saying what to change, for a grid that cannot run this model and batch of M
        micro-batches (``world_size``: the processes torchrun started, when it did)."""
        for name, value in (("pipeline ranks P (-P)", self.P), ("tensor-parallel ranks T (-T)", self.T),
                            ("data-parallel replicas D (-D)", self.D)):
            if not isinstance(value, int) or value < 1:
                raise GridError(f"the number of {name} must be a whole number >= 1, got {value!r}")
        if world_size is not None and world_size != self.size:
            raise GridError(f"the grid needs P*T*D = {self.P}*{self.T}*{self.D} = {self.size} ranks but "
                            f"{world_size} were started: start {self.size} (torchrun --nproc-per-node {self.size}) "
                            f"or choose P, T, D whose product is {world_size}")
        if self.T > 1:
            if not isinstance(model, tensor.MLPModel):
                raise GridError(f"tensor parallelism splits MLP blocks (Linear h->4h, GELU, Linear 4h->h); "
                                f"{type(model).__name__} has none: use labs.parallel.tensor.MLPModel or T=1")
            if model.hidden % self.T:
                raise GridError(f"the MLP's hidden size 4h = {model.hidden} (width h = {model.width}) does not split "
                                f"into T={self.T} equal shards: choose T dividing {model.hidden} or a width h with "
                                f"4h divisible by {self.T}")
        if batch_size % (self.D * M):
            raise GridError(f"a batch of {batch_size} samples does not split into D={self.D} replicas x "
                            f"M={M} micro-batches: choose D*M dividing {batch_size} or change the batch "
                            f"size (e.g. {self.D * M * max(1, batch_size // (self.D * M))})")

    def gather(self, results: list) -> tuple[list[dict], float]:
        """Each replica's full gradients (its ranks' shards joined), and the loss of the whole batch.

        After the data-parallel all-reduce every replica must hold the whole batch's gradients, so each is checked.
        """
        replicas = []
        for replica in range(self.D):
            grads = {}
            for p in range(self.P):
                shards = [results[self.rank_of(replica, p, t)].grads for t in range(self.T)]
                grads.update(shards[0] if self.T == 1 else tensor.gather_shards(shards))
            replicas.append(grads)
        loss = sum(value for replica in range(self.D) for p in range(self.P)
                   for value in results[self.rank_of(replica, p, 0)].losses.values()) / self.D
        return replicas, loss


class Place:
    """One rank's place in the grid, inside a worker: its coordinates, groups and share of the work.

    Without a grid (``grid=None``) it is the plain pipeline: the rank is the pipeline rank, and every method below
    returns what the runtime did before grids existed. Raises ScheduleError when the schedule's P or the launched
    world size does not match the grid.
    """

    def __init__(self, rank: int, P: int, grid: Grid | None, device: str = "cpu", network=None):
        import torch.distributed as dist
        self.network = network  # a labs.timeline.Network over global ranks: the all-reduces' modelled links
        self.grid = grid or Grid(P=P)
        if self.grid.P != P:
            raise ScheduleError(f"the schedule has {P} ranks but the grid has P={self.grid.P} pipeline ranks")
        if dist.get_world_size() != self.grid.size:
            what = "the schedule has" if grid is None else "the grid (P*T*D) has"
            raise ScheduleError(f"{what} {self.grid.size} ranks but {dist.get_world_size()} were launched")
        self.rank = rank
        self.replica, self.pipeline_rank, self.tp_rank = self.grid.coordinates(rank)
        self.tp_group = self.dp_group = None
        self.log: list = []
        if self.grid.T * self.grid.D > 1:
            from torch.distributed.device_mesh import init_device_mesh
            mesh = init_device_mesh("cuda" if dist.get_backend() == "nccl" else "cpu",
                                    (self.grid.D, self.grid.P, self.grid.T), mesh_dim_names=("dp", "pp", "tp"))
            assert tuple(mesh.get_coordinate()) == (self.replica, self.pipeline_rank, self.tp_rank), \
                "mesh layout differs from Grid's"
            self.tp_group, self.dp_group = mesh.get_group("tp"), mesh.get_group("dp")

    def layers(self, model) -> list:
        """All layers of the model as this rank holds them: whole, or its tensor-parallel shards."""
        if self.grid.T == 1:
            return model.layers()
        return model.layers(tp_rank=self.tp_rank, T=self.grid.T, group=self.tp_group)

    def pace(self, pace_s):
        """Per-layer pacing in seconds: a layer split T ways takes 1/T of the time on each rank (its all-reduces
        included)."""
        return None if pace_s is None else tuple(t / self.grid.T for t in pace_s)

    def share(self, batch):
        """This replica's share of a (inputs, targets) batch."""
        return tuple(t.chunk(self.grid.D)[self.replica] for t in batch)

    def peers(self, owners: dict) -> dict:
        """Stage -> the global rank this rank exchanges with there: same replica, same tensor-parallel rank."""
        return {stage: self.grid.rank_of(self.replica, owner, self.tp_rank) for stage, owner in owners.items()}

    def start_step(self) -> None:
        """Record this step's all-reduces (``labs.parallel.tensor.all_reduce`` appends to the list), and give them
        their group's modelled link when the run has a network (``labs.parallel.tensor.LINKS``)."""
        self.log = []
        tensor.RECORDER = self.log
        tensor.LINKS = {} if self.network is None else self.links()

    def links(self) -> dict:
        """{"tp": link of this rank's tensor-parallel ring, "dp": of its data-parallel ring} in the run's network."""
        g = self.grid
        tp = [g.rank_of(self.replica, self.pipeline_rank, t) for t in range(g.T)]
        dp = [g.rank_of(d, self.pipeline_rank, self.tp_rank) for d in range(g.D)]
        return {"tp": self.network.group_link(tp), "dp": self.network.group_link(dp)}

    def finish_step(self, stages: dict, trace, clock_zero: float) -> None:
        """Data parallel: average the gradients over the replicas; then put the step's all-reduces in the trace."""
        if self.dp_group is not None and self.grid.D > 1:
            all_reduce_gradients([p for s in stages.values() for p in s.layers.parameters()], self.dp_group,
                                 self.grid.D)
        tensor.RECORDER, tensor.LINKS = None, {}
        trace.collectives = [(kind, start - clock_zero, end - clock_zero, size)
                             for kind, start, end, size in self.log]
