"""Analytic timing model of AL and BP schedules on several devices.

An Associated Learning network is a chain of blocks. Block k's input side
(f_k, then the bridge b_k) and its local backward+update, plus its cheap
label side (g_k/h_k), form a unit of work; no gradient crosses a block
boundary. Blocks can therefore be placed on K devices and pipelined: in one
step, stage d works on the micro-batch that stage d-1 finished the step
before, and only the activations s_k (input side) and t_k (label side) are
handed from one device to the next.

This module turns measured per-block costs (`BlockCost`) into step times for
a few schedules (`simulate`) and prints them as a table (`simulate_table`);
the placement it assumes is the exact balanced partition of
`al_keras.distribute.partition` (re-exported here). For a pipeline of one
process per stage (`RayPipeline`), `simulate` also takes what such an engine
costs: a per-call overhead of each stage and of the driver, the batches per
call that amortize it, and the hand-over of activations through an object
store (a measured `Link`; `benchmarks/ray_calibration.py` measures them).
Pure Python; it does not import TensorFlow.

All times are seconds per batch, all sizes bytes per batch.
"""

import dataclasses
import itertools
import math

# Part of this module's API: the placement the simulated schedules assume.
from al_keras.distribute.partition import (  # noqa: F401
    BlockCost,
    balanced_partition,
    uniform_blocks,
)

# Nominal link bandwidths in bytes/s, per direction; real throughput is lower.
#   nvlink: NVLink 3 on A100, ~300 GB/s per direction (600 GB/s total).
#   pcie4:  PCIe 4.0 x16, ~32 GB/s nominal, ~25 GB/s achievable.
#   10gbe:  10 Gigabit Ethernet, 10 Gbit/s = 1.25 GB/s.
LINKS = {"nvlink": 300e9, "pcie4": 25e9, "10gbe": 1.25e9}


@dataclasses.dataclass(frozen=True)
class Link:
    """A link, e.g. one measured: Ray's object store between two processes.

    Passable as `simulate(link_bandwidth=...)` (its latency then applies
    unless `link_latency` is given) or as `simulate(handover=...)`.

    Attributes:
        name: what it is, e.g. "ray_object_store (measured)".
        bandwidth: bytes/s, > 0.
        latency: seconds added to every transfer, >= 0.
    """

    name: str
    bandwidth: float
    latency: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"Link.bandwidth must be > 0 bytes/s, got {self.bandwidth!r}.")
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"Link.latency must be >= 0 seconds, got {self.latency!r}.")


@dataclasses.dataclass(frozen=True)
class ScheduleResult:
    """Timing of one schedule on a given number of devices.

    Attributes:
        schedule: the schedule's name, e.g. "al_pipelined".
        step_time: seconds per batch (per training step).
        throughput: batches per second, 1 / step_time.
        speedup_vs_al1: al_one_device's step time / step_time.
        speedup_vs_bp1: bp_one_device's step time / step_time.
        efficiency: speedup / num_devices, where speedup is speedup_vs_al1
            for AL schedules and speedup_vs_bp1 for BP schedules; devices
            left unused (num_devices > blocks) count as idle.
        devices_used: devices that hold at least one block.
        placement: device index of each block.
        bubble_fraction: idle share of the pipeline due to fill and drain
            (gpipe, and al_pipelined when steps_per_epoch is given), 0.0
            for al_pipelined without it, None for unpipelined schedules.
        bottleneck: what determines step_time, in words.
    """

    schedule: str
    step_time: float
    throughput: float
    speedup_vs_al1: float
    speedup_vs_bp1: float
    efficiency: float
    devices_used: int
    placement: tuple
    bubble_fraction: object
    bottleneck: str

    @property
    def is_bp(self):
        """Whether this is a BP schedule (compared against bp_one_device)."""
        return self.schedule.startswith("bp_") or self.schedule == "gpipe"

    @property
    def speedup(self):
        """speedup_vs_bp1 for BP schedules, speedup_vs_al1 for AL schedules."""
        return self.speedup_vs_bp1 if self.is_bp else self.speedup_vs_al1



