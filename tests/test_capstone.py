"""The capstone: the tiny GPT trains the same on our runtime, on torch.distributed.pipelining and in one process."""
import pytest
import torch

from labs.course.capstone import train, train_reference
from labs.course.torch_bridge import to_csv, train_torch
from labs.models import TinyGPT
from labs.schedules import ScheduleError, make

STEPS, M = 4, 4


@pytest.fixture(scope="module")
def reference():
    return train_reference(steps=STEPS, M=M)


def test_tiny_gpt_cuts_like_the_toy_model_and_learns(reference):
    gpt = TinyGPT()
    assert gpt.num_layers == 8 and len(gpt.layers()) == 8
    x, y = gpt.batch(4, seed=3)
    assert x.shape == y.shape == (4, gpt.context) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(gpt.batch(4, seed=3)[0], x)
    assert reference[-1] < reference[0]


@pytest.mark.parametrize("schedule", ["1f1b", "zb-h1", "zb-v"])
def test_pipeline_training_equals_one_process_step_by_step(schedule, reference):
    losses = train(schedule, P=4, M=M, steps=STEPS)
    assert len(losses) == STEPS
    assert max(abs(a - b) for a, b in zip(losses, reference)) < 1e-5


def test_hand_written_lists_train_too(reference):
    lists = [[str(a) for a in acts] for acts in make("gpipe", 4, M)]
    assert max(abs(a - b) for a, b in zip(train(lists, steps=STEPS), reference)) < 1e-5


def test_csv_export_uses_pytorch_notation():
    assert to_csv(make("1f1b", 2, 2)) == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n"
    assert to_csv(make("zb-h1", 2, 2)) == "0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1F1,1I1,1W0,1W1\n"


@pytest.mark.parametrize("schedule", ["zb-h1", "zb-v"])
def test_exported_schedule_on_torch_runtime_gives_the_same_losses(schedule, reference):
    ours = train(schedule, P=4, M=M, steps=STEPS)
    theirs = train_torch(schedule, P=4, M=M, steps=STEPS)
    assert max(abs(a - b) for a, b in zip(theirs, ours)) < 1e-5
    assert max(abs(a - b) for a, b in zip(theirs, reference)) < 1e-5


def test_bad_input_fails_before_processes_start():
    with pytest.raises(ScheduleError):
        train([["0F0", "0B0"], ["1B0", "1F0"]], steps=1)
    with pytest.raises(ValueError, match="micro-batches"):
        train("1f1b", M=3, batch_size=16, steps=1)
