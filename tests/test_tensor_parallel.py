"""The tensor-parallel MLP block: our column/row split and conjugate operators against torch's own tensor parallelism
(``ColwiseParallel``/``RowwiseParallel`` on the same weights) and against the unsplit block, on real gloo ranks."""
import copy

import pytest
import torch

from labs.runtime.launcher import launch
from labs.parallel.tensor import MLPModel, gather_shards, tensor_parallel_block


def _compare_with_torch_tp(rank, size, width, batch):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
    mesh = init_device_mesh("cpu", (size,), mesh_dim_names=("tp",))
    block = MLPModel(num_layers=1, width=width, seed=3).layers()[0]
    x_data, target = MLPModel(width=width).batch(batch, seed=5)
    theirs = parallelize_module(copy.deepcopy(block), mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    ours = tensor_parallel_block(block, rank, size, mesh.get_group("tp"))
    results = {}
    for name, module in (("ours", ours), ("torch", theirs)):
        x = x_data.clone().requires_grad_()
        out = module(x)
        (out * target).sum().backward()
        grads = {n: (p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad).clone()
                 for n, p in module.named_parameters()}
        results[name] = (out.detach(), x.grad.clone(), grads)
    dist.barrier()
    return results


@pytest.mark.parametrize("size,width", [(2, 8), (4, 6)])
def test_our_operators_match_torch_tensor_parallel_and_one_process(size, width):
    per_rank = launch(_compare_with_torch_tp, world_size=size, args=(size, width, 5), timeout_s=60)
    block = MLPModel(num_layers=1, width=width, seed=3).layers()[0]
    x, target = MLPModel(width=width).batch(5, seed=5)
    x.requires_grad_()
    out = block(x)
    (out * target).sum().backward()
    for rank, results in enumerate(per_rank):
        (our_out, our_xgrad, ours), (their_out, their_xgrad, theirs) = results["ours"], results["torch"]
        # same local shards, outputs and input gradients as torch's ColwiseParallel/RowwiseParallel
        assert set(ours) == set(theirs) == {"up.weight", "up.bias", "down.weight", "down.bias"}
        assert ours["up.weight"].shape == (4 * width // size, width) and ours["down.weight"].shape == (width, 4 * width // size)
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-5)
        torch.testing.assert_close(our_out, their_out, rtol=0, atol=1e-5)
        torch.testing.assert_close(our_xgrad, their_xgrad, rtol=0, atol=1e-5)
        # and the unsplit block in one process
        torch.testing.assert_close(our_out, out.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(our_xgrad, x.grad, rtol=0, atol=1e-5)
    full = gather_shards([results["ours"][2] for results in per_rank])
    for name, p in block.named_parameters():
        torch.testing.assert_close(full[name], p.grad, rtol=0, atol=1e-5)


def test_a_block_without_its_operators_is_wrong():
    """The check can fail: leave out g (no all-reduce of the partial sums) and the output is wrong."""
    def run(rank):
        import torch.distributed as dist
        group = dist.new_group([0, 1])
        block = MLPModel(num_layers=1, width=8, seed=3).layers()[0]
        shard = tensor_parallel_block(block, rank, 2, group, g=lambda x, group: x)
        x, _ = MLPModel(width=8).batch(4, seed=5)
        return shard(x).detach(), block(x).detach()
    for ours, reference in launch(run, world_size=2, timeout_s=60):
        assert (ours - reference).abs().max() > 1e-3
