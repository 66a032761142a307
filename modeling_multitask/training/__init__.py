"""Training side of the library: experiment file, data, collator, task sampling, metrics, trainer and CLI.

Imported by scripts and users, never by the remote-code model files.
"""

from .collator import MultiTaskDataCollator
from .experiment import Experiment, ExperimentError, load_experiment, parse_experiment
from .sampling import TaskBlockSampler, task_probabilities
from .trainer import FeatureDataset, MultiTaskTrainer, TaskInfo


__all__ = [
    "Experiment",
    "ExperimentError",
    "FeatureDataset",
    "MultiTaskDataCollator",
    "MultiTaskTrainer",
    "TaskBlockSampler",
    "TaskInfo",
    "load_experiment",
    "parse_experiment",
    "task_probabilities",
]
