"""The pipeline simulator: exact placement and the schedules' step times."""

import itertools
import math
import random

import pytest

from al_keras.distribute import pipeline_simulator as ps


def _bottleneck(costs, placement):
    """Largest per-device sum, added left to right as the simulator does."""
    sums = {}
    for cost, device in zip(costs, placement):
        sums[device] = sums.get(device, 0.0) + cost
    return max(sums.values())


def _brute_force_bottleneck(costs, num_devices):
    """Least bottleneck over every contiguous split into non-empty groups."""
    num_blocks = len(costs)
    groups = min(num_devices, num_blocks)
    best = math.inf
    for cuts in itertools.combinations(range(1, num_blocks), groups - 1):
        edges = (0, *cuts, num_blocks)
        worst = max(sum(costs[a:b]) for a, b in zip(edges, edges[1:]))
        best = min(best, worst)
    return best


def _optimal_bottleneck(costs, num_devices):
    """Least bottleneck over every contiguous split into non-empty groups, by
    dynamic programming over prefix sums (the brute force is exponential)."""
    num_blocks = len(costs)
    groups = min(num_devices, num_blocks)
    prefix = [0.0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    # best[j]: least bottleneck of the first j blocks in the groups so far.
    best = [prefix[j] if j else math.inf for j in range(num_blocks + 1)]
    for _ in range(groups - 1):
        best = [math.inf] + [min(max(best[i], prefix[j] - prefix[i]) for i in range(1, j))
                             if j > 1 else math.inf for j in range(1, num_blocks + 1)]
    return best[num_blocks]


def _assert_well_formed(placement, num_blocks, num_devices):
    assert len(placement) == num_blocks
    assert placement[0] == 0
    assert all(b - a in (0, 1) for a, b in zip(placement, placement[1:]))
    assert placement[-1] == min(num_devices, num_blocks) - 1


# --- balanced_partition ---------------------------------------------------


def test_partition_matches_brute_force_on_random_cases():
    rng = random.Random(20240611)
    for _ in range(400):
        num_blocks = rng.randint(1, 9)
        num_devices = rng.randint(1, num_blocks + 2)
        if rng.random() < 0.3:
            costs = [float(rng.randint(0, 5)) for _ in range(num_blocks)]
        else:
            costs = [rng.uniform(0.0, 10.0) for _ in range(num_blocks)]
        placement = ps.balanced_partition(costs, num_devices)
        _assert_well_formed(placement, num_blocks, num_devices)
        assert _bottleneck(costs, placement) == _brute_force_bottleneck(
            costs, num_devices
        ), (costs, num_devices, placement)


def test_partition_beats_greedy_fill():
    # Moving on to the next device once the mean load would be exceeded
    # gives [7], [4, 2], [8, 1, 7] (16); the optimum is [7, 4], [2, 8], [1, 7].
    costs = [7, 4, 2, 8, 1, 7]
    assert ps.balanced_partition(costs, 3) == [0, 0, 1, 1, 2, 2]
    assert _bottleneck(costs, ps.balanced_partition(costs, 3)) == 11
    # Greedy gives [2, 6], [9, 7, 9] (25); the optimum is [2, 6, 9], [7, 9].
    costs = [2, 6, 9, 7, 9]
    assert _bottleneck(costs, ps.balanced_partition(costs, 2)) == 17
    costs = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert _bottleneck(costs, ps.balanced_partition(costs, 3)) == 17


def test_partition_edge_cases():
    assert ps.balanced_partition([3.0], 1) == [0]
    assert ps.balanced_partition([3.0], 5) == [0]
    assert ps.balanced_partition([1, 2, 3], 3) == [0, 1, 2]
    assert ps.balanced_partition([1, 2, 3], 8) == [0, 1, 2]
    assert ps.balanced_partition([1, 2, 3, 4], 1) == [0, 0, 0, 0]
    zeros = ps.balanced_partition([0, 0, 0, 0, 0], 2)
    _assert_well_formed(zeros, 5, 2)
    assert ps.balanced_partition([10, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "costs, num_devices, message",
    [
        ([1, 2], 0, "num_devices must be an int >= 1"),
        ([1, 2], -3, "num_devices must be an int >= 1"),
        ([1, 2], 1.5, "num_devices must be an int >= 1"),
        ([], 2, "costs is empty"),
        ([1, -0.5, 2], 2, r"costs\[1\] is -0.5"),
        ([1, float("nan")], 2, r"costs\[1\] is nan"),
        ([float("inf")], 1, r"costs\[0\] is inf"),
    ],
)
def test_partition_rejects_bad_input(costs, num_devices, message):
    with pytest.raises(ValueError, match=message):
        ps.balanced_partition(costs, num_devices)


def test_partition_of_100_blocks_is_optimal():
    # Exact beyond the brute force's reach. (No time is asserted: timings belong
    # in benchmarks/.)
    rng = random.Random(7)
    costs = [rng.uniform(0.5, 2.0) for _ in range(100)]
    for num_devices in (2, 4, 8, 16, 32):
        placement = ps.balanced_partition(costs, num_devices)
        _assert_well_formed(placement, 100, num_devices)
        assert _bottleneck(costs, placement) == pytest.approx(
            _optimal_bottleneck(costs, num_devices), rel=1e-12), num_devices
    # A lower bound no split can beat: the mean load, and the largest block.
    placement = ps.balanced_partition(costs, 8)
    assert _bottleneck(costs, placement) < sum(costs) / 8 + max(costs)


# --- BlockCost and helpers ------------------------------------------------


def test_block_cost_validates_and_sums():
    block = ps.BlockCost(forward=1.0, backward=2.0, label=0.5)
    assert block.compute == 3.5
    assert block.activation_bytes == 0
    with pytest.raises(ValueError, match="BlockCost.backward must be"):
        ps.BlockCost(forward=1.0, backward=-2.0)


def test_uniform_blocks():
    blocks = ps.uniform_blocks(8, 1.0, 2.0, label=0.25, activation_bytes=100)
    assert len(blocks) == 8
    assert blocks[3] == ps.BlockCost(1.0, 2.0, 0.25, 100)
    with pytest.raises(ValueError, match="num_blocks must be"):
        ps.uniform_blocks(0, 1.0, 2.0)


def test_links_are_nominal_figures():
    assert ps.LINKS == {"nvlink": 300e9, "pcie4": 25e9, "10gbe": 1.25e9}


# --- simulate -------------------------------------------------------------

FOUR_BLOCKS = ps.uniform_blocks(4, forward=1.0, backward=2.0)
EIGHT_BLOCKS = ps.uniform_blocks(8, forward=1.0, backward=2.0)


def test_schedules_are_all_reported_in_order():
    results = ps.simulate(FOUR_BLOCKS, 2)
    assert list(results) == [
        "bp_one_device",
        "bp_model_parallel",
        "gpipe",
        "al_one_device",
        "al_placed",
        "al_pipelined",
    ]
    for result in results.values():
        assert result.throughput == pytest.approx(1.0 / result.step_time)


def test_one_device_is_the_serial_sum():
    blocks = ps.uniform_blocks(4, forward=1.0, backward=2.0, label=0.5)
    results = ps.simulate(blocks, 1)
    assert results["al_one_device"].step_time == 14.0
    assert results["bp_one_device"].step_time == 12.0
    for name in ("al_placed", "al_pipelined"):
        assert results[name].step_time == 14.0
        assert results[name].efficiency == 1.0
    assert results["gpipe"].step_time == 12.0
    assert results["al_one_device"].speedup_vs_bp1 == pytest.approx(12.0 / 14.0)


def test_al_pipelined_is_perfectly_efficient_with_equal_blocks():
    results = ps.simulate(FOUR_BLOCKS, 4)
    pipelined = results["al_pipelined"]
    assert pipelined.step_time == 3.0
    assert pipelined.speedup_vs_al1 == 4.0
    assert pipelined.efficiency == 1.0
    assert pipelined.devices_used == 4
    assert pipelined.placement == (0, 1, 2, 3)
    assert pipelined.bubble_fraction == 0.0


def test_al_pipelined_pays_fill_and_drain_once_per_epoch():
    pipelined = ps.simulate(FOUR_BLOCKS, 4, steps_per_epoch=100)["al_pipelined"]
    assert pipelined.step_time == pytest.approx(3.0 * 103 / 100)
    assert pipelined.efficiency == pytest.approx(100 / 103)
    assert pipelined.efficiency >= 0.9
    assert pipelined.bubble_fraction == pytest.approx(3 / 103)


def test_al_placed_waits_for_the_forward_chain():
    placed = ps.simulate(FOUR_BLOCKS, 4)["al_placed"]
    # The last device gets its input after 3 forwards, then works 3 s.
    assert placed.step_time == 6.0
    assert placed.efficiency == 0.5
    assert placed.efficiency < ps.simulate(FOUR_BLOCKS, 4)["al_pipelined"].efficiency


def test_al_placed_falls_behind_pipelining_as_devices_grow():
    ratios = []
    for num_devices in (2, 4, 8):
        results = ps.simulate(EIGHT_BLOCKS, num_devices)
        ratios.append(
            results["al_placed"].efficiency / results["al_pipelined"].efficiency
        )
    # K=2: 4 + 12 = 16 s; K=4: 6 + 6 = 12 s; K=8: 7 + 3 = 10 s, of 24 s serial.
    assert ratios == pytest.approx([24 / 16 / 2, 24 / 12 / 4, 24 / 10 / 8])
    assert ratios[0] > ratios[1] > ratios[2]
    assert ratios[0] < 1.0


@pytest.mark.parametrize("micro_batches", [1, 4, 8])
@pytest.mark.parametrize("num_devices", [2, 4])
def test_gpipe_efficiency_is_the_bubble_bound(micro_batches, num_devices):
    gpipe = ps.simulate(FOUR_BLOCKS, num_devices, micro_batches=micro_batches)["gpipe"]
    expected = micro_batches / (micro_batches + num_devices - 1)
    assert gpipe.efficiency == pytest.approx(expected)
    assert gpipe.bubble_fraction == pytest.approx(1 - expected)
    assert gpipe.step_time == pytest.approx(
        (micro_batches + num_devices - 1) * 12.0 / num_devices / micro_batches
    )


def test_bp_model_parallel_never_speeds_up():
    free = ps.simulate(FOUR_BLOCKS, 4)["bp_model_parallel"]
    assert free.speedup_vs_bp1 == 1.0
    assert free.efficiency == 0.25
    blocks = ps.uniform_blocks(4, 1.0, 2.0, activation_bytes=25e9)
    linked = ps.simulate(blocks, 4, link_bandwidth="pcie4", link_latency=0.5)
    # 3 boundaries, a 1 s activation and a 1 s gradient each, plus latency.
    assert linked["bp_model_parallel"].step_time == pytest.approx(12.0 + 3 * 2 * 1.5)
    assert linked["bp_model_parallel"].speedup_vs_bp1 < 1.0


def test_slow_link_makes_al_pipelined_transfer_bound():
    blocks = ps.uniform_blocks(4, 1.0, 2.0, activation_bytes=12.5e9)
    results = ps.simulate(
        blocks, 4, link_bandwidth=ps.LINKS["10gbe"], link_latency=0.001
    )
    pipelined = results["al_pipelined"]
    assert pipelined.step_time == pytest.approx(10.001, rel=1e-12)
    assert pipelined.speedup_vs_al1 == pytest.approx(12.0 / 10.001)
    assert "link after block" in pipelined.bottleneck
    # Without pipelining every boundary is on the path: 3 forwards, 3 links, 3 s.
    assert results["al_placed"].step_time == pytest.approx(3.0 + 3 * 10.001 + 3.0)
    # gpipe moves a quarter activation per micro-batch, forward and back.
    assert results["gpipe"].step_time == pytest.approx(7 * 3.0 / 4 + 3 * 2 * 2.501)
    # One device never crosses the link.
    one_device = ps.simulate(blocks, 1, link_bandwidth="10gbe")
    assert one_device["al_pipelined"].step_time == 12.0


def test_fast_link_keeps_al_pipelined_compute_bound():
    blocks = ps.uniform_blocks(4, 1.0, 2.0, activation_bytes=12.5e9)
    pipelined = ps.simulate(blocks, 4, link_bandwidth="nvlink")["al_pipelined"]
    assert pipelined.step_time == 3.0
    assert "device" in pipelined.bottleneck


def test_more_devices_than_blocks_uses_one_device_per_block():
    at_four = ps.simulate(FOUR_BLOCKS, 4)
    at_eight = ps.simulate(FOUR_BLOCKS, 8)
    for name in ("al_pipelined", "al_placed", "gpipe", "bp_model_parallel"):
        assert at_eight[name].devices_used == 4
        assert at_eight[name].placement == (0, 1, 2, 3)
        assert at_eight[name].step_time == at_four[name].step_time
        assert at_eight[name].efficiency == pytest.approx(at_four[name].efficiency / 2)
    assert at_eight["al_pipelined"].efficiency == 0.5


def test_bp_costs_replace_the_al_blocks_for_bp_schedules():
    al_blocks = ps.uniform_blocks(4, 1.5, 2.0, label=0.5)
    bp_blocks = ps.uniform_blocks(4, 1.0, 2.0)
    results = ps.simulate(al_blocks, 2, bp_costs=bp_blocks)
    assert results["bp_one_device"].step_time == 12.0
    assert results["al_one_device"].step_time == 16.0
    assert results["al_pipelined"].speedup_vs_bp1 == pytest.approx(12.0 / 8.0)
    default = ps.simulate(al_blocks, 2)
    assert default["bp_one_device"].step_time == 14.0


def test_unbalanced_blocks_are_placed_by_balanced_partition():
    blocks = [ps.BlockCost(1.0, 2.0), ps.BlockCost(1.0, 2.0), ps.BlockCost(2.0, 4.0)]
    pipelined = ps.simulate(blocks, 2)["al_pipelined"]
    assert pipelined.placement == (0, 0, 1)
    assert pipelined.step_time == 6.0
    assert pipelined.efficiency == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_devices=0), "num_devices must be an int >= 1"),
        (dict(num_devices=2, micro_batches=0), "micro_batches must be"),
        (dict(num_devices=2, steps_per_epoch=0), "steps_per_epoch must be"),
        (dict(num_devices=2, link_bandwidth=0), "link_bandwidth must be > 0"),
        (dict(num_devices=2, link_bandwidth="infiniband"), "Unknown link"),
        (dict(num_devices=2, link_latency=-1.0), "link_latency must be >= 0"),
    ],
)
def test_simulate_rejects_bad_arguments(kwargs, message):
    num_devices = kwargs.pop("num_devices")
    with pytest.raises(ValueError, match=message):
        ps.simulate(FOUR_BLOCKS, num_devices, **kwargs)


