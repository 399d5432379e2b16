from autoprumux.core.progress import Progress, ProgressLines


def test_progress_lines_print_each_quarter_of_each_phase_once():
    lines: list[str] = []
    report = ProgressLines("(2, 0.5)", lines.append)
    for step in range(1, 11):
        report(Progress(phase="finetune", step=step, total=10, loss=0.25))
    for step in range(1, 4):
        report(Progress(phase="measure", step=step, total=3))
    assert lines == [
        "(2, 0.5) finetune 3/10 loss 0.2500",  # first step at or past 25%
        "(2, 0.5) finetune 5/10 loss 0.2500",
        "(2, 0.5) finetune 8/10 loss 0.2500",
        "(2, 0.5) finetune 10/10 loss 0.2500",
        "(2, 0.5) measure 1/3",  # each step of a 3-step phase passes a quarter mark
        "(2, 0.5) measure 2/3",
        "(2, 0.5) measure 3/3",
    ]
