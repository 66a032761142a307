"""Task sampling: which task group trains at each step.

The Trainer batches an *index* sampler with `batch_size`, so this sampler yields whole blocks of `batch_size` indices
from one group: every batch holds one task group. Under data-parallel training each step's group is repeated for
every rank (the data loader hands rank r the r-th block of a step), so all ranks train the same task at a step.

Group probabilities, with n the (optionally capped) number of examples of a group:
    proportional  p ∝ n
    temperature   p ∝ n^(1/T)   (T = 1 is proportional, large T tends to uniform; MT-DNN / XTREME's sampling)
    uniform       p ∝ 1
    round_robin   the groups in turn, no randomness in the order
An epoch holds as many steps as it takes to see sum(n) examples; within a group, examples are drawn without
replacement and reshuffled when exhausted. With `lengths`, each shuffled order is cut into mega-batches of
`MEGA_BATCH_FACTOR` batches sorted by length (as transformers' LengthGroupedSampler), so a batch holds examples of
similar length and dynamic padding wastes little. The stream is a pure function of (seed, epoch): deterministic, and it
resumes exactly where an interrupted run stopped.

When some task group streams (`data.streaming: true`), `TaskBatchStream` draws the groups with the same schedule and
hands each rank collated batches instead (an index sampler cannot draw from iterators).
"""

import math

import torch
from torch.utils.data import IterableDataset, Sampler


def task_probabilities(
    sizes: list[int], strategy: str, temperature: float = 1.0, max_examples_per_task: int | None = None
) -> list[float]:
    """The probability of drawing each group at a step."""
    capped = [min(n, max_examples_per_task) if max_examples_per_task else n for n in sizes]
    if strategy == "proportional":
        weights = [float(n) for n in capped]
    elif strategy == "temperature":
        weights = [n ** (1.0 / temperature) for n in capped]
    elif strategy in ("uniform", "round_robin"):
        weights = [1.0] * len(capped)
    else:
        raise ValueError(
            f"Unknown sampling strategy {strategy!r}: use proportional, temperature, uniform or round_robin."
        )
    total = sum(weights)
    return [w / total for w in weights]


MEGA_BATCH_FACTOR = 50


class TaskBlockSampler(Sampler[int]):
    """
    Index sampler over the concatenation of the groups' datasets (group g owns indices offsets[g] .. offsets[g+1]).

    Args:
        sizes (`list[int]`): examples per group.
        batch_size (`int`): the per-device batch size; every block of this many indices comes from one group.
        strategy, temperature, max_examples_per_task: see the module docstring.
        num_replicas (`int`): data-parallel world size; each step's group is repeated for every rank.
        seed (`int`): with the epoch, fixes the whole stream.
        lengths (`list[list[int]]`, *optional*): token count of every example, per group: groups batches by length.
    """

    def __init__(
        self,
        sizes: list[int],
        batch_size: int,
        strategy: str = "temperature",
        temperature: float = 2.0,
        max_examples_per_task: int | None = None,
        num_replicas: int = 1,
        seed: int = 0,
        lengths: list[list[int]] | None = None,
    ):
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"Every task group needs examples; got sizes {sizes}.")
        self.sizes = list(sizes)
        self.offsets = [0]
        for n in self.sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.batch_size = batch_size
        self.strategy = strategy
        self.probabilities = task_probabilities(sizes, strategy, temperature, max_examples_per_task)
        self.capped = [min(n, max_examples_per_task) if max_examples_per_task else n for n in sizes]
        self.num_replicas = num_replicas
        self.seed = seed
        self.epoch = 0
        if lengths is not None and [len(group) for group in lengths] != self.sizes:
            raise ValueError("lengths must hold one length per example of every group.")
        self.lengths = lengths

    @property
    def num_steps(self) -> int:
        """Steps per epoch (one step = one block per rank)."""
        return max(1, math.ceil(sum(self.capped) / (self.batch_size * self.num_replicas)))

    def __len__(self) -> int:
        return self.num_steps * self.batch_size * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def group_schedule(self, generator: torch.Generator) -> list[int]:
        """The group trained at each step of this epoch."""
        if self.strategy == "round_robin":
            return [step % len(self.sizes) for step in range(self.num_steps)]
        weights = torch.tensor(self.probabilities, dtype=torch.double)
        return torch.multinomial(weights, self.num_steps, replacement=True, generator=generator).tolist()

    def _order(self, group: int, generator: torch.Generator) -> list[int]:
        order = torch.randperm(self.sizes[group], generator=generator).tolist()
        if self.lengths is None:
            return order
        size, lengths = self.batch_size * MEGA_BATCH_FACTOR, self.lengths[group]
        chunks = [sorted(order[i : i + size], key=lambda index: -lengths[index]) for i in range(0, len(order), size)]
        return [index for chunk in chunks for index in chunk]

    def next_indices(self, group: int, count: int, orders: dict, positions: dict, generator) -> list[int]:
        """The next `count` indices (within the group) of `group`'s shuffled order, drawing a new order from
        `generator` when one runs out or none was drawn yet. `orders` and `positions` carry each group's order and
        how far it was read, from call to call."""
        taken = []
        for _ in range(count):
            if positions.get(group, self.sizes[group]) == self.sizes[group]:
                orders[group] = self._order(group, generator)
                positions[group] = 0
            taken.append(orders[group][positions[group]])
            positions[group] += 1
        return taken

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        orders = {group: self._order(group, generator) for group in range(len(self.sizes))}
        positions = dict.fromkeys(orders, 0)
        for group in self.group_schedule(generator):
            for index in self.next_indices(group, self.batch_size * self.num_replicas, orders, positions, generator):
                yield self.offsets[group] + index