def test_simulate_rejects_empty_or_costless_models():
    with pytest.raises(ValueError, match="blocks is empty"):
        ps.simulate([], 2)
    with pytest.raises(ValueError, match="zero total cost"):
        ps.simulate(ps.uniform_blocks(3, 0.0, 0.0), 2)
    with pytest.raises(ValueError, match="must be a BlockCost"):
        ps.simulate([(1.0, 2.0)], 2)


# --- simulate_table -------------------------------------------------------


def test_table_reports_speedup_and_efficiency():
    table = ps.simulate_table(EIGHT_BLOCKS)
    lines = table.splitlines()
    assert lines[0].split() == ["schedule", "K=1", "K=2", "K=4", "K=8"]
    rows = {line.split()[0]: line for line in lines[1:7]}
    assert rows["al_pipelined"].split()[1:] == [
        "1.00x", "(1.00)", "2.00x", "(1.00)", "4.00x", "(1.00)", "8.00x", "(1.00)"
    ]
    assert rows["al_placed"].split()[1:] == [
        "1.00x", "(1.00)", "1.50x", "(0.75)", "2.00x", "(0.50)", "2.40x", "(0.30)"
    ]
    assert rows["gpipe"].split()[5:7] == ["2.29x", "(0.57)"]
    assert "free transfers" in table


