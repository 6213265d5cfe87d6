"""The collective cost model (no process starts): a ring all-reduce's wire bytes and time, nodes and their links,
and the simulated P x T x D step on two clusters, where PP=2 x TP=2 against PP=4 flips with the link (r16 §D4)."""
import pytest

from labs.errors import InputError
from labs.models.cut import split_layers
from labs.schedules import one_f_one_b
from labs.theory import (data_parallel_bytes, ring_wire_bytes, tensor_parallel_break_even, tensor_parallel_bytes)
from labs.timeline.collectives import grid_costs, pipeline_network, simulate_grid, wire_bytes
from labs.timeline.costs import Costs, Link, Network, Nodes
from labs.timeline.trace import RankTrace, Trace

# a 7B-class layer (h=4096, s=2048, b=1, bf16) on an H100 at 40% of 989 TFLOP/s, one toy block = half a layer
LAYER_FORWARD_S = (24 * 2048 * 4096 ** 2 + 4 * 2048 ** 2 * 4096) / (0.4 * 989e12)
AR_BYTES = 2 * 2048 * 4096  # one (s, b, h) bf16 tensor
TIME, SIZE = 0.020 / (LAYER_FORWARD_S / 2), 512 / AR_BYTES
NVLINK, INFINIBAND = Link(0.005, 450_000).scaled(TIME, SIZE), Link(0.005, 50_000).scaled(TIME, SIZE)


def test_ring_wire_bytes_is_2_n_minus_1_over_n_of_the_buffer():
    assert [ring_wire_bytes(1000, n) for n in (1, 2, 4, 8)] == [0, 1000, 1500, 1750]
    with pytest.raises(InputError):
        ring_wire_bytes(1000, 0)


def test_tensor_and_data_parallel_bytes_differ_from_buffers_above_two_ranks():
    """r16 B6, at n = 4: PP=2 x TP=4 (h=16, B=64, L=8) and PP=2 x DP=4 (8 512 parameters per rank)."""
    assert tensor_parallel_bytes(2, 8, 64, 16) == (122_880, 122_880)  # equal at T = 2, the only size run before
    assert tensor_parallel_bytes(4, 8, 64, 16) == (245_760, 368_640)
    assert data_parallel_bytes(2, 1, 4, 8512) == (272_384, 408_576)
    assert tensor_parallel_bytes(1, 8, 64, 16) == (0, 0) and data_parallel_bytes(2, 2, 1, 100) == (0, 0)


def test_all_reduce_time_is_the_rings():
    link = Link(latency_ms=1.0, bandwidth_mb_s=1.0)  # 1 ms, 1 byte per microsecond
    assert link.all_reduce_s(4000, 1) == 0
    assert link.all_reduce_s(4000, 2) == pytest.approx(2 * 0.001 + 4000 / 1e6)
    assert link.all_reduce_s(4000, 4) == pytest.approx(6 * 0.001 + 1.5 * 4000 / 1e6)
    with pytest.raises(InputError):
        link.all_reduce_s(10, 0)


def test_a_scaled_link_keeps_the_ratio_of_communication_to_compute():
    real = Link(0.005, 450_000)
    toy = real.scaled(TIME, SIZE)
    assert toy.time_s(512) == pytest.approx(real.time_s(AR_BYTES) * TIME)
    assert toy.all_reduce_s(512, 2) == pytest.approx(real.all_reduce_s(AR_BYTES, 2) * TIME)
    assert real.all_reduce_s(AR_BYTES, 2) * 1e3 == pytest.approx(0.047, abs=5e-4)  # NVLink4, 16.8 MB, T=2
    assert Link(0.005, 50_000).all_reduce_s(AR_BYTES, 2) * 1e3 == pytest.approx(0.346, abs=5e-4)  # InfiniBand NDR


def test_nodes_pick_the_link_by_node_and_a_ring_runs_at_its_slowest_hop():
    cluster = Nodes(gpus_per_node=2, inside=NVLINK, across=INFINIBAND)
    assert cluster.link(0, 1) == NVLINK and cluster.link(1, 2) == INFINIBAND
    assert cluster.group_link([2, 3]) == NVLINK and cluster.group_link([0, 2]) == INFINIBAND
    assert Network(Link(1)).group_link([5]) == Link()
    with pytest.raises(InputError):
        Nodes(gpus_per_node=0)
    with pytest.raises(InputError, match="keyword arguments"):
        Nodes(4)