class TaskBatchStream(IterableDataset):
    """
    One rank's training batches when some task groups stream (`data.streaming: true`): an endless iterable of
    collated batches, each from one group, the group of every step drawn as `TaskBlockSampler` draws it (same
    strategies, same seed on every rank, so all ranks train the same group at a step).

    A streamed group's batch is the next `batch_size` examples of this rank's share of the stream (its `examples(rank,
    world_size)`: ranks read disjoint records), started again when it runs out. A map-mode group's batch is this
    rank's block of the step's `batch_size x world_size` indices of its shuffled order, as with `TaskBlockSampler`.

    Args:
        groups (`list`): per group, a sequence of features (map mode) or an object with `examples(rank, world_size)`.
        sizes (`list[int]`): examples per group (a stream's `num_examples`), for the sampling weights.
        batch_size (`int`): the per-device batch size.
        collate (`Callable`): features -> batch.
        rank, world_size (`int`): this process's data-parallel rank and the number of ranks.
        strategy, temperature, max_examples_per_task, seed: see `TaskBlockSampler`.
    """

    def __init__(
        self,
        groups: list,
        sizes: list[int],
        batch_size: int,
        collate,
        rank: int = 0,
        world_size: int = 1,
        strategy: str = "temperature",
        temperature: float = 2.0,
        max_examples_per_task: int | None = None,
        seed: int = 0,
    ):
        if len(groups) != len(sizes):
            raise ValueError(f"TaskBatchStream: {len(groups)} groups but {len(sizes)} sizes.")
        if not 0 <= rank < world_size:
            raise ValueError(f"TaskBatchStream: rank {rank} is not in 0 .. {world_size - 1}.")
        self.groups = groups
        self.collate = collate
        self.rank = rank
        self.sampler = TaskBlockSampler(
            sizes,
            batch_size,
            strategy=strategy,
            temperature=temperature,
            max_examples_per_task=max_examples_per_task,
            num_replicas=world_size,
            seed=seed,
        )

    def group_steps(self):
        """The group of every step, endlessly: `TaskBlockSampler.group_schedule` epoch after epoch."""
        epoch = 0
        while True:
            generator = torch.Generator().manual_seed(self.sampler.seed + 1_000_003 * epoch)
            yield from self.sampler.group_schedule(generator)
            epoch += 1

    def __iter__(self):
        sampler, batch_size, world_size = self.sampler, self.sampler.batch_size, self.sampler.num_replicas
        # Map-mode orders come from their own generator, advanced identically on every rank (every rank walks the
        # same schedule), so that all ranks agree on each step's indices and take disjoint blocks of them.
        order_generator = torch.Generator().manual_seed(sampler.seed + 7)
        orders, positions, streams = {}, {}, {}
        for step_group in self.group_steps():
            source = self.groups[step_group]
            if hasattr(source, "examples"):
                batch = self._next_streamed(step_group, source, streams, batch_size)
            else:
                block = sampler.next_indices(step_group, batch_size * world_size, orders, positions, order_generator)
                batch = [source[index] for index in block[self.rank * batch_size : (self.rank + 1) * batch_size]]
            yield self.collate(batch)

    def _next_streamed(self, group: int, source, streams: dict, batch_size: int) -> list:
        """The next `batch_size` examples of this rank's share of a stream, starting a new pass when one ends."""
        batch = []
        while len(batch) < batch_size:
            if group not in streams:
                streams[group] = [iter(source.examples(self.rank, self.sampler.num_replicas)), False]
            examples, any_read = streams[group]
            example = next(examples, None)
            if example is None:
                del streams[group]
                if not any_read:  # a fresh pass gave nothing: looping again would never end
                    raise ValueError(f"Task group {group} streams no examples to rank {self.rank}.")
                continue
            streams[group][1] = True
            batch.append(example)
        return batch
