"""The registry of task types: `type` in a task spec -> its definition (see `task_type.TaskType` for the contract).

Adding a type is one new `task_<type>.py` file, one line here, and its tests.
"""

from .task_multi_label_classification import MultiLabelClassification
from .task_multiple_choice import MultipleChoice
from .task_question_answering import QuestionAnswering
from .task_regression import Regression
from .task_sequence_classification import SequenceClassification
from .task_token_classification import TokenClassification
from .task_type import TaskType, TaskView


TASK_TYPES: dict[str, TaskType] = {
    definition.name: definition
    for definition in (
        SequenceClassification(),
        MultiLabelClassification(),
        Regression(),
        TokenClassification(),
        QuestionAnswering(),
        MultipleChoice(),
    )
}


def task_type(name: str) -> TaskType:
    """The definition of the task type `name`, or a `ValueError` listing the known ones."""
    if name not in TASK_TYPES:
        import difflib

        match = difflib.get_close_matches(str(name), list(TASK_TYPES), n=1)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise ValueError(f"Unknown task type {name!r}.{hint} Allowed types: {', '.join(TASK_TYPES)}.")
    return TASK_TYPES[name]


__all__ = ["TASK_TYPES", "TaskType", "TaskView", "task_type"]