def test_table_states_the_link():
    table = ps.simulate_table(
        FOUR_BLOCKS, device_counts=(1, 4), link_bandwidth="10gbe", steps_per_epoch=100
    )
    assert "Link: 10gbe, 1.25 GB/s" in table
    assert "once per 100 steps" in table
    assert len(table.splitlines()[0].split()) == 3


# --- one process per stage: call overhead, batches per call, hand-over -----


def test_process_terms_left_at_their_defaults_change_nothing():
    blocks = ps.uniform_blocks(4, 1.0, 2.0, label=0.5, activation_bytes=2.5e9)
    for kwargs in (dict(), dict(steps_per_epoch=100),
                   dict(link_bandwidth="pcie4", link_latency=0.01)):
        for num_devices in (1, 2, 4):
            assert ps.simulate(blocks, num_devices, call_overhead=0.0,
                               driver_overhead=0.0, steps_per_call=1, handover=None,
                               **kwargs) == ps.simulate(blocks, num_devices, **kwargs)


def test_call_overhead_is_paid_once_per_call_on_every_stage():
    results = ps.simulate(FOUR_BLOCKS, 2, call_overhead=0.5)
    pipelined = results["al_pipelined"]
    assert pipelined.step_time == 6.5  # 2 blocks of 3 s, and 0.5 s a call.
    assert pipelined.speedup_vs_al1 == 12.0 / 6.5
    assert pipelined.bottleneck == (
        "device 0: compute 6 s + call overhead 0.5 s = 6.5 s")
    # The other schedules are one process: no call overhead.
    assert results["al_one_device"].step_time == 12.0
    assert results["al_placed"].step_time == ps.simulate(FOUR_BLOCKS, 2)[
        "al_placed"].step_time
    # 4 batches per call: 0.125 s a batch.
    batched = ps.simulate(FOUR_BLOCKS, 2, call_overhead=0.5, steps_per_call=4)
    assert batched["al_pipelined"].step_time == 6.125
    assert batched["al_pipelined"].bottleneck.endswith(", 4 batches per call")
    # One stage is one process too: slower than in-process AL.
    assert ps.simulate(FOUR_BLOCKS, 1, call_overhead=0.5)[
        "al_pipelined"].speedup_vs_al1 == 12.0 / 12.5


