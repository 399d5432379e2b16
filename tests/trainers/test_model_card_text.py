"""What the model card says of how a prediction depends on its surroundings (the inputs of a
multiplexed group, the batch of a dynamic int8 file), and that its pair-task example runs as
pasted (no torch: the card is text)."""

from __future__ import annotations

import subprocess

from test_model_folder import info

from trainers.deploy.model_folder import DEFAULT_BATCH, PrecisionScore, model_card

INT8 = {"int8": PrecisionScore(dev=0.8, dev_examples=500, runtime="onnxruntime-cpu")}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_multiplexed_card_says_a_prediction_depends_on_its_group():
    """It said "depends a little": shuffling SST-2 dev changed 11-14 % of the (2, 0) labels."""
    card = _one_line(model_card(info(n=2)))
    assert "a little" not in card
    assert (
        "It classifies 2 inputs in one forward pass, grouped 2 at a time in input order, so a "
        "prediction depends on which inputs share its group: shuffling the rows, or sending "
        "them in other requests (which regroups them), changes some labels, and the same text "
        "can be labelled differently in different groups. The recorded dev figure is of the "
        "dev file's order."
    ) in card
    single = _one_line(model_card(info(n=1)))
    assert "It classifies one input per forward pass." in single
    assert "share its group" not in single


def test_a_dynamic_int8_figure_is_said_to_hold_at_its_batch():
    assert DEFAULT_BATCH == 32  # the batch quantize.dev_score scores at (predict's default)
    card = _one_line(model_card(info(n=2, precisions={**INT8})))
    assert (
        "int8 is ONNX Runtime's dynamic quantization: it scales the activations per batch, so "
        "an int8 prediction depends on the batch it is served in (`classify --batch`, and the "
        "inputs beside it). The int8 figure above is at `--batch 32` (32 groups of 2 inputs a "
        "forward pass, in the dev file's order)."
    ) in card
    single = _one_line(model_card(info(n=1, precisions={**INT8})))
    assert "(32 inputs a forward pass, in the dev file's order)" in single
    assert "scales the activations per batch" not in _one_line(model_card(info()))
    static = PrecisionScore(
        dev=0.8, dev_examples=500, runtime="onnxruntime-cpu", recipe="static QDQ, in fp32: x"
    )
    assert "per batch" not in model_card(info(precisions={"int8": static}))


def test_the_pair_example_runs_as_pasted():
    """``echo 'first sentence<TAB>second sentence'`` sent the letters <TAB>, not a tab."""
    card = model_card(info(text_columns=("question", "sentence")))
    [line] = [line for line in card.splitlines() if "--json" in line]
    assert line == (
        "printf 'first sentence\\tsecond sentence\\n' | autoprumux classify --model THIS_FOLDER "
        "--json"
    )
    producer = line.split(" | ")[0]
    sent = subprocess.run(["sh", "-c", producer], capture_output=True, text=True, check=True).stdout
    assert sent == "first sentence\tsecond sentence\n"
    single = model_card(info())
    assert "echo 'a fine film' | autoprumux classify --model THIS_FOLDER --json" in single


def test_a_pair_cards_input_file_example_says_first_tab_second():
    """It said "one input per line", a file the pair model refuses line by line."""
    card = model_card(info(text_columns=("question", "sentence")))
    assert (
        "autoprumux classify --model THIS_FOLDER --input pairs.txt    # one pair per line: "
        "FIRST<TAB>SECOND"
    ) in card.splitlines()
    assert "one input per line" not in card
    assert (
        "autoprumux classify --model THIS_FOLDER --input sentences.txt    # one input per line"
    ) in model_card(info()).splitlines()
