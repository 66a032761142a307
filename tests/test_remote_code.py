"""The decisive Hub test: a saved checkpoint loads through AutoModel with trust_remote_code=True in a fresh process
that cannot import this project, from another directory, and gives the same outputs."""

import json
from pathlib import Path

import torch
from conftest import TASKS, random_batch, run_fresh, tiny_bert_config

from modeling_multitask import MultiTaskConfig, MultiTaskModel


REPO_ROOT = Path(__file__).resolve().parents[1]


def test_fresh_process_loads_checkpoint_through_remote_code(tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, fusion={"type": "attention"})
    model = MultiTaskModel(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tiny_tokenizer.save_pretrained(checkpoint)

    saved_config = json.loads((checkpoint / "config.json").read_text())
    assert saved_config["auto_map"] == {
        "AutoConfig": "configuration_multitask.MultiTaskConfig",
        "AutoModel": "modeling_multitask.MultiTaskModel",
    }
    # The real config file, not the one-line re-export, ships beside the model.
    assert (checkpoint / "configuration_multitask.py").read_text() == (
        REPO_ROOT / "configuration_multitask" / "configuration_multitask.py"
    ).read_text()
    for shipped in (
        "modeling_multitask.py",
        "fusion.py",
        "hub.py",
        "pipeline_multitask.py",
        "featurization.py",
    ):
        assert (checkpoint / shipped).read_text() == (REPO_ROOT / "modeling_multitask" / shipped).read_text()
    # The task-type definitions ship with the config, which validates tasks through them.
    definitions = sorted(path.name for path in (REPO_ROOT / "configuration_multitask").glob("task_*.py"))
    assert "task_types.py" in definitions and "task_token_classification.py" in definitions
    for shipped in definitions:
        assert (checkpoint / shipped).read_text() == (REPO_ROOT / "configuration_multitask" / shipped).read_text()
    assert (checkpoint / "model.safetensors").exists()

    input_ids, mask = random_batch()
    info, outputs = run_fresh(checkpoint, {"input_ids": input_ids, "attention_mask": mask}, tmp_path)
    assert info["class"] == "MultiTaskModel"
    assert info["tokens"] == tiny_tokenizer.tokenize("Show me flights to Boston")
    with torch.no_grad():
        for task_index, task in enumerate(config.task_names):
            expected = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits
            torch.testing.assert_close(outputs[task], expected)