def _step_ms(P, T, network, M=8, rank_of=None):
    blocks = split_layers(8, P)
    costs = Costs([0.020 / T * len(b) for b in blocks], [0.040 / T * len(b) for b in blocks])
    trace = simulate_grid(one_f_one_b(P, M), costs, blocks, T=T, network=network, rank_of=rank_of,
                          activation_bytes=512, message_bytes=512)
    return round(trace.step_time_s * 1000)


def test_the_comparison_flips_with_the_link():
    """Free collectives: PP2xTP2 1080 vs PP4 1320 ms; one node on NVLink: 1143 vs 1332; four machines on
    InfiniBand: PP=4 wins, 1417 vs 1544 (r16 §D4, 1F1B, M=8, 8 blocks of 20/40 ms)."""
    assert (_step_ms(4, 1, None), _step_ms(2, 2, None)) == (1320, 1080)
    node = Nodes(gpus_per_node=4, inside=NVLINK, across=INFINIBAND)
    machines = Nodes(gpus_per_node=1, inside=NVLINK, across=INFINIBAND)
    assert (_step_ms(4, 1, node), _step_ms(2, 2, node)) == (1332, 1143)
    assert (_step_ms(4, 1, machines), _step_ms(2, 2, machines)) == (1417, 1544)


def test_the_rank_order_decides_which_traffic_crosses_nodes():
    """Two nodes of two GPUs: the TP pair inside a node wins (1185 vs 1373); split across them it loses (1516)."""
    two = Nodes(gpus_per_node=2, inside=NVLINK, across=INFINIBAND)
    pipeline_fastest = lambda d, p, t: (d * 2 + t) * 2 + p  # noqa: E731 - the pair split over the nodes
    assert (_step_ms(4, 1, two), _step_ms(2, 2, two), _step_ms(2, 2, two, rank_of=pipeline_fastest)) == (1373, 1185, 1516)
    # negative control: everything in one node, the split pair is as fast as the other
    one = Nodes(gpus_per_node=4, inside=NVLINK, across=INFINIBAND)
    assert _step_ms(2, 2, one, rank_of=pipeline_fastest) == _step_ms(2, 2, one)


def test_break_even_matches_the_simulator():
    """Below r* = 1.5(P-P')/(M+P'-1) the wider stages win, above it the pipeline (all-reduce a = r * F/T)."""
    for M in (8, 16, 32):
        r_star = tensor_parallel_break_even(4, 2, M)
        for r, wide_wins in ((0.8 * r_star, True), (1.2 * r_star, False)):
            a = r * 0.010
            blocks = split_layers(8, 2)
            costs = Costs([4 * (0.010 + a)] * 2, [4 * (0.020 + a) - a, 4 * (0.020 + a)])
            wide = simulate_grid(one_f_one_b(2, M), costs, blocks).step_time_s
            deep = simulate_grid(one_f_one_b(4, M), Costs(0.040, 0.080), split_layers(8, 4)).step_time_s
            assert (wide < deep) is wide_wins, (M, r)


def test_without_a_network_the_costs_are_unchanged_and_a_grid_sync_ends_the_step():
    blocks, owners = split_layers(8, 2), {0: 0, 1: 1}
    costs = Costs(0.01, 0.02)
    assert grid_costs(costs, blocks, owners, T=2) == (costs, [0.0, 0.0])
    net = Network(Link(latency_ms=1.0))
    _, sync = grid_costs(costs, blocks, owners, T=1, D=2, network=net, gradient_bytes=[100, 100])
    assert sync == [pytest.approx(0.002)] * 2
    trace = simulate_grid(one_f_one_b(2, 2), Costs([0.04, 0.04], [0.08, 0.08]), blocks, D=2, network=net,
                          gradient_bytes=[100, 100])
    plain = simulate_grid(one_f_one_b(2, 2), Costs([0.04, 0.04], [0.08, 0.08]), blocks, network=net)  # no replica
    assert trace.ranks[0].collectives[0][0] == "dp"
    assert trace.step_time_s == pytest.approx(plain.step_time_s + 0.002)
    assert pipeline_network(Nodes(gpus_per_node=2, inside=NVLINK, across=INFINIBAND), 2,
                            lambda d, p, t: (d * 2 + p) * 2 + t).link(0, 1) == INFINIBAND


def test_wire_bytes_of_a_trace_count_each_kind_on_its_group():
    rank = RankTrace(0, collectives=[("tp", 0, 1, 400), ("dp", 1, 2, 1000)])
    assert wire_bytes(Trace([rank]), T=4, D=2) == {"inside_stages": 600, "across_replicas": 1000}