def _resolve_bandwidth(link_bandwidth):
    """Bytes/s from a number, a key of LINKS, a `Link`, or None (infinite)."""
    if link_bandwidth is None:
        return None
    if isinstance(link_bandwidth, Link):
        return float(link_bandwidth.bandwidth)
    if isinstance(link_bandwidth, str):
        if link_bandwidth not in LINKS:
            raise ValueError(
                f"Unknown link {link_bandwidth!r}; known: {sorted(LINKS)}."
            )
        return LINKS[link_bandwidth]
    if not link_bandwidth > 0:
        raise ValueError(
            f"link_bandwidth must be > 0 bytes/s or None, got {link_bandwidth!r}."
        )
    return float(link_bandwidth)


def _transfer_time(num_bytes, bandwidth, latency):
    """Seconds to hand num_bytes over one link: latency + bytes / bandwidth."""
    if bandwidth is None:
        return latency
    return latency + num_bytes / bandwidth


def _boundaries(placement):
    """Indices k of the blocks whose output crosses to another device."""
    return [
        block
        for block in range(len(placement) - 1)
        if placement[block] != placement[block + 1]
    ]


def _device_sums(placement, values):
    """Per-device sums of values, in device order."""
    sums = [0.0] * (placement[-1] + 1)
    for device, value in zip(placement, values):
        sums[device] += value
    return sums


def _validate_blocks(blocks, name):
    blocks = list(blocks)
    if not blocks:
        raise ValueError(f"{name} is empty: there are no blocks to simulate.")
    for index, block in enumerate(blocks):
        if not isinstance(block, BlockCost):
            raise ValueError(
                f"{name}[{index}] must be a BlockCost, got {type(block).__name__}."
            )
    if sum(block.compute for block in blocks) <= 0:
        raise ValueError(f"{name} have zero total cost; nothing to time.")
    return blocks


