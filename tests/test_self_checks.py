"""The notebooks' self-checks: each passes with its own solution, fails with a tempting wrong answer, and waits while
unanswered."""

import json
import re
from pathlib import Path

import pytest

import gradcam_utils as gu
from gradcam_utils.self_checks import CHECKS

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_solution_passes_and_a_wrong_answer_fails_with_the_reasoning(name, capsys):
    check = CHECKS[name]
    assert gu.self_check(name, check.solution) is True
    assert "right" in capsys.readouterr().out
    with pytest.raises(gu.SelfCheckError) as info:
        gu.self_check(name, check.wrong)
    assert check.why in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(gu.SelfCheckError):
        gu.self_check(name, object())  # an answer of the wrong kind is wrong, not a crash
    assert gu.self_check(name, None) is None
    assert "not answered yet" in capsys.readouterr().out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_has_self_checks_exercises_with_hints_and_solutions_and_references(path):
    cells = json.loads(path.read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    used = [
        m
        for t, c in zip(text, cells)
        if c["cell_type"] == "code"
        for m in re.findall(r'gu\.self_check\("([0-9.]+)", answer\)', t)
    ]
    assert len(used) >= 2 and set(used) <= set(CHECKS)
    for name in used:
        at = next(i for i, t in enumerate(text) if f'gu.self_check("{name}", answer)' in t)
        assert text[at - 1].startswith("answer = None"), "the answer cell comes first, unanswered"
        assert "<summary>Solution</summary>" in text[at + 1], "a collapsed solution follows each check"
        committed = "".join("".join(o.get("text", "")) for o in cells[at]["outputs"])
        assert "not answered yet" in committed
    assert "**You need**" in text[0], "what the learner needs from earlier notebooks"
    assert "## Further reading" in text[-1] and re.search(r"\. https://", text[-1]), "full references, with links"
    exercises = text[-1] if "Things to try" in text[-1] else ""
    numbered = re.findall(r"^\*\*(\d+)\.\*\*", exercises, flags=re.M)
    assert len(numbered) >= 2
    assert exercises.count("*Hint:*") == exercises.count("<summary>Solution</summary>") == len(numbered)


def test_every_self_check_is_asked_in_a_notebook():
    asked = set(re.findall(r'gu\.self_check\(\\"([0-9.]+)\\"', "".join(p.read_text() for p in NOTEBOOKS)))
    assert asked == set(CHECKS)
