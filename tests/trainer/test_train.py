"""``routine train``: the sequences are exactly what the executor sends (token ids), the loss is on the calls
only, and a tiny LoRA run moves the adapter and not the base weights (trl's way of testing a trainer)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from routines.backends.base import Message
from routines.backends.chat import END_OF_TURN, encode_prompt, load_tokenizer
from routines.errors import CallerError
from tests.conftest import Cli
from trainer.distill import DistillOptions, distill
from trainer.loss import call_loss
from trainer.sequences import IGNORE, SequenceError, TrainSequence, build_sequence, conversation_sequence
from trainer.sharegpt import load_dataset
from trainer.train import SPECIAL_TOKENS, TrainConfig, epoch_order, get_lr

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer()


@pytest.fixture
async def toy_dataset(toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path) -> Path:
    out = tmp_path / "data"
    await distill(toy_dir, split="train", out_dir=out, data_dir=tmp_path, servers=toy_servers,
                  options=DistillOptions(lengths=False, limit=3))
    return out


def assert_sequence_is_the_executors_prompts(tokenizer: Any, dataset: Path) -> list[int]:
    """Each call's prompt, encoded as the embedded backend encodes it, is a prefix of the training sequence,
    and the loss covers exactly the calls; returns the sequence's ids."""
    (conv, *_) = load_dataset(dataset)
    seq = conversation_sequence(tokenizer, conv)
    assert len(conv.calls) >= 2
    end = 0  # where the previous call's tokens ended
    for k in range(len(conv.calls)):
        prompt = encode_prompt(tokenizer, conv.messages(k))  # what the embedded backend feeds before call k
        assert seq.input_ids[: len(prompt)] == prompt
        assert all(label == IGNORE for label in seq.labels[end: len(prompt)])  # the observation and the turn marks
        end = len(prompt) + len(tokenizer(conv.target(k) + END_OF_TURN, add_special_tokens=False)["input_ids"])
        assert tokenizer.decode(seq.labels[len(prompt):end]) == conv.target(k) + END_OF_TURN
    trained = [t for t, label in zip(seq.input_ids, seq.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(trained) == "".join(conv.target(k) + END_OF_TURN for k in range(len(conv.calls)))
    return list(seq.input_ids)


@pytest.mark.model
async def test_a_sequence_holds_exactly_the_executors_prompts_and_trains_only_the_calls(
    toy_dataset: Path, tokenizer: Any
) -> None:
    assert_sequence_is_the_executors_prompts(tokenizer, toy_dataset)


async def test_with_the_shipped_adapters_tokenizer_the_routine_tags_are_one_token_each(toy_dataset: Path) -> None:
    """The shipped adapter's tokenizer (the one the backend loads with it) has ``<routines>`` and
    ``</routines>`` as added tokens: the trained sequence and the backend's prompt hold each tag as one id."""
    from routines.adapters import shipped_adapter

    adapter = shipped_adapter("hr")
    assert adapter is not None
    tokenizer = load_tokenizer(str(adapter))
    ids = assert_sequence_is_the_executors_prompts(tokenizer, toy_dataset)
    tags = [tokenizer.convert_tokens_to_ids(tag) for tag in SPECIAL_TOKENS]
    assert all(tag >= 49152 for tag in tags)  # past the base vocabulary: the trainer's added rows
    assert [ids.count(tag) for tag in tags] == [1, 1]


@pytest.mark.model
def test_a_conversation_that_is_not_append_only_is_refused(tokenizer: Any) -> None:
    first = [Message("system", "S"), Message("user", "q")]
    second = [Message("system", "S changed"), Message("user", "q"), Message("assistant", "a"), Message("tool", "r")]
    with pytest.raises(SequenceError, match="does not extend the one before it"):
        build_sequence(tokenizer, "r1", [(first, "a"), (second, "b")])


@pytest.mark.model
async def test_the_tool_name_tokens_of_every_call_are_marked(toy_dataset: Path, tokenizer: Any) -> None:
    (conv, *_) = load_dataset(toy_dataset)
    seq = conversation_sequence(tokenizer, conv)
    runs: list[list[int]] = []  # the marked positions, in runs of consecutive tokens: one run per call
    for pos in seq.names:
        if runs and pos == runs[-1][-1] + 1:
            runs[-1].append(pos)
        else:
            runs.append([pos])
    assert [tokenizer.decode([seq.input_ids[p] for p in run]).strip(' "') for run in runs] == [
        c.name for c in conv.calls]
    assert all(seq.labels[p] != IGNORE for p in seq.names)  # names are the model's own tokens
    assert build_sequence(tokenizer, "x", [([Message("user", "q")], '{"employee_name": null}')]).names == ()


class _FixedLogits:
    """A stand-in model whose logits are fixed: enough to check the loss's arithmetic."""

    def __init__(self, logits: Any) -> None:
        self.logits = logits

    def __call__(self, *, input_ids: Any, logits_to_keep: Any, use_cache: bool) -> Any:
        return SimpleNamespace(logits=self.logits[:, logits_to_keep])


def test_the_name_weight_weighs_the_tool_name_tokens_in_a_mean_on_the_same_scale() -> None:
    import torch

    torch.manual_seed(0)
    logits = torch.randn(1, 6, 11)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    seq = TrainSequence("s", [1, 2, 3, 4, 5, 6], [IGNORE, IGNORE, 3, 4, 5, 6], names=(3, 4))
    per_token = torch.nn.functional.cross_entropy(logits[0, 1:5], torch.tensor([3, 4, 5, 6]), reduction="none")
    model = _FixedLogits(logits)
    assert call_loss(model, ids, seq).item() == pytest.approx(per_token.mean().item())
    weighted = (per_token[0] + 5 * per_token[1] + 5 * per_token[2] + per_token[3]) / 12
    assert call_loss(model, ids, seq, name_weight=5.0).item() == pytest.approx(weighted.item())
    assert TrainConfig().name_weight == 1.0  # off unless asked for


def test_presets_read_and_schedule_warms_up_then_decays() -> None:
    paper = TrainConfig.from_preset("paper")
    assert (paper.lora_r, paper.lr, paper.warmup_ratio, paper.batch_size, paper.epochs) == (8, 1e-4, 0.1, 16, 3)
    assert TrainConfig.from_preset("cpu", lr=1e-3).lr == 1e-3
    with pytest.raises(Exception, match="no preset 'nope'"):
        TrainConfig.from_preset("nope")
    lrs = [get_lr(s, 100, paper) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-4) and lrs[-1] < lrs[50] < lrs[10]
    assert sorted(epoch_order(10, 1, 0)) == list(range(10)) and epoch_order(10, 1, 0) != epoch_order(10, 2, 0)


@pytest.mark.model
async def test_a_tiny_run_moves_the_adapter_not_the_base_and_resumes(
    toy_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from trainer.train import load_base

    config = TrainConfig.from_preset("tiny", data=[str(toy_dataset)], out=str(tmp_path / "adapter"), save_every=1,
                                     max_steps=2, threads=1)
    base, _ = load_base(config)
    before = {k: v.detach().clone() for k, v in base.named_parameters() if "layers.0." in k}
    kept: dict[str, Any] = {}
    from trainer.train import train

    summary = train(config, progress=False, keep=kept)
    assert summary["steps"] == 2
    model = kept["model"]
    after = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
             for k, v in model.named_parameters() if "layers.0." in k and "lora_" not in k}
    for name, value in before.items():
        assert torch.equal(after[name].float(), value.to(after[name].dtype).float()), name
    lora_b = [v for k, v in model.named_parameters() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: training moved it
    out = Path(config.out)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "adapter_model.safetensors").stat().st_size < 5_000_000  # no embedding matrix inside
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 and r["tokens_per_s"] for r in rows)
    assert (out / "loss.png").is_file() and "<routines>" in (out / "tokenizer_config.json").read_text()
    # Resuming a finished run does nothing more; a longer run continues from the checkpoint.
    assert train(TrainConfig(out=config.out), resume=True, progress=False)["steps"] == 2
    with pytest.raises(CallerError, match="can change only max_steps.*not lr"):
        train(TrainConfig(out=config.out), resume=True, progress=False, overrides={"lr": 1.0})
    state_path = out / "checkpoint" / "state.pt"
    state = torch.load(state_path, weights_only=False)
    assert len(state["data"]) == 16 and state["sequences"] == summary["sequences"]
    torch.save({**state, "data": "other data"}, state_path)  # as if the dataset had changed since
    with caplog.at_level(logging.WARNING, logger="trainer.train"):
        assert train(TrainConfig(out=config.out), resume=True, progress=False, overrides={"max_steps": 3})["steps"] == 3
    assert "the training data changed since the checkpoint" in caplog.text
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    # Without the optimizer's state (a checkpoint carried in git): on from the saved adapter, fresh moments.
    assert json.loads((out / "checkpoint" / "position.json").read_text())["step"] == 3
    state_path.unlink()
    with (out / "metrics.jsonl").open("a") as fh:  # a step done after the last checkpoint, then a crash
        fh.write(json.dumps({"step": 4, "loss": 1.0}) + "\n")
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoints"):
        assert train(TrainConfig(out=config.out), resume=True, progress=False, overrides={"max_steps": 4})["steps"] == 4
    assert "no optimizer state" in caplog.text and "resuming at step 3" in caplog.text
    assert "dropped 1 rows of metrics.jsonl" in caplog.text
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_resume_on_the_command_line_keeps_the_saved_settings(cli: Cli, tmp_path: Path) -> None:
    """Only a run's length, checkpointing and threads may change on --resume; anything else is refused
    before any model is loaded, and a missing checkpoint says to start without --resume."""
    code, _, err = cli("train", "--out", str(tmp_path), "--resume")
    assert code != 0 and "no checkpoint" in err and "start without --resume" in err
    (tmp_path / "checkpoint").mkdir()
    saved = TrainConfig.from_preset("tiny", out=str(tmp_path))
    (tmp_path / "checkpoint" / "train_config.json").write_text(json.dumps(asdict(saved)))
    code, _, err = cli("train", "--out", str(tmp_path), "--resume", "--lr", "0.01", "--max-steps", "9")
    assert code != 0 and "can change only max_steps, save_every, threads, not lr" in err


@pytest.mark.model
async def test_a_run_can_start_from_another_adapter(toy_dataset: Path, tmp_path: Path) -> None:
    """The paper's two stages (figure 5): a run with --init-adapter starts at that adapter's weights (with the
    learning rate at zero they stay exactly there), and saves where it was told, not over the first."""
    import torch
    from peft.utils import load_peft_weights

    first = TrainConfig.from_preset("tiny", data=[str(toy_dataset)], out=str(tmp_path / "common"), max_steps=1, threads=1)
    from trainer.train import train

    train(first, progress=False)
    second = TrainConfig.from_preset("tiny", data=[str(toy_dataset)], out=str(tmp_path / "second"), max_steps=1,
                                     threads=1, lr=0.0, init_adapter=first.out)
    kept: dict[str, Any] = {}
    train(second, progress=False, keep=kept)
    started = load_peft_weights(first.out, device="cpu")
    now = {k.replace(".default", ""): v for k, v in kept["model"].named_parameters() if v.requires_grad}
    assert set(started) == set(now)
    lora_b = [k for k in started if "lora_B" in k]
    assert lora_b and any(started[k].abs().sum() > 0 for k in lora_b)  # the first run moved B off zero
    for name, value in started.items():
        assert torch.equal(now[name].detach().float(), value.float()), name
    assert json.loads((Path(second.out) / "train_config.json").read_text())["init_adapter"] == first.out


def test_an_init_adapter_of_another_shape_is_refused_before_loading(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("train", "--out", str(tmp_path / "a"), "--preset", "tiny", "--init-adapter", str(tmp_path))
    assert code != 0 and "no adapter_config.json there" in err
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "trainable_token_indices": None}))
    code, _, err = cli("train", "--out", str(tmp_path / "a"), "--preset", "tiny", "--init-adapter", str(tmp_path))
    assert code != 0 and "another shape: rank (--lora-r) 16 (this run: 2)" in err
    assert "special tokens absent (this run: --special-tokens)" in err