def simulate(
    blocks,
    num_devices,
    *,
    bp_costs=None,
    link_bandwidth=None,
    link_latency=None,
    micro_batches=4,
    steps_per_epoch=None,
    call_overhead=0.0,
    driver_overhead=0.0,
    steps_per_call=1,
    handover=None,
):
    """Step time of AL and BP schedules on num_devices devices.

    Notation: L blocks with forward F_k, backward B_k, label side G_k and
    activation A_k bytes; a transfer of n bytes takes T(n) = link_latency +
    n / link_bandwidth (just link_latency when link_bandwidth is None).
    Blocks are placed with `balanced_partition` on F_k+B_k (BP schedules)
    or F_k+B_k+G_k (AL schedules); K' = devices used = min(K, L); a
    "boundary" is a block k whose successor sits on another device.

    BP schedules use bp_costs (the BP twin's blocks). When it is None they
    reuse the AL blocks' forward/backward without the label side: an
    approximation, since the AL forward also includes the bridge.

    Schedules:
      bp_one_device: sum_k (F_k + B_k). Independent of K.
      bp_model_parallel: blocks split over K devices, one batch in flight:
        sum_k (F_k + B_k) + sum_boundaries 2 T(A_k) (activation forward,
        gradient backward). Never faster than bp_one_device.
      gpipe: the batch cut into m = micro_batches micro-batches:
        (m + K' - 1) (max_d F_d + max_d B_d) / m
        + sum_boundaries 2 T(A_k / m), with F_d, B_d the per-device sums;
        bubble fraction (K' - 1) / (m + K' - 1).
      al_one_device: sum_k (F_k + B_k + G_k), the serial reference.
      al_placed: blocks on K devices in one step graph, no pipelining; the
        executor overlaps independent ops, but device d can start only when
        its input has come down the forward chain:
        max_d (arrival_d + W_d), arrival_d = sum of F_k of the blocks on
        devices before d + sum of T(A_k) of the boundaries before d, and
        W_d = sum of F_k + B_k + G_k of d's blocks. This is at least
        max_d W_d (the busiest device) and at least sum_k F_k + transfers
        + B_L (the forward chain, then the last backward).
      al_pipelined: each device works on a different batch every step and
        transfers overlap compute on their own link:
        max(max_d W_d, max_boundaries T(A_k)), times the fill/drain factor
        (S + K' - 1) / S when S = steps_per_epoch is given (the pipeline
        fills and drains once per epoch).
        As one process per stage (a `RayPipeline`), with n = steps_per_call
        batches per call of each stage, c = call_overhead, r =
        driver_overhead and H(A) = handover's latency / n + A / its
        bandwidth (0 without a handover), per batch:
        max(max_d (W_d + c / n + H(A_d)), K' r / n, max_boundaries T_n(A_k)),
        where A_d is what device d hands on (0 for the last) and T_n(A) =
        link_latency / n + A / link_bandwidth (latencies are paid once a
        call); with S given, times n (ceil(S / n) + K' - 1) / S (fill and
        drain take K' - 1 calls). With c = r = 0, n = 1 and no handover
        this is the formula above.

    Args:
        blocks: sequence of `BlockCost`, the AL blocks in order.
        num_devices: int K >= 1.
        bp_costs: optional sequence of `BlockCost` for the BP twin.
        link_bandwidth: bytes/s of each device-to-device link, a key of
            LINKS, a `Link`, or None for infinitely fast links. Its
            transfers overlap compute.
        link_latency: seconds added to every transfer, >= 0; default the
            `Link`'s latency, else 0.
        micro_batches: int m >= 1, micro-batches per batch for gpipe.
        steps_per_epoch: optional int >= 1; when given, al_pipelined pays
            its fill and drain once per this many steps.
        call_overhead: al_pipelined only: seconds each stage spends per
            call outside its blocks' compute (a process-per-stage engine's
            task dispatch, argument and result handling), >= 0.
        driver_overhead: al_pipelined only: seconds the one driver spends
            per call of each stage (it feeds every stage), >= 0.
        steps_per_call: al_pipelined only: int n >= 1, batches each stage
            trains per call (Keras' `steps_per_execution` under a
            `RayPipeline`); the overheads and latencies are paid per call.
        handover: al_pipelined only: optional `Link` whose transfers are
            paid on the time of the stage that hands on (an object store's
            copy on the stage's own cores: one host), on top of any
            `link_bandwidth`.

    Returns:
        A dict from schedule name to `ScheduleResult`, in the order
        bp_one_device, bp_model_parallel, gpipe, al_one_device, al_placed,
        al_pipelined.

    Raises:
        ValueError: on empty blocks, zero total cost, num_devices < 1,
            micro_batches < 1, steps_per_epoch < 1, link_bandwidth <= 0,
            link_latency < 0, call_overhead or driver_overhead < 0,
            steps_per_call < 1, or a handover that is not a `Link`.
    """
    blocks = _validate_blocks(blocks, "blocks")
    if bp_costs is None:
        bp_blocks = [
            BlockCost(block.forward, block.backward, 0.0, block.activation_bytes)
            for block in blocks
        ]
    else:
        bp_blocks = _validate_blocks(bp_costs, "bp_costs")
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be an int >= 1, got {num_devices!r}.")
    if not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(f"micro_batches must be an int >= 1, got {micro_batches!r}.")
    if steps_per_epoch is not None and (
        not isinstance(steps_per_epoch, int) or steps_per_epoch < 1
    ):
        raise ValueError(
            f"steps_per_epoch must be an int >= 1 or None, got {steps_per_epoch!r}."
        )
    if link_latency is None:
        link_latency = link_bandwidth.latency if isinstance(link_bandwidth, Link) else 0.0
    if not (math.isfinite(link_latency) and link_latency >= 0):
        raise ValueError(f"link_latency must be >= 0 seconds, got {link_latency!r}.")
    for name, value in (("call_overhead", call_overhead),
                        ("driver_overhead", driver_overhead)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be >= 0 seconds, got {value!r}.")
    if isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int) or (
            steps_per_call < 1):
        raise ValueError(f"steps_per_call must be an int >= 1, got {steps_per_call!r}.")
    if handover is not None and not isinstance(handover, Link):
        raise ValueError(
            f"handover must be a Link or None, got {type(handover).__name__}.")
    bandwidth = _resolve_bandwidth(link_bandwidth)

    def transfer(num_bytes):
        return _transfer_time(num_bytes, bandwidth, link_latency)

    timings = {}  # name -> (step_time, placement, bubble_fraction, bottleneck)

    # --- BP schedules -----------------------------------------------------
    bp_total = sum(block.forward + block.backward for block in bp_blocks)
    timings["bp_one_device"] = (
        bp_total, [0] * len(bp_blocks), None, "all blocks in series on one device"
    )

    bp_placement = balanced_partition(
        [block.forward + block.backward for block in bp_blocks], num_devices
    )
    bp_boundaries = _boundaries(bp_placement)
    round_trips = sum(
        2 * transfer(bp_blocks[block].activation_bytes) for block in bp_boundaries
    )
    timings["bp_model_parallel"] = (
        bp_total + round_trips,
        bp_placement,
        None,
        f"all blocks in series plus {len(bp_boundaries)} activation/gradient "
        f"round trips ({round_trips:.4g} s)",
    )

    stages = bp_placement[-1] + 1
    stage_forward = max(
        _device_sums(bp_placement, [block.forward for block in bp_blocks])
    )
    stage_backward = max(
        _device_sums(bp_placement, [block.backward for block in bp_blocks])
    )
    micro_transfers = sum(
        2 * transfer(bp_blocks[block].activation_bytes / micro_batches)
        for block in bp_boundaries
    )
    gpipe_time = (
        (micro_batches + stages - 1) * (stage_forward + stage_backward) / micro_batches
        + micro_transfers
    )
    timings["gpipe"] = (
        gpipe_time,
        bp_placement,
        (stages - 1) / (micro_batches + stages - 1),
        f"{micro_batches} micro-batches through {stages} stages, "
        f"slowest stage {stage_forward + stage_backward:.4g} s per batch",
    )

    # --- AL schedules -----------------------------------------------------
    al_total = sum(block.compute for block in blocks)
    timings["al_one_device"] = (
        al_total, [0] * len(blocks), None, "all blocks in series on one device"
    )

    al_placement = balanced_partition([block.compute for block in blocks], num_devices)
    device_work = _device_sums(al_placement, [block.compute for block in blocks])

    arrival, finish_times = 0.0, []
    for device, work in enumerate(device_work):
        finish_times.append(arrival + work)
        device_blocks = [b for b, d in enumerate(al_placement) if d == device]
        arrival += sum(blocks[b].forward for b in device_blocks)
        if device_blocks[-1] < len(blocks) - 1:
            arrival += transfer(blocks[device_blocks[-1]].activation_bytes)
    slowest = max(range(len(finish_times)), key=finish_times.__getitem__)
    timings["al_placed"] = (
        finish_times[slowest],
        al_placement,
        None,
        f"device {slowest} waits {finish_times[slowest] - device_work[slowest]:.4g} s "
        f"for its input, then works {device_work[slowest]:.4g} s",
    )

    timings["al_pipelined"] = _al_pipelined(
        blocks, al_placement, device_work, bandwidth, link_latency, steps_per_epoch,
        call_overhead, driver_overhead, steps_per_call, handover)

    results = {}
    for name, (step_time, placement, bubble, reason) in timings.items():
        speedup_vs_al1 = al_total / step_time
        speedup_vs_bp1 = bp_total / step_time
        is_bp = name.startswith("bp_") or name == "gpipe"
        results[name] = ScheduleResult(
            schedule=name,
            step_time=step_time,
            throughput=1.0 / step_time,
            speedup_vs_al1=speedup_vs_al1,
            speedup_vs_bp1=speedup_vs_bp1,
            efficiency=(speedup_vs_bp1 if is_bp else speedup_vs_al1) / num_devices,
            devices_used=placement[-1] + 1,
            placement=tuple(placement),
            bubble_fraction=bubble,
            bottleneck=reason,
        )
    return results