def test_the_driver_bounds_the_step_by_its_calls_to_every_stage():
    pipelined = ps.simulate(FOUR_BLOCKS, 4, driver_overhead=1.0)["al_pipelined"]
    assert pipelined.step_time == 4.0  # 4 stage calls of 1 s, above 3 s of compute.
    assert pipelined.bottleneck == "driver (4 stage calls, 4 s)"
    assert pipelined.efficiency == 12.0 / 4.0 / 4
    batched = ps.simulate(FOUR_BLOCKS, 4, driver_overhead=1.0, steps_per_call=2)
    assert batched["al_pipelined"].step_time == 3.0
    assert batched["al_pipelined"].bottleneck.startswith("device 0 compute (3 s)")


def test_the_handover_is_paid_by_the_stage_that_hands_on():
    blocks = ps.uniform_blocks(4, 1.0, 2.0, activation_bytes=1e9)
    store = ps.Link("object store", bandwidth=2e9, latency=0.25)
    pipelined = ps.simulate(blocks, 2, handover=store)["al_pipelined"]
    # Device 0 hands 1 GB on: 0.25 s + 0.5 s; device 1 (the last) nothing.
    assert pipelined.step_time == 6.75
    assert pipelined.bottleneck == "device 0: compute 6 s + hand-over 0.75 s = 6.75 s"
    # 5 batches per call: the latency once a call, the bytes every batch.
    batched = ps.simulate(blocks, 2, handover=store, steps_per_call=5,
                          call_overhead=0.5)["al_pipelined"]
    assert batched.step_time == pytest.approx(6.0 + 0.1 + 0.05 + 0.5)
    # One device hands nothing on.
    assert ps.simulate(blocks, 1, handover=store)["al_pipelined"].step_time == 12.0


