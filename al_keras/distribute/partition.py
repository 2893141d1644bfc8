"""Block costs and their placement: the exact balanced contiguous partition.

`BlockCost` is one block's measured cost (seconds and bytes per batch);
`balanced_partition` places a chain of blocks on devices so that the
slowest device is as fast as it can be (used by `BlockParallel`'s
`placement="auto"`); `uniform_blocks` makes a synthetic chain.  Pure Python.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class BlockCost:
    """Measured cost of one block.

    Attributes:
        forward: seconds per batch for the input-side forward of the block
            (f_k then the bridge b_k).
        backward: seconds per batch for the input-side backward and the
            optimizer update.
        label: seconds per batch for the label side (g_k/h_k forward,
            backward and update). 0 for a BP block.
        activation_bytes: bytes per batch handed to the next block (s_k plus
            t_k for AL; the activation for BP, whose gradient of the same
            size travels back).
    """

    forward: float
    backward: float
    label: float = 0.0
    activation_bytes: float = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"BlockCost.{field.name} must be a finite number >= 0, "
                    f"got {value!r}."
                )

    @property
    def compute(self):
        """Seconds per batch of all the block's work: forward+backward+label."""
        return self.forward + self.backward + self.label



def balanced_partition(costs, num_devices):
    """Splits a chain of blocks into contiguous groups, one per device.

    Minimises the largest per-device sum of costs exactly (dynamic
    programming over prefixes, O(num_devices * len(costs)^2)): well under a
    second for 100 blocks.

    Args:
        costs: sequence of per-block costs, finite and >= 0.
        num_devices: int >= 1.

    Returns:
        A list with the device index of each block: starts at 0,
        non-decreasing in steps of 0 or 1, and every device in
        range(min(num_devices, len(costs))) gets at least one block. With
        more devices than blocks, block k goes on device k and the rest are
        left unused.

    Raises:
        ValueError: num_devices < 1, costs empty, or a cost negative or not
            finite.
    """
    costs = [float(cost) for cost in costs]
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be an int >= 1, got {num_devices!r}.")
    if not costs:
        raise ValueError("costs is empty: there are no blocks to place.")
    for index, cost in enumerate(costs):
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(
                f"costs must be finite and >= 0; costs[{index}] is {cost!r}."
            )
    num_blocks = len(costs)
    if num_devices >= num_blocks:
        return list(range(num_blocks))

    # segment[i][j]: sum of costs[i:j], added left to right like sum().
    segment = [[0.0] * (num_blocks + 1) for _ in range(num_blocks + 1)]
    for start in range(num_blocks):
        total = 0.0
        for end in range(start + 1, num_blocks + 1):
            total += costs[end - 1]
            segment[start][end] = total

    # best[d][i]: least bottleneck of blocks[:i] on devices 0..d-1, each
    # device non-empty; cut[d][i]: where device d-1's blocks start then.
    best = [[math.inf] * (num_blocks + 1) for _ in range(num_devices + 1)]
    cut = [[0] * (num_blocks + 1) for _ in range(num_devices + 1)]
    for end in range(1, num_blocks - num_devices + 2):
        best[1][end] = segment[0][end]
    for devices in range(2, num_devices + 1):
        blocks_left_for_later = num_devices - devices
        for end in range(devices, num_blocks - blocks_left_for_later + 1):
            best_value, best_start = math.inf, devices - 1
            for start in range(devices - 1, end):
                value = max(best[devices - 1][start], segment[start][end])
                if value < best_value:
                    best_value, best_start = value, start
            best[devices][end] = best_value
            cut[devices][end] = best_start

    placement = [0] * num_blocks
    end = num_blocks
    for devices in range(num_devices, 0, -1):
        start = cut[devices][end] if devices > 1 else 0
        for block in range(start, end):
            placement[block] = devices - 1
        end = start
    return placement


def uniform_blocks(num_blocks, forward, backward, label=0.0, activation_bytes=0):
    """A synthetic model of identical blocks.

    For example, a deeper model of 8 blocks with a measured model's mean
    block cost.

    Args:
        num_blocks: int >= 1.
        forward, backward, label, activation_bytes: as in `BlockCost`.

    Returns:
        A list of num_blocks equal `BlockCost`s.
    """
    if not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks must be an int >= 1, got {num_blocks!r}.")
    block = BlockCost(forward, backward, label, activation_bytes)
    return [block] * num_blocks