def _al_pipelined(blocks, placement, device_work, bandwidth, latency, steps_per_epoch,
                  call_overhead, driver_overhead, steps_per_call, handover):
    """(step_time, placement, bubble_fraction, bottleneck) of al_pipelined."""
    per_call = steps_per_call
    stages = placement[-1] + 1

    def link_time(num_bytes):  # Latency once a call, bytes every batch.
        return _transfer_time(num_bytes, bandwidth, latency / per_call)

    handed_on = [0.0] * stages  # Bytes each device hands on per batch.
    for block in _boundaries(placement):
        handed_on[placement[block]] = blocks[block].activation_bytes
    candidates = []  # (seconds per batch, what it is)
    for device, work in enumerate(device_work):
        extras = []
        if call_overhead:
            extras.append(("call overhead", call_overhead / per_call))
        if handover is not None and handed_on[device]:
            extras.append(("hand-over", handover.latency / per_call
                           + handed_on[device] / handover.bandwidth))
        seconds = work + sum(value for _, value in extras)
        what = f"device {device} compute ({work:.4g} s)"
        if extras:
            what = (f"device {device}: compute {work:.4g} s + " + " + ".join(
                f"{name} {value:.4g} s" for name, value in extras) + f" = {seconds:.4g} s")
        candidates.append((seconds, what))
    if driver_overhead:
        driver = stages * driver_overhead / per_call
        candidates.append((driver, f"driver ({stages} stage calls, {driver:.4g} s)"))
    for block in _boundaries(placement):
        seconds = link_time(blocks[block].activation_bytes)
        candidates.append((seconds, f"link after block {block} ({seconds:.4g} s)"))
    # The first of the largest: ties go to the devices, in order.
    steady_step, bottleneck = max(candidates, key=lambda c: c[0])
    if steps_per_call > 1:
        bottleneck += f", {steps_per_call} batches per call"
    if steps_per_epoch is None:
        return steady_step, placement, 0.0, bottleneck
    calls = math.ceil(steps_per_epoch / per_call)
    fill_drain = per_call * (calls + stages - 1) / steps_per_epoch
    bubble = (stages - 1) / (calls + stages - 1)
    return (steady_step * fill_drain, placement, bubble,
            bottleneck + f", fill/drain x{fill_drain:.4g}")