def test_fill_and_drain_take_whole_calls():
    # 100 batches in calls of 8: 13 calls, and 3 more to fill and drain 4 stages.
    pipelined = ps.simulate(FOUR_BLOCKS, 4, steps_per_epoch=100, steps_per_call=8,
                            call_overhead=0.8)["al_pipelined"]
    assert pipelined.step_time == pytest.approx((3.0 + 0.1) * 8 * 16 / 100)
    assert pipelined.bubble_fraction == pytest.approx(3 / 16)
    assert pipelined.bottleneck.endswith("8 batches per call, fill/drain x1.28")


def test_a_measured_link_passes_as_link_bandwidth():
    blocks = ps.uniform_blocks(4, 1.0, 2.0, activation_bytes=12.5e9)
    measured = ps.Link("ray_object_store (measured)", bandwidth=1.25e9, latency=0.001)
    results = ps.simulate(blocks, 4, link_bandwidth=measured)
    nominal = ps.simulate(blocks, 4, link_bandwidth="10gbe", link_latency=0.001)
    assert results == nominal
    assert results["al_pipelined"].step_time == pytest.approx(10.001, rel=1e-12)
    # A given link_latency wins over the Link's; per call, it is amortized.
    assert ps.simulate(blocks, 4, link_bandwidth=measured, link_latency=0.0)[
        "al_pipelined"].step_time == 10.0
    assert ps.simulate(blocks, 4, link_bandwidth=measured, steps_per_call=2)[
        "al_pipelined"].step_time == pytest.approx(10.0005, rel=1e-12)
    table = ps.simulate_table(blocks, device_counts=(1, 4), link_bandwidth=measured,
                              call_overhead=0.5, steps_per_call=2, handover=measured)
    assert "Link: ray_object_store (measured), 1.25 GB/s per device boundary, " \
        "latency 0.001 s per transfer." in table
    assert table.splitlines()[-1] == (
        "al_pipelined as one process per stage: call overhead 0.5 s per stage, "
        "driver 0 s per stage call, 2 batches per call, hand-over "
        "ray_object_store (measured) (1.25 GB/s, latency 0.001 s).")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(call_overhead=-1.0), "call_overhead must be >= 0"),
        (dict(driver_overhead=float("nan")), "driver_overhead must be >= 0"),
        (dict(steps_per_call=0), "steps_per_call must be an int >= 1"),
        (dict(steps_per_call=1.5), "steps_per_call must be an int >= 1"),
        (dict(steps_per_call=True), "steps_per_call must be an int >= 1"),
        (dict(handover=1e9), "handover must be a Link"),
    ],
)
def test_process_terms_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ps.simulate(FOUR_BLOCKS, 2, **kwargs)


def test_link_validates():
    with pytest.raises(ValueError, match="Link.bandwidth must be > 0"):
        ps.Link("none", bandwidth=0.0)
    with pytest.raises(ValueError, match="Link.latency must be >= 0"):
        ps.Link("late", bandwidth=1e9, latency=-1.0)