def _describe_link(link_bandwidth, link_latency):
    """One line on the link assumption of a table."""
    bandwidth = _resolve_bandwidth(link_bandwidth)
    if link_latency is None:
        link_latency = link_bandwidth.latency if isinstance(link_bandwidth, Link) else 0.0
    if bandwidth is None:
        text = "free transfers (infinite bandwidth)"
    else:
        names = [name for name, value in LINKS.items() if value == bandwidth]
        if isinstance(link_bandwidth, Link):
            names = [link_bandwidth.name]
        label = f"{names[0]}, " if names else ""
        text = f"{label}{bandwidth / 1e9:.4g} GB/s per device boundary"
    return f"Link: {text}, latency {link_latency:g} s per transfer."


def simulate_table(blocks, device_counts=(1, 2, 4, 8), **kwargs):
    """A fixed-width text table of `simulate` over several device counts.

    Rows are schedules, columns device counts K; each cell reads
    "speedup x (efficiency)", the speedup of AL rows over al_one_device and
    of BP rows over bp_one_device.

    Args:
        blocks: sequence of `BlockCost`.
        device_counts: device counts K, one column each.
        **kwargs: passed on to `simulate` (bp_costs, link_bandwidth,
            link_latency, micro_batches, steps_per_epoch, and for
            al_pipelined call_overhead, driver_overhead, steps_per_call,
            handover).

    Returns:
        The table as a string, ending with lines on the link assumption,
        micro-batches and steps per epoch.
    """
    device_counts = list(device_counts)
    if not device_counts:
        raise ValueError("device_counts is empty: the table needs a column.")
    columns = [simulate(blocks, count, **kwargs) for count in device_counts]
    names = list(columns[0])
    name_width = max(len("schedule"), *(len(name) for name in names))
    cells = [
        [
            f"{result[name].speedup:.2f}x ({result[name].efficiency:.2f})"
            for result in columns
        ]
        for name in names
    ]
    headers = [f"K={count}" for count in device_counts]
    cell_width = max(len(text) for text in headers + list(itertools.chain(*cells)))

    lines = ["schedule".ljust(name_width) + "".join(
        "  " + header.rjust(cell_width) for header in headers
    )]
    for name, row in zip(names, cells):
        lines.append(name.ljust(name_width) + "".join(
            "  " + cell.rjust(cell_width) for cell in row
        ))
    lines.append(
        "Cells: speedup (efficiency = speedup / K); AL rows vs al_one_device, "
        "BP rows vs bp_one_device."
    )
    lines.append(
        _describe_link(kwargs.get("link_bandwidth"), kwargs.get("link_latency"))
    )
    steps = kwargs.get("steps_per_epoch")
    lines.append(
        f"gpipe micro-batches: {kwargs.get('micro_batches', 4)}; al_pipelined "
        + (f"fills and drains once per {steps} steps." if steps else "in steady state.")
    )
    handover = kwargs.get("handover")
    if (kwargs.get("call_overhead") or kwargs.get("driver_overhead") or handover
            or kwargs.get("steps_per_call", 1) != 1):
        lines.append(
            f"al_pipelined as one process per stage: call overhead "
            f"{kwargs.get('call_overhead', 0.0):g} s per stage, driver "
            f"{kwargs.get('driver_overhead', 0.0):g} s per stage call, "
            f"{kwargs.get('steps_per_call', 1)} batches per call, hand-over "
            + (f"{handover.name} ({handover.bandwidth / 1e9:.4g} GB/s, latency "
               f"{handover.latency:g} s)." if handover else "free."))
    return "\n".join(lines)
